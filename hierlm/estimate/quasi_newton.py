"""The quasi-Newton strategy of the one theta optimizer (the bootstrap's refits).

A refit of a fitted model to a new response starts next to its minimum, with the
fit's exact Hessian of the profiled criterion at hand (the Schur complement
``H_tt - H_ts H_ss^{-1} H_st`` of the unprofiled deviance's, by the envelope theorem;
:mod:`hierlm.inference.deviance`).  :class:`QuasiNewton`, given to
:func:`hierlm.estimate.theta_optimizer.minimize_theta` as its ``strategy``, searches:

1. BFGS whose first inverse Hessian is the fit's, with an Armijo line search that also
   halves steps leaving the interior of the bounds; it stops when the Newton
   decrement ``g' H^{-1} g`` is below ``decrement_tol`` (the criterion is then within
   about half of that of its minimum) and the scaled projected gradient rule
   (:func:`accepts`) holds.  For a :class:`CompiledCriterion` the loop runs compiled
   around the objective's graph (:mod:`hierlm.estimate.quasi_newton_loop`; it releases
   the GIL), else in Python (:func:`bfgs`, the same iteration).
2. Where it stalls (against a bound, say), or without a Hessian: the optimizer's
   bounded L-BFGS-B (``fallback``, a :class:`SearchOptions`) from the last iterate, the
   end checked by :func:`accepts`; a minimum it finds on a bound, or a failure, is
   followed by a descent from the start, which may reach an interior minimum; the
   lower of the two is kept.

The result carries the Schur factor ``L_R`` of the criterion at its point
(:attr:`SearchResult.factor`), from which the refit reads ``sigma`` and ``beta``.
The iteration, its constants and the evaluations are those of the bootstrap's refit
loop before it became this strategy (``hierlm.inference.refit``): the bootstrap's
replicates are unchanged bit for bit (1,000 sleepstudy replicates, seed 11: the same
table, byte for byte).  Going through :func:`minimize_theta` costs about 2 us a refit
more (a :class:`SearchResult`, the criterion object); the compiled loop, loaded once
per process and graph instead of once per bootstrap
(:mod:`hierlm.estimate.quasi_newton_loop`), saves far more:
``res.bootstrap(1000, seed=11, n_jobs=1)`` of ``Reaction ~ Days + (Days | Subject)``,
thread CPU time of the calls after a first one in the same process, best (median) of
9, old and new code alternately twice (2-core shared machine, load 3):
0.123-0.124 (0.127-0.128) s -> 0.081-0.085 (0.082-0.100) s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hierlm.estimate.quasi_newton_loop import CompiledLoop
from hierlm.estimate.theta_optimizer import ParameterSpace, SearchOptions, SearchResult

Evaluation = tuple[float, np.ndarray, np.ndarray]


class CompiledCriterion:
    """The profiled criterion of one compiled graph at given arguments.

    Called from Python it is a criterion of :func:`minimize_theta` (``theta -> (d,
    grad d)``); :meth:`evaluate` adds the Schur factor ``L_R``; :class:`QuasiNewton`
    hands ``fn``'s arguments whole to the compiled loop.

    Parameters
    ----------
    fn : callable
        The graph's function, ``fn(theta, *static, *args) -> (d, grad, L1, L_R)``.
    static, args : list of ndarray
        Its other arguments (``reml``, ``n``, ``p``; the Gram blocks).
    loop : CompiledLoop, optional
        The compiled quasi-Newton loop of the graph.
    """

    def __init__(self, fn: Callable[..., Any], static: Sequence[np.ndarray],
                 args: Sequence[np.ndarray], loop: CompiledLoop | None = None) -> None:
        self.fn, self.static, self.args, self.loop = fn, static, args, loop

    def evaluate(self, theta: np.ndarray) -> Evaluation:
        """``(d, grad d, L_R)`` at theta."""
        f, grad, _, L_R = self.fn(theta, *self.static, *self.args)
        return float(f), grad, L_R

    def __call__(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        f, grad, _ = self.evaluate(theta)
        return f, np.asarray(grad)


def accepts(space: ParameterSpace, theta: np.ndarray, grad: np.ndarray,
            check_tol: float) -> bool:
    """The fit's rule: ``max |pg_phi| max(1, |phi|) <= check_tol`` on ``phi = theta /
    scale`` (``pg``: the gradient, zero where a lower bound is active and it pushes out).

    Examples
    --------
    >>> s = ParameterSpace.box([(0.0, None), (None, None)])
    >>> accepts(s, np.array([0.0, 1.0]), np.array([5.0, 1e-4]), 1e-3)
    True
    """
    pg = np.where((theta <= space.lower) & (grad > 0), 0.0, grad) * space.scale
    return bool(np.max(np.abs(pg) * np.maximum(1.0, np.abs(theta / space.scale)),
                       initial=0.0) <= check_tol)


@dataclass(frozen=True, eq=False)
class QuasiNewton:
    """The strategy (module docstring): ``minimize_theta(..., SearchOptions(strategy=
    QuasiNewton(...)))``.

    Attributes
    ----------
    hess_inv : ndarray or None
        The first inverse Hessian (None: L-BFGS-B alone).
    decrement_tol : float
        Newton decrement below which BFGS has converged.
    check_tol : float
        The scaled projected gradient rule's bound (:func:`accepts`).
    fallback : SearchOptions
        The L-BFGS-B stage's options.

    Examples
    --------
    >>> quad = lambda x: (float((x[0] - 2) ** 2 + 4 * (x[1] + 1) ** 2),
    ...                   np.array([2 * (x[0] - 2), 8 * (x[1] + 1)]))
    >>> from hierlm.estimate.theta_optimizer import minimize_theta
    >>> qn = QuasiNewton(np.diag([0.5, 0.125]), 1e-9, 1e-3, SearchOptions())
    >>> r = minimize_theta(quad, ParameterSpace.box([(0.0, None), (None, None)]),
    ...                    np.array([1.0, 0.0]), SearchOptions(strategy=qn))
    >>> r.theta.round(6).tolist(), r.method, r.converged
    ([2.0, -1.0], 'quasi-Newton', True)
    """

    hess_inv: np.ndarray | None
    decrement_tol: float
    check_tol: float
    fallback: SearchOptions

    def search(self, criterion: Callable[[np.ndarray], tuple[float, np.ndarray]],
               space: ParameterSpace, start: np.ndarray,
               minimize: Callable[..., SearchResult]) -> SearchResult:
        """Minimize from ``start`` (``minimize``: the optimizer, for the L-BFGS-B stage)."""
        compiled = criterion if isinstance(criterion, CompiledCriterion) else None
        ev = _evaluation(criterion) if compiled is None else compiled.evaluate
        x = x0 = np.maximum(start, space.lower)
        if self.hess_inv is not None:
            run = None if compiled is None or compiled.loop is None else compiled.loop.run(
                x, self.hess_inv, space.lower, space.scale, self.check_tol,
                self.decrement_tol, [*compiled.static, *compiled.args])
            if run is None:  # the same loop in Python
                converged, x, f, g, L_R = bfgs(
                    ev, x, self.hess_inv, space.lower, self.decrement_tol,
                    lambda th, gr: accepts(space, th, gr, self.check_tol))
            else:
                converged, x, f, g, L_R = run[0] == 0, run[1], run[2], run[3], run[4]
            if converged:
                return SearchResult(theta=x, criterion=f, gradient=np.asarray(g),
                                    evaluations=0, converged=True,
                                    messages=("BFGS: Newton decrement below tolerance",),
                                    method="quasi-Newton", factor=L_R)
        # from the last iterate (the lowest point yet); a minimum on a bound, or a
        # failure, is followed by a descent from the start, which may reach an interior
        # minimum; the lower of the two is kept
        found: list[tuple[np.ndarray, float, np.ndarray, np.ndarray]] = []
        messages: list[str] = []
        method = "quasi-Newton" if self.hess_inv is not None else ""
        for x_start in [x] if np.array_equal(x, x0) else [x, x0]:
            res = minimize(criterion, space, x_start, self.fallback)
            method = f"{method}+{res.method}" if method else res.method
            f, grad, L_R = ev(res.theta)
            if not (np.isfinite(f) and accepts(space, res.theta, grad, self.check_tol)):
                messages.append(f"refit did not converge: {res.messages[-1]}")
                continue
            found.append((res.theta, f, np.asarray(grad), L_R))
            if not np.any(found[-1][0] <= space.lower):
                break
        if not found:
            return SearchResult(theta=x, criterion=np.inf, gradient=np.zeros_like(x),
                                evaluations=0, converged=False, messages=tuple(messages),
                                method=method)
        theta, f, grad, L_R = min(found, key=lambda t: t[1])
        return SearchResult(theta=theta, criterion=f, gradient=grad, evaluations=0,
                            converged=True, messages=tuple(messages), method=method,
                            factor=L_R)


def _evaluation(criterion: Callable[[np.ndarray], tuple[float, np.ndarray]]
                ) -> Callable[[np.ndarray], Evaluation]:
    def ev(theta: np.ndarray) -> Evaluation:
        f, g = criterion(theta)
        return float(f), g, np.zeros((0, 0))
    return ev


def bfgs(ev: Callable[[np.ndarray], Evaluation], x: np.ndarray, hi: np.ndarray,
         lower: np.ndarray, decrement_tol: float,
         accepts: Callable[[np.ndarray, np.ndarray], bool], maxit: int = 50
         ) -> tuple[bool, np.ndarray, float, np.ndarray, np.ndarray]:
    """BFGS from a good inverse Hessian ``hi``, with an Armijo backtracking line search
    that also halves steps leaving the interior.

    Returns ``(converged, theta, f, grad, L_R)`` of the last accepted iterate: converged
    once the Newton decrement is below ``decrement_tol`` and ``accepts(theta, grad)`` at
    an interior point; not when the search stalls, e.g. against a bound (the strategy
    then runs L-BFGS-B from there).  scipy's BFGS and L-BFGS-B cost more in their
    Python layers than the ~5 steps this needs.

    Examples
    --------
    >>> ev = lambda x: (float(x @ x), 2 * x, np.zeros((0, 0)))
    >>> ok, x, f, g, _ = bfgs(ev, np.ones(2), 0.5 * np.eye(2), np.full(2, -np.inf), 1e-12,
    ...                       lambda th, gr: True)
    >>> ok, x.tolist(), f
    (True, [0.0, 0.0], 0.0)
    """
    f, g, L_R = ev(x)
    if not np.isfinite(f):
        return False, x, f, g, L_R
    for _ in range(maxit):
        step = -(hi @ g)
        slope = float(g @ step)
        if -slope < decrement_tol:
            return bool(np.all(x > lower)) and accepts(x, g), x, f, g, L_R
        t = 1.0
        while True:
            xn = x + t * step
            if not np.any(xn <= lower):
                fn_, gn, L_Rn = ev(xn)
                if fn_ <= f + 1e-4 * t * slope:
                    break
            t *= 0.5
            if t < 1e-8:
                return False, x, f, g, L_R
        s, yv = xn - x, gn - g
        sy = float(s @ yv)
        if sy > 1e-12:
            hy = hi @ yv
            rho = 1.0 / sy
            # (I - rho s y') H (I - rho y s') + rho s s', expanded
            hi = (hi + ((sy + float(yv @ hy)) * rho * rho) * (s[:, None] * s[None, :])
                  - rho * (hy[:, None] * s[None, :] + s[:, None] * hy[None, :]))
        x, f, g, L_R = xn, fn_, gn, L_Rn
    return False, x, f, g, L_R
