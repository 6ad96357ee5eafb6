"""Ctrl-C that is neither lost nor lands where it leaves a lock held.

:func:`interrupts_kept` (around compiling): a KeyboardInterrupt can be raised in any
Python frame, including an ``__eq__`` or ``__hash__`` that C code calls and whose
errors it clears (``PyDict_GetItem`` does), and compiling a graph runs many of those
(PyTensor's rewrites, Numba's typing).  Such an interrupt vanished and the process
ran on.  The block's SIGINTs are recorded, and one that did not end the block is
raised when the block ends.

:func:`interrupts_deferred` (around netCDF I/O): xarray guards HDF5 with process-wide
locks that it takes one after another (``CombinedLock.acquire``) outside a ``try``:
a KeyboardInterrupt raised between two acquisitions leaves a lock held for good, and
the next netCDF read or write in the process waits on it forever.  The block's SIGINTs
are recorded and a KeyboardInterrupt raised when the block ends, so the locks are
always released.  A netCDF write of a result takes milliseconds to a few
seconds (large NUTS draws), which is how long Ctrl-C is held back.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["interrupts_deferred", "interrupts_kept"]


def _python_handler_in_main_thread() -> bool:
    return (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler)


@contextlib.contextmanager
def interrupts_kept() -> Iterator[None]:
    """Raise KeyboardInterrupt at the end of the block if a SIGINT came during it
    and was swallowed inside; SIGINT interrupts the block as usual otherwise.

    Only in the main thread and only while Python's own SIGINT handler is installed;
    otherwise the block runs unchanged.

    Examples
    --------
    >>> import os, signal
    >>> try:
    ...     with interrupts_kept():
    ...         try:
    ...             os.kill(os.getpid(), signal.SIGINT)
    ...         except BaseException:
    ...             pass  # swallowed, as some C code does
    ... except KeyboardInterrupt:
    ...     print("interrupted")
    interrupted
    """
    if not _python_handler_in_main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        received.append(signum)
        signal.default_int_handler(signum, frame)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


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
    if not _python_handler_in_main_thread():
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
