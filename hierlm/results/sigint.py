"""Ctrl-C held back while xarray and h5py hold their locks.

xarray guards HDF5 with process-wide locks that it takes one after another
(``CombinedLock.acquire``) outside a ``try``: a KeyboardInterrupt raised between two
acquisitions leaves a lock held for good, and the next netCDF read or write in the
process waits on it forever.  :func:`interrupts_deferred` records a SIGINT that
arrives inside the block and raises the KeyboardInterrupt when the block ends, so the
locks are always released.  A netCDF write of a result takes milliseconds to a few
seconds (large NUTS draws), which is how long Ctrl-C is held back.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["interrupts_deferred"]


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Run the block with SIGINT recorded, then raise KeyboardInterrupt if one came.

    Only in the main thread and only while Python's own SIGINT handler is installed;
    otherwise the block runs unchanged.

    Examples
    --------
    >>> import os, signal
    >>> try:
    ...     with interrupts_deferred():
    ...         os.kill(os.getpid(), signal.SIGINT)
    ...         finished = True
    ... except KeyboardInterrupt:
    ...     print("interrupted after the block:", finished)
    interrupted after the block: True
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    received: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt
