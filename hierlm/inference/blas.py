"""One BLAS thread for the post-fit tables' small dense algebra.

The tables' matrices are ``q x q`` and ``p x p`` with ``q`` in the hundreds: with
OpenBLAS's two threads on this 2-core machine while other processes ran, a
``1296 x 16`` pseudo-inverse took 0.44 s and three ``89 x 89`` triangular solves
0.06 s, against 0.4 ms and well under 1 ms with one thread (the fit limits BLAS the
same way, :meth:`hierlm.Model.fit`).

The limit is set through threadpoolctl's controllers of the BLAS libraries loaded
(found once per process): each library's thread count is read on entry, set to 1
where it is not 1 already, and set back on exit.  A context opened inside another in
the same thread changes nothing (the outer one holds the limit): a fit from
:func:`hierlm.fit` opens one, not one for the design and one for the optimizer.
``threadpoolctl``'s own ``limit()`` re-reads every library's settings per call:
0.0127 ms a context against 0.0065 ms here and 0.0013 ms for a nested one (two OpenBLAS
libraries, thread CPU time, best of 500, 2 shared cores; ``python -m
benchmarks.fit_parts`` times whole fits).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from threadpoolctl import ThreadpoolController


@functools.cache
def _controller() -> ThreadpoolController:
    """One controller per process: finding the BLAS libraries costs milliseconds a call."""
    return ThreadpoolController()


@functools.cache
def _blas_libraries() -> tuple[Any, ...]:
    """The controllers of the BLAS libraries loaded (threadpoolctl's ``LibController``)."""
    return tuple(_controller().select(user_api="blas").lib_controllers)


_DEPTH = threading.local()


@contextlib.contextmanager
def _limited() -> Iterator[None]:
    depth = getattr(_DEPTH, "n", 0)
    if depth:  # an outer context of this thread holds the limit
        _DEPTH.n = depth + 1
        try:
            yield
        finally:
            _DEPTH.n = depth
        return
    changed = []
    for lib in _blas_libraries():
        n = lib.get_num_threads()
        if n is not None and n != 1:
            lib.set_num_threads(1)
            changed.append((lib, n))
    _DEPTH.n = 1
    try:
        yield
    finally:
        _DEPTH.n = 0
        for lib, n in changed:
            lib.set_num_threads(n)


def one_blas_thread() -> AbstractContextManager[Any]:
    """A context in which BLAS runs on one thread.

    Examples
    --------
    >>> import numpy as np
    >>> with one_blas_thread():
    ...     float(np.linalg.pinv(np.eye(2))[0, 0])
    1.0
    """
    return _limited()
