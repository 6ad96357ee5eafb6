"""Work on daemon threads, once per key and process, waited for at the interpreter's exit.

Compiled code is loaded from Numba's disk cache off the fit's thread
(:func:`hierlm.estimate.psi_call.load_in_background`).  Such a thread must not be inside
Numba's or LLVM's code while the interpreter shuts down (LLVM aborted the process there
once), so the exit waits for the threads started here; their work is bounded (loads,
never compiles: about a second).
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Hashable

_LOCK = threading.Lock()
#: The keys whose work has been started in this process, and the threads still running.
_STARTED: set[Hashable] = set()
_RUNNING: dict[Hashable, threading.Thread] = {}


def start(key: Hashable, work: Callable[[], None]) -> bool:
    """Run ``work()`` on a daemon thread unless work under ``key`` was started before in
    this process; whether it was started now.

    Examples
    --------
    >>> done = []
    >>> start(("doc", 1), lambda: done.append(1)), start(("doc", 1), lambda: done.append(2))
    (True, False)
    >>> wait()
    >>> done
    [1]
    """
    with _LOCK:
        if key in _STARTED:
            return False
        _STARTED.add(key)

        def run() -> None:
            try:
                work()
            finally:
                with _LOCK:
                    _RUNNING.pop(key, None)

        thread = threading.Thread(target=run, name="hierlm-load", daemon=True)
        _RUNNING[key] = thread
    thread.start()
    return True


def wait(timeout: float | None = None) -> None:
    """Wait for the work started so far.

    Examples
    --------
    >>> wait()
    """
    with _LOCK:
        threads = list(_RUNNING.values())
    for thread in threads:
        thread.join(timeout)


atexit.register(wait)
