"""Compile a model structure's NUTS density in a background process, for later fits.

``python -m hierlm.estimate.nuts_warm_up FILE`` reads ``(design, gram, structure,
priors)`` pickled in ``FILE`` (and deletes it), then builds the structure's graphs
and compiles their C entry points and ``forward`` function
(:mod:`hierlm.estimate.nuts_compiled`), all kept on disk, at the lowest CPU priority.
:func:`hierlm.estimate.nuts_first.warm_up` starts it after a fit that sampled the
NumPy density.

Why a process, not a thread, and how the file and the lock are handled:
:mod:`hierlm.estimate.warm_up_process`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from hierlm.estimate import warm_up_process

#: Name of the temporary file :func:`hierlm.estimate.nuts_first.warm_up` hands over.
PREFIX, SUFFIX = "hierlm-nuts-warm-up-", warm_up_process.SUFFIX


def handed_over(path: Path) -> bool:
    """Whether ``path`` is a file :func:`hierlm.estimate.nuts_first.warm_up` wrote
    (:func:`hierlm.estimate.warm_up_process.handed_over`).

    Examples
    --------
    >>> handed_over(Path.home() / "notes.pkl")
    False
    """
    return warm_up_process.handed_over(path, PREFIX)


def lock_path(folder: Path, key: tuple) -> Path:
    """The lock file of structure ``key`` in the graph cache ``folder``.

    Examples
    --------
    >>> lock_path(Path("/tmp"), (1, 2)).name.startswith("nuts-warm-up-")
    True
    """
    return warm_up_process.lock_path(folder, key, "nuts-warm-up")


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
    design, gram, structure, pr = warm_up_process.read_handed_over(path)
    from hierlm.estimate.nuts_compiled import _structure_key
    from hierlm.objective.graph_cache import cache_dir

    objective = SimpleNamespace(design=design, gram=gram, structure=structure)
    folder = cache_dir()
    if folder is None:
        return 0
    lock = lock_path(folder, _structure_key(objective))  # type: ignore[arg-type]
    warm_up_process.compile_locked(lock, lambda: compile_structure(objective, pr))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
