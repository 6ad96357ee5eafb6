"""What lets threads share a structure's compiled graph.

A linked PyTensor ``Function`` keeps its inputs, intermediate results and outputs in
storage of its own, and an op that runs an inner function (``OpFromGraph``) keeps that
linked inner function, storage included.  Two threads calling one ``Function`` at once
overwrite each other's values.  :class:`PerThread` gives each thread its own link;
:func:`own_inner_functions` gives a link its own copies of such ops.  PyTensor's
configuration (``change_flags``) and Python's warning filters are process-wide, so
compiling and linking hold :data:`PYTENSOR_LOCK`.  :func:`run_tasks` runs a few
independent tasks (compiled kernels that release the GIL) on threads of their own.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from typing import Any

from pytensor.compile.inner_function import HasInnerFunction
from pytensor.graph.fg import FunctionGraph

__all__ = ["PYTENSOR_LOCK", "PerThread", "inner_function_ops", "own_inner_functions", "run_tasks"]

#: Held while PyTensor compiles or links: its configuration (``change_flags``) and
#: Python's warning filters are process-wide, and a graph must not be cloned or
#: converted while another thread does the same.
PYTENSOR_LOCK = threading.RLock()


def own_inner_functions(fgraph: FunctionGraph) -> None:
    """Give the nodes of ``fgraph`` (a clone) their own copies of the ops that run an
    inner function (``OpFromGraph``): the op keeps its linked inner function, storage
    included, so two links sharing the op instance would share that storage."""
    copies: dict[int, HasInnerFunction] = {}
    for node in fgraph.apply_nodes:
        op = node.op
        if isinstance(op, HasInnerFunction):
            if id(op) not in copies:
                own = copies[id(op)] = copy.copy(op)
                own._fn = None  # linked again, on this copy
            node.op = copies[id(op)]


class PerThread:
    """A callable made once per calling thread by ``make``: a linked PyTensor
    ``Function`` is not safe to call from two threads at once.  ``serialize`` also
    lets one thread call at a time (for graphs whose ops share state that a
    per-thread link does not copy).

    Examples
    --------
    >>> import threading
    >>> calls = PerThread(lambda: threading.get_ident)
    >>> calls() == threading.get_ident()
    True
    """

    def __init__(self, make: Callable[[], Callable[..., Any]], serialize: bool = False) -> None:
        self._make = make
        self._local = threading.local()
        self._lock = threading.Lock() if serialize else None

    def __call__(self, *args: Any) -> Any:
        fn = getattr(self._local, "fn", None)
        if fn is None:
            fn = self._local.fn = self._make()
        if self._lock is None:
            return fn(*args)
        with self._lock:
            return fn(*args)



def inner_function_ops(fgraph: FunctionGraph) -> list[HasInnerFunction]:
    out: list[HasInnerFunction] = []
    for node in fgraph.apply_nodes:
        if isinstance(node.op, HasInnerFunction):
            out += [node.op, *inner_function_ops(node.op.fgraph)]  # type: ignore[arg-type]
    return out


def run_tasks(tasks: list[Callable[[], Any]]) -> list[Any]:
    """Run the tasks, the first on this thread and each other on a new thread; their
    results in order (the first exception raised, if any, is raised here).

    Threads are started per call (about 0.1 ms each), so nothing outlives the call and
    a forked process has nothing to inherit.

    Examples
    --------
    >>> run_tasks([lambda: 1, lambda: 2])
    [1, 2]
    """
    out: list[Any] = [None] * len(tasks)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            out[i] = tasks[i]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True)
               for i in range(1, len(tasks))]
    for th in threads:
        th.start()
    run(0)
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return out
