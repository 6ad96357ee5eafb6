"""Independent blocks of work on forked worker processes, their results in order.

The compiled graphs hold the GIL while they run (their Numba functions are compiled
without ``nogil``), so threads would not run two refits at once.  Forked processes
inherit the parent's compiled graphs, data and state without pickling any of it; only
each block's input and result travel through pipes.  Where fork is unavailable
(Windows), or unsafe (macOS, whose system frameworks do not survive a fork), or a
worker cannot be started, the blocks run one after another in the calling process:
the results are the same, only slower.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

_LOCK = threading.Lock()
#: The function the workers run; set in the parent just before the fork.
_TASK: Callable[[Any], Any] | None = None


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
               on_result: Callable[[Any], None]) -> int:
    """Call ``on_result(task(x))`` for each ``x`` of ``inputs``, in their order.

    With ``n_jobs > 1`` (and fork available) ``task`` runs in ``n_jobs`` forked
    processes, at most ``2 n_jobs`` inputs ahead of the results handed to
    ``on_result`` (``inputs`` is read lazily, so its items need not all fit in memory).
    Returns the number of processes used (1: serial in this process).

    Examples
    --------
    >>> got = []
    >>> map_blocks(lambda x: x * x, range(4), 1, got.append), got
    (1, [0, 1, 4, 9])
    """
    items = iter(inputs)
    if n_jobs > 1 and fork_available():
        with _LOCK:
            global _TASK
            _TASK = task
            try:
                return _parallel(items, n_jobs, task, on_result)
            finally:
                _TASK = None
    for x in items:
        on_result(task(x))
    return 1


def _parallel(items: Any, n_jobs: int, task: Callable[[Any], Any],
              on_result: Callable[[Any], None]) -> int:
    pending: collections.deque[tuple[Any, Future[Any]]] = collections.deque()
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
    pending.append((first, future))
    with pool:
        unsent: Any = _END
        try:
            for unsent in items:
                pending.append((unsent, pool.submit(_call, unsent)))
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
            return 1
    return n_jobs


_END = object()
