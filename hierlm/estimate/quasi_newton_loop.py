"""The quasi-Newton stage of :mod:`hierlm.estimate.quasi_newton` compiled by Numba
around the objective's graph.

The same iteration as :func:`hierlm.estimate.quasi_newton.bfgs` (BFGS from a good
inverse Hessian, Armijo backtracking, stop when the Newton decrement ``g' H^{-1} g``
is below the strategy's ``decrement_tol`` and the scaled-gradient rule holds), with
the profiled objective's Numba function called from inside the loop: a call from
Python costs about twice the graph's own work (the Gram arrays are unboxed on every
call), from compiled code it costs the work alone, and the loop's bookkeeping on
``k``-vectors is no longer Python's.  The loop releases the GIL.  (It was the
bootstrap's own refit loop, ``hierlm.inference.refit_compiled``; it is now a stage of
the package's one theta optimizer, :func:`hierlm.estimate.theta_optimizer.minimize_theta`.)

Its machine code is cached by Numba under the graph's digest (as the graph's own
Python wrapper is, :mod:`hierlm.objective.graph_cache`), so it is compiled once per
model structure.  Where the objective's graph is not cached (``HIERLM_GRAPH_CACHE=0``)
or the loop cannot be compiled, :meth:`CompiledLoop.run` returns None and the caller
keeps to the Python loop.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from hierlm.objective.graph_cache import CompiledGraph, NotNeeded, wrapper_function

_LOCK = threading.Lock()
#: The loop of each graph (by digest) that has run in this process, and whether it is
#: the wrapper loaded with the stand-in callee: loading it again for every bootstrap
#: (one ``CompiledLoop`` each) cost about 0.05 s of Numba's loading.
_LOADED: dict[str, tuple[Any, bool]] = {}

# status 0: converged; 1: the search stalled, e.g. against a bound (L-BFGS-B next, from
# the last iterate)
_SRC = """
def hierlm_bfgs(x0, hi0, lower, scale, check_tol, dec_tol, maxit, {args}):
    k = x0.shape[0]
    x = x0.copy()
    hi = hi0.copy()
    step = np.empty(k)
    out = fn(x, {args})
    f = out[0].item()
    g = out[1].copy()
    L_R = out[3]
    if not np.isfinite(f):
        return 1, x, f, g, L_R
    for _it in range(maxit):
        dec = 0.0
        for i in range(k):
            acc = 0.0
            for j in range(k):
                acc += hi[i, j] * g[j]
            step[i] = acc
            dec += g[i] * acc
        if dec < dec_tol:
            worst = 0.0
            for i in range(k):
                if not x[i] > lower[i]:
                    return 1, x, f, g, L_R
                pg = abs(g[i] * scale[i]) * max(1.0, abs(x[i] / scale[i]))
                worst = max(worst, pg)
            return (0 if worst <= check_tol else 1), x, f, g, L_R
        t = 1.0
        while True:
            xn = x - t * step
            inside = True
            for i in range(k):
                if xn[i] <= lower[i]:
                    inside = False
            if inside:
                out = fn(xn, {args})
                fn_ = out[0].item()
                if fn_ <= f - 1e-4 * t * dec:
                    break
            t *= 0.5
            if t < 1e-8:
                return 1, x, f, g, L_R
        gn = out[1]
        s = xn - x
        yv = gn - g
        sy = 0.0
        for i in range(k):
            sy += s[i] * yv[i]
        if sy > 1e-12:
            hy = np.zeros(k)
            yhy = 0.0
            for i in range(k):
                acc = 0.0
                for j in range(k):
                    acc += hi[i, j] * yv[j]
                hy[i] = acc
                yhy += yv[i] * acc
            rho = 1.0 / sy
            c = (sy + yhy) * rho * rho
            for i in range(k):
                for j in range(k):
                    hi[i, j] += c * s[i] * s[j] - rho * (hy[i] * s[j] + s[i] * hy[j])
        x = xn
        f = fn_
        g = gn.copy()
        L_R = out[3]
    return 1, x, f, g, L_R
"""


class CompiledLoop:
    """The refit loop for one objective (compiled on first use; see the module docstring).

    Parameters
    ----------
    graph : CompiledGraph
        The objective's rewritten graph
        (:attr:`hierlm.objective.profiled.ProfiledObjective.graph`).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective import compile_objective
    >>> from hierlm.objective.profiled import gram_values
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> obj = compile_objective(d, backend="numba")
    >>> args = [np.asarray(1.0), np.asarray(180.0), np.asarray(2.0), *gram_values(obj.gram)]
    >>> lower, scale = np.array([0.0, -np.inf, 0.0]), np.ones(3)
    >>> status, theta, f, g, L_R = CompiledLoop(obj.graph).run(
    ...     np.array([0.96673, 0.01516, 0.23090]), np.eye(3), lower, scale, 1e-3, 1e-9, args)
    >>> status, round(f, 3)
    (0, 1743.628)
    """

    def __init__(self, graph: CompiledGraph) -> None:
        self.graph: CompiledGraph | None = graph if graph.digest is not None else None
        self._fn: Any = None
        self._stand_in = True
        self.failed = self.graph is None
        if graph.digest is not None and graph.digest in _LOADED:
            self._fn, self._stand_in = _LOADED[graph.digest]

    @property
    def ready(self) -> bool:
        """Whether the loop has been compiled (or loaded) and runs."""
        return self._fn is not None and not self.failed

    def _compile(self, callee: Any) -> Any:
        import numba

        assert self.graph is not None
        n_args = len(self.graph.fgraph.inputs)
        src = _SRC.format(args=", ".join(f"a{i}" for i in range(1, n_args)))
        py = wrapper_function(self.graph, src, "hierlm_bfgs", callee, env={"np": np})
        return numba.njit(cache=True, nogil=True)(py)

    def run(self, x0: np.ndarray, hi: np.ndarray, lower: np.ndarray, scale: np.ndarray,
            check_tol: float, dec_tol: float, args: list[np.ndarray]
            ) -> tuple[int, np.ndarray, float, np.ndarray, np.ndarray] | None:
        """``(status, theta, f, gradient, L_R)``; status 0 when converged; None when
        unavailable."""
        if self.failed:
            return None
        from numba.core.errors import NumbaError

        try:
            if self._fn is None:
                with _LOCK:
                    if self._fn is None:
                        self._fn = self._compile(NotNeeded())
            try:
                return self._call(x0, hi, lower, scale, check_tol, dec_tol, args)
            except NumbaError:
                if not self._stand_in:
                    raise
                # not in Numba's cache for these types: compile against the graph itself
                assert self.graph is not None
                with _LOCK:
                    self._fn, self._stand_in = self._compile(self.graph.fn), False
                return self._call(x0, hi, lower, scale, check_tol, dec_tol, args)
        except NumbaError:
            self.failed = True
            return None

    def _call(self, x0: np.ndarray, hi: np.ndarray, lower: np.ndarray, scale: np.ndarray,
              check_tol: float, dec_tol: float, args: list[np.ndarray]
              ) -> tuple[int, np.ndarray, float, np.ndarray, np.ndarray]:
        fn = self._fn
        status, x, f, g, L_R = fn(x0, hi, lower, scale, check_tol, dec_tol, 50, *args)
        digest = None if self.graph is None else self.graph.digest
        if digest is not None and digest not in _LOADED:
            _LOADED[digest] = (fn, self._stand_in)  # it ran
        return int(status), x, float(f), g, L_R
