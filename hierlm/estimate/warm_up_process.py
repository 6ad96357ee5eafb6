"""Compiling for later fits in a background process at the lowest CPU priority.

Some machine code is worth having but too slow to make while the user waits: a NUTS
density (:mod:`hierlm.estimate.nuts_warm_up`), a fit's compiled evaluation and descent
loop (:mod:`hierlm.estimate.fit_warm_up`).  :func:`launch` pickles what the compile
needs into a temporary file and starts ``python -m MODULE FILE`` in a new session,
``nice 19`` from its first line (importing hierlm costs about a second of CPU, which
would otherwise run beside the fit that started it).  The module reads the file only
if :func:`handed_over` recognises it as one :func:`launch` wrote, deletes it, and
compiles into the disk caches, holding a lock file (:func:`take`) so that two
processes do not compile the same structure.

Why a process, not a thread: Numba's compiling is mostly Python, so a thread would
hold the interpreter lock about half the time and slow whatever the user runs next,
and a thread still compiling when the interpreter exits is stopped mid-way (LLVM
aborted the process there).  A process at ``nice 19`` takes only idle CPU and finishes
after its parent has exited.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytensor

#: A lock file older than this (seconds) is left from a process that died.
STALE_S = 1800.0
SUFFIX = ".pkl"


def launch_source(module: str) -> str:
    """The ``python -c`` source that runs ``module`` as ``__main__`` at nice 19.

    Examples
    --------
    >>> "os.nice(19)" in launch_source("hierlm.estimate.fit_warm_up")
    True
    """
    return ("import contextlib, os, runpy\n"
            "with contextlib.suppress(OSError):\n"
            "    os.nice(19)\n"
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n")


def launch(module: str, prefix: str, payload: tuple[object, ...]) -> subprocess.Popen:
    """Start ``module`` in a background process on ``payload`` (pickled to a temporary
    file named ``prefix...`` + :data:`SUFFIX`), with this process's caches and hierlm."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=SUFFIX)
    with os.fdopen(fd, "wb") as fh:
        pickle.dump(payload, fh)
    env = dict(os.environ)
    # the same caches and the same hierlm as this process
    flags = [f for f in env.get("PYTENSOR_FLAGS", "").split(",")
             if f and not f.startswith(("compiledir=", "base_compiledir="))]
    env["PYTENSOR_FLAGS"] = ",".join(
        [*flags, f"base_compiledir={pytensor.config.base_compiledir}"])
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(
        [sys.executable, "-c", launch_source(module), path], env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)


def handed_over(path: Path, prefix: str) -> bool:
    """Whether ``path`` is a file :func:`launch` wrote for ``prefix``: a plain file named
    ``prefix...`` + :data:`SUFFIX` directly in the temporary folder, owned by this user
    (``tempfile.mkstemp`` makes it so).  Anything else is neither loaded nor deleted.

    Examples
    --------
    >>> handed_over(Path.home() / "notes.pkl", "hierlm-fit-warm-up-")
    False
    """
    try:
        st = path.lstat()
    except OSError:
        return False
    return (path.name.startswith(prefix) and path.name.endswith(SUFFIX)
            and path.parent.resolve() == Path(tempfile.gettempdir()).resolve()
            and stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid())


def read_handed_over(path: Path) -> tuple[object, ...]:
    """The payload of a file :func:`handed_over` accepted; the file is deleted."""
    with contextlib.suppress(OSError):
        os.nice(19)
    try:
        with path.open("rb") as fh:
            payload: tuple[object, ...] = pickle.load(fh)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    return payload


def lock_path(folder: Path, key: object, name: str) -> Path:
    """The lock file of structure ``key`` for the compile ``name`` in ``folder``.

    Examples
    --------
    >>> lock_path(Path("/tmp"), (1, 2), "fit-warm-up").name.startswith("fit-warm-up-")
    True
    """
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:24]
    return folder / f"{name}-{digest}.lock"


def compile_locked(lock: Path, work: Callable[[], object]) -> None:
    """Run ``work()`` holding ``lock`` (nothing when another process holds it).

    Examples
    --------
    >>> import tempfile
    >>> lock = Path(tempfile.mkdtemp()) / "doc.lock"
    >>> done = []
    >>> compile_locked(lock, lambda: done.append(lock.exists()))
    >>> done, lock.exists()
    ([True], False)
    """
    if not take(lock):
        return
    try:
        work()
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()


def take(lock: Path) -> bool:
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
