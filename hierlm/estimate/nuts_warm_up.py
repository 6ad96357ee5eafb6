"""Compile a model structure's NUTS density in a background process, for later fits.

``python -m hierlm.estimate.nuts_warm_up FILE`` reads ``(design, gram, structure,
priors)`` pickled in ``FILE`` (and deletes it), then builds the structure's graphs
and compiles their C entry points and ``forward`` function
(:mod:`hierlm.estimate.nuts_compiled`), all kept on disk, at the lowest CPU priority.
:func:`hierlm.estimate.nuts_first.warm_up` starts it after a fit that sampled the
NumPy density.

Why a process, not a thread: Numba's compiling is mostly Python, so a thread would
hold the interpreter lock about half the time and slow whatever the user runs next
(the NumPy density's sampling included); a thread still compiling when the
interpreter exits is stopped mid-way.  A process at ``nice 19`` takes only idle CPU
and finishes after its parent has exited.  A lock file in the graph cache folder
keeps two processes from compiling the same structure.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import stat
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

#: A lock file older than this (seconds) is left from a process that died.
STALE_S = 1800.0
#: Name of the temporary file :func:`hierlm.estimate.nuts_first.warm_up` hands over.
PREFIX, SUFFIX = "hierlm-nuts-warm-up-", ".pkl"


def handed_over(path: Path) -> bool:
    """Whether ``path`` is a file :func:`hierlm.estimate.nuts_first.warm_up` wrote: a
    plain file named ``PREFIX...SUFFIX`` directly in the temporary folder, owned by this
    user (``tempfile.mkstemp`` makes it so).  Anything else is neither loaded nor
    deleted.

    Examples
    --------
    >>> handed_over(Path.home() / "notes.pkl")
    False
    """
    try:
        st = path.lstat()
    except OSError:
        return False
    return (path.name.startswith(PREFIX) and path.name.endswith(SUFFIX)
            and path.parent.resolve() == Path(tempfile.gettempdir()).resolve()
            and stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid())


def lock_path(folder: Path, key: tuple) -> Path:
    """The lock file of structure ``key`` in the graph cache ``folder``.

    Examples
    --------
    >>> lock_path(Path("/tmp"), (1, 2)).name.startswith("nuts-warm-up-")
    True
    """
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:24]
    return folder / f"nuts-warm-up-{digest}.lock"


def _take(lock: Path) -> bool:
    """Create ``lock`` (True), or find it held by a live warm-up (False)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            try:
                if time.time() - lock.stat().st_mtime < STALE_S:
                    return False
                lock.unlink()
            except OSError:
                return False
    return False


def compile_structure(objective: object, pr: object) -> None:
    """Build and compile ``objective``'s density structure (see the module docstring)."""
    from hierlm.estimate.nuts_compiled import data_values, density_graphs, to_unconstrained
    from hierlm.estimate.nuts_numpy import NumpyDensity

    graphs = density_graphs(objective, pr)  # type: ignore[arg-type]
    d = NumpyDensity(objective, pr)  # type: ignore[arg-type]
    # forward first: the C entry points in Numba's cache are what marks a structure
    # ready (hierlm.estimate.nuts_first.cached_code)
    to_unconstrained(graphs, data_values(objective, pr),  # type: ignore[arg-type]
                     [d.expand(np.zeros(d.ndim))])
    graphs.code.c_functions  # noqa: B018 - compiles the C entry points


def main(argv: list[str]) -> int:
    """Entry point: ``argv = [FILE]``; 2 (nothing read, nothing deleted) for a FILE
    that :func:`handed_over` does not recognise."""
    path = Path(argv[0]) if len(argv) == 1 else Path()
    if not handed_over(path):
        return 2
    with contextlib.suppress(OSError):
        os.nice(19)
    try:
        with path.open("rb") as fh:
            design, gram, structure, pr = pickle.load(fh)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    from hierlm.estimate.nuts_compiled import _structure_key
    from hierlm.objective.graph_cache import cache_dir

    objective = SimpleNamespace(design=design, gram=gram, structure=structure)
    folder = cache_dir()
    if folder is None:
        return 0
    lock = lock_path(folder, _structure_key(objective))  # type: ignore[arg-type]
    if not _take(lock):
        return 0
    try:
        compile_structure(objective, pr)
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
