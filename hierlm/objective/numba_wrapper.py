"""Numba wrappers around a cached graph's function (:mod:`hierlm.objective.graph_cache`).

A wrapper is a small Python function, compiled by Numba and cached under the graph's
digest and the wrapper's source, that calls the graph's Numba function ``fn``: a
wrapper Numba loads from its cache holds the graph's machine code, so it loads with a
stand-in callee (:class:`NotNeeded`) and the graph is never converted to Numba in that
process.  :func:`wrapper_function` makes such a function from source (the compiled
loops of :mod:`hierlm.estimate.psi_call`, :mod:`hierlm.estimate.descent_loop`,
:mod:`hierlm.estimate.quasi_newton_loop` and the NUTS density's C entry points are
wrappers too); :class:`_WarmCall` is the one-line wrapper behind
:attr:`hierlm.objective.graph_cache.CompiledGraph.python_fn`.  ``graph`` is that
module's :class:`~hierlm.objective.graph_cache.CompiledGraph` (its ``digest``,
``fgraph`` and ``fn``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from hierlm.objective import numba_cache
from hierlm.objective.interrupts import interrupts_kept
from hierlm.objective.threads import PYTENSOR_LOCK


class NotNeeded:
    """Stands in for a graph's Numba function while a wrapper may load from Numba's
    cache (a cached wrapper holds its callee's machine code); compiling with it fails."""


def wrapper_function(graph: Any, src: str, fname: str, callee: Any,
                     env: dict[str, Any] | None = None) -> Callable[..., Any]:
    """The Python function ``fname`` of wrapper source ``src`` that calls ``fn``
    (``callee``: the graph's Numba function or a :class:`NotNeeded`), for Numba to
    compile.  Numba caches it under the graph's digest and ``src`` (not at all when
    the graph has no digest); ``env`` adds globals."""
    key = (hashlib.sha256(f"{graph.digest}{src}".encode()).hexdigest()
           if graph.digest is not None else None)
    return source_function(src, fname, key, {"fn": callee, **(env or {})})


def source_function(src: str, fname: str, key: str | None,
                    env: dict[str, Any]) -> Callable[..., Any]:
    """The Python function ``fname`` of source ``src`` with globals ``env``, for Numba to
    compile and cache under ``key`` (not at all for None), Numba's cache made safe
    first (:func:`hierlm.objective.numba_cache.prepare`).

    Examples
    --------
    >>> source_function("def f(x): return x + k", "f", None, {"k": 1})(1)
    2
    """
    numba_cache.prepare()
    from pytensor.link.numba.cache import compile_numba_function_src

    # a function loaded from Numba's cache re-imports its module, __name__ (env may
    # name another)
    glob = {"__name__": __name__, **env}
    return compile_numba_function_src(src, fname, global_env=glob, cache_key=key)


_WRAPPER_SRC = """
def hierlm_graph({args}):
    return fn({args})
"""


class _WarmCall:
    """Calls a cached graph through a Numba wrapper (see ``CompiledGraph.python_fn``)."""

    def __init__(self, graph: Any) -> None:
        from numba.core.errors import TypingError

        self._graph = graph
        self._typing_error = TypingError
        with interrupts_kept():
            self._fn = self._first = self._wrapper(NotNeeded())
        self._called = False

    @property
    def _stand_in(self) -> bool:
        """Whether calls still go to the wrapper with the stand-in callee."""
        return self._fn is self._first

    def _wrapper(self, callee: Any) -> Callable[..., Any]:
        import numba

        args = ", ".join(f"a{i}" for i in range(len(self._graph.fgraph.inputs)))
        src = _WRAPPER_SRC.format(args=args)
        return numba.njit(cache=True)(wrapper_function(self._graph, src, "hierlm_graph",
                                                       callee))

    def __call__(self, *args: Any) -> Any:
        if self._called:
            return self._call(*args)
        with interrupts_kept():  # the first call compiles or loads machine code
            out = self._call(*args)
        self._called = True
        return out

    def _call(self, *args: Any) -> Any:
        fn = self._fn  # one read: another thread may replace it meanwhile
        try:
            return fn(*args)
        except self._typing_error:
            if fn is not self._first:
                raise
            # not in Numba's cache for these argument types: compile against the graph
            with PYTENSOR_LOCK:  # once, when threads get here together
                if self._fn is self._first:
                    self._fn = self._wrapper(self._graph.fn)
            return self._fn(*args)
