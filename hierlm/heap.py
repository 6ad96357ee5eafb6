"""Large temporaries reused instead of mapped afresh while a fit runs (glibc only).

Every evaluation of a large model's objective allocates and frees dense temporaries
of the Schur block's size (InstEval: 1,143 x 1,143, 10 MB each).  glibc serves
requests above its mmap threshold with new mappings, and gives a freed heap top above
its trim threshold back to the system, so each evaluation faults its temporaries'
pages in again and the kernel zeroes them: in a ``perf`` profile of InstEval's
log-density gradient, 29% of the samples were in the kernel, page faults and page
clearing.  While a fit of a model with a large dense block runs, both thresholds are
raised so freed blocks are reused; afterwards they are set back to glibc's defaults
(128 KiB) and ``malloc_trim`` returns the free memory to the system.

glibc's allocator has no setting scoped to a block of code or a thread, and NumPy,
Numba and PyTensor all allocate through ``malloc``, so ``mallopt`` is the only knob;
elsewhere (macOS, Windows, musl) :func:`large_temporaries_reused` does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import sys
from collections.abc import Iterator
from typing import Any

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
GLIBC_DEFAULT = 128 * 1024
RAISED = 1 << 30
MIN_ROWS = 256  # dense blocks from this size (512 KiB) up are above glibc's default
#: Objects left young by a :func:`gc_paused` block from which they are aged at once.
AGE_MIN_OBJECTS = 10_000


@functools.cache
def _glibc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


#: Whether this process's thresholds were set (glibc's dynamic ones are then off for good).
_SET = [False]


@contextlib.contextmanager
def large_temporaries_reused(dense_rows: int, *, once_set: bool = False) -> Iterator[bool]:
    """Keep freed memory in the heap for the block when the dense block is large.

    Parameters
    ----------
    dense_rows : int
        Rows of the model's dense Schur block; below :data:`MIN_ROWS` nothing changes.
    once_set : bool
        Change nothing unless the thresholds were set before in this process (a fit's
        block).  Until then glibc adapts them itself (a freed mapping raises them to its
        size), and setting them switches that off for good: after ``summary()`` of a
        model whose fit had left them alone, Kenward-Roger's table of the crossed
        ``q = 1000`` model of ``benchmarks/post_fit.py`` faulted 2,100 pages in
        afresh (13 -> 20 ms).  Once set, each large temporary is a new mapping,
        faulted in page by page: the post-fit tables are then better off inside the
        block (``summary()`` of the crossed ``q = 2000`` model: 7,900 -> 4,300-5,400
        faults).

    Yields
    ------
    bool
        Whether the allocator's thresholds were raised.

    Examples
    --------
    >>> import numpy as np
    >>> with large_temporaries_reused(1143) as raised:
    ...     total = sum(float(np.ones((1143, 1143)).sum()) for _ in range(3))
    >>> total == 3 * 1143**2
    True
    """
    libc = _glibc() if dense_rows >= MIN_ROWS and (_SET[0] or not once_set) else None
    raised = libc is not None and all(
        [libc.mallopt(M_MMAP_THRESHOLD, RAISED), libc.mallopt(M_TRIM_THRESHOLD, RAISED)])
    _SET[0] = _SET[0] or libc is not None
    try:
        yield raised
    finally:
        if libc is not None:
            libc.mallopt(M_MMAP_THRESHOLD, GLIBC_DEFAULT)
            libc.mallopt(M_TRIM_THRESHOLD, GLIBC_DEFAULT)
            libc.malloc_trim(0)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for the block, as :mod:`timeit` does.

    With PyTensor, PyMC, Numba and ArviZ loaded a process tracks ~300,000 objects, and
    a full collection walks all of them (0.25 s after a sleepstudy NUTS fit).  Loading
    and fitting allocate enough to trigger two of them in a first NUTS fit: 0.6-0.7 s
    of its ~4 s.  A fit leaves no cyclic garbage that needs collecting meanwhile; the
    collector is switched back on afterwards (if it was on).

    What the block left in the youngest generation is then collected at once with the
    middle one (:data:`AGE_MIN_OBJECTS` or more), so its survivors go straight to the
    oldest generation.  Otherwise the collector's next automatic pass, a young one right
    after the block, walks them and moves them to the middle generation, and a middle
    pass soon after walks them all again: a first fit of the crossed
    ``(1 | g) + (1 | h)`` model of ``benchmarks/post_fit.py`` (q = 2000) imports Numba
    and leaves ~100,000 objects, each pass ~35 ms, and the second one fell into the next
    call, ``summary()``.

    Examples
    --------
    >>> import gc
    >>> with gc_paused():
    ...     paused = not gc.isenabled()
    >>> paused, gc.isenabled()
    (True, True)
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
            if gc.get_count()[0] >= AGE_MIN_OBJECTS:
                gc.collect(1)
