"""Independent blocks of work on threads or forked worker processes, results in order.

Threads are cheapest, and run at once wherever the work releases the GIL (the compiled
refit loop of :mod:`hierlm.estimate.quasi_newton_loop` does).  Work that holds the GIL
(Python loops around the compiled graphs, whose Numba functions are compiled without
``nogil``) goes to forked processes instead: they inherit the parent's compiled
graphs, data and state without pickling any of it, and only each block's input and
result travel through pipes.  Where fork is unavailable (Windows), or unsafe (macOS,
whose system frameworks do not survive a fork), or a worker cannot be started or
dies, the blocks run one after another in the calling process: the results are the
same, only slower.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

_LOCK = threading.Lock()
#: The function forked workers run; set in the parent just before the fork.
_TASK: Callable[[Any], Any] | None = None
_END = object()


def _call(arg: Any) -> Any:
    assert _TASK is not None
    return _TASK(arg)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the platform has one).

    Examples
    --------
    >>> available_cores() >= 1
    True
    """
    count = getattr(os, "process_cpu_count", None)  # Python 3.13
    if count is not None:
        n = count()
    elif hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0))
    else:
        n = os.cpu_count()
    return max(1, n or 1)


def fork_available() -> bool:
    """Whether worker processes are started by fork here (not on Windows or macOS).

    Examples
    --------
    >>> isinstance(fork_available(), bool)
    True
    """
    return sys.platform != "darwin" and "fork" in multiprocessing.get_all_start_methods()


def map_blocks(task: Callable[[Any], Any], inputs: Iterable[Any], n_jobs: int,
               on_result: Callable[[Any], None], processes: bool = False) -> int:
    """Call ``on_result(task(x))`` for each ``x`` of ``inputs``, in their order.

    With ``n_jobs > 1``, ``task`` runs on ``n_jobs`` threads, or on ``n_jobs`` forked
    processes with ``processes=True`` (where fork is available), at most ``2 n_jobs``
    inputs ahead of the results handed to ``on_result`` (``inputs`` is read lazily,
    so its items need not all fit in memory).  Returns the number of threads or
    processes used (1: serial in this thread).

    Examples
    --------
    >>> got = []
    >>> map_blocks(lambda x: x * x, range(4), 2, got.append), got
    (2, [0, 1, 4, 9])
    """
    items = iter(inputs)
    if n_jobs > 1 and not processes:
        with ThreadPoolExecutor(n_jobs) as pool:
            _windowed(pool, task, items, n_jobs, on_result)
        return n_jobs
    if n_jobs > 1 and fork_available():
        with _LOCK:
            global _TASK
            _TASK = task
            try:
                return _forked(items, n_jobs, task, on_result)
            finally:
                _TASK = None
    for x in items:
        on_result(task(x))
    return 1


def _windowed(pool: Executor, task: Callable[[Any], Any], items: Iterator[Any], n_jobs: int,
              on_result: Callable[[Any], None],
              pending: collections.deque[tuple[Any, Future[Any]]] | None = None) -> bool:
    """Submit ``items`` to ``pool``, handing results on in order, ``2 n_jobs`` at most in
    flight.  On a dead worker the rest runs in this process, in order (returns False)."""
    pending = collections.deque() if pending is None else pending
    fn = _call if isinstance(pool, ProcessPoolExecutor) else task
    unsent: Any = _END
    try:
        for unsent in items:
            pending.append((unsent, pool.submit(fn, unsent)))
            unsent = _END
            while len(pending) >= 2 * n_jobs:
                on_result(pending[0][1].result())
                pending.popleft()
        while pending:
            on_result(pending[0][1].result())
            pending.popleft()
    except BrokenProcessPool:  # a worker died: the rest here, in order
        rest = [x for x, _ in pending] + ([] if unsent is _END else [unsent])
        for x in [*rest, *items]:
            on_result(task(x))
        return False
    return True


def _forked(items: Iterator[Any], n_jobs: int, task: Callable[[Any], Any],
            on_result: Callable[[Any], None]) -> int:
    first = next(items, _END)
    if first is _END:
        return n_jobs
    try:
        with warnings.catch_warnings():
            # Python 3.12 warns on fork in a process with threads (BLAS's idle pool);
            # the workers run only the task, which takes no lock those threads hold
            warnings.filterwarnings("ignore", message=".*fork", category=DeprecationWarning)
            pool = ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("fork"))
            future = pool.submit(_call, first)  # forks the workers
    except OSError:  # no processes to be had: run here
        for x in [first, *items]:
            on_result(task(x))
        return 1
    with pool:
        whole = _windowed(pool, task, items, n_jobs, on_result,
                          collections.deque([(first, future)]))
    return n_jobs if whole else 1
