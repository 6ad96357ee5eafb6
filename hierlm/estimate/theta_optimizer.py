"""The one optimizer of the covariance parameters: the fit, the refits and the profiles.

Every minimization over theta (or a structure's psi, or a profile's free parameters)
goes through :func:`minimize_theta`: a criterion ``d(x)`` returning its value and
gradient, the parameters' description (:class:`ParameterSpace`, read off the
covariance layer: bounds, scale, the template diagonals, canonical signs), one or
more starts and :class:`SearchOptions`.  The search runs in scaled units
``u = x / (scale * units)`` (``scale``: :meth:`DesignCovariance.theta_scale`, so that
rescaling a predictor leaves the path unchanged; ``units``: the moment start's, see
:mod:`hierlm.estimate.moment_start`), where ``d`` and ``grad_u d = scale * units *
grad_x d`` are evaluated; a point where either is not finite is given the value
``1e300`` and a zero gradient, so the line search backs off from it.  The answer is
always the lowest point evaluated.

The descent is L-BFGS-B (:func:`hierlm.estimate.lbfgsb.run_lbfgsb`; the space's box,
or none).  A point is *converged* when every component of the projected gradient in
``phi = x / scale`` (zero where a bound is active and the gradient pushes outward),
times ``max(1, |phi_j|)`` for the components measured relative to their size, is at
most ``check_tol``.  Without the second-order check (:attr:`SearchOptions.second_order`)
each start gets up to ``runs`` L-BFGS-B runs, each from the end of the last, while the
end is not converged and the run lowered ``d`` by more than ``1e-12``; then, with
``newton``, damped Newton steps on the parameters away from their bounds (Hessian by
central differences of the gradient) polish the lowest point: near an optimum a
correlation can move by 2e-3 while ``d`` changes by 1e-6 relatively.  With the
second-order check the search is the fit's (:mod:`hierlm.estimate.checked_descent`):
unconstrained L-BFGS-B, restarts, Powell, escapes from saddles at zero template
diagonals, descents from each term's singular face; the answer's template columns
then get lme4's signs (``T T'`` is unchanged by a column's sign).  With a
``strategy`` the search is the strategy's own, which calls this function for its
L-BFGS-B stages: the bootstrap's refits (:mod:`hierlm.estimate.quasi_newton`: BFGS
from the fit's Hessian, compiled around the objective's graph, then this L-BFGS-B).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.layout import theta_lower
from hierlm.covariance.parameters import parameter_names
from hierlm.design.terms import ModelDesign
from hierlm.estimate.checked_descent import checked_descent
from hierlm.estimate.lbfgsb import run_lbfgsb

Criterion = Callable[[np.ndarray], tuple[float, np.ndarray]]
#: The value given to a point where the criterion or its gradient is not finite.
HUGE = 1e300
#: Newton polish: at most this many steps; the finite-difference step of its Hessian.
NEWTON_STEPS = 20
FD_STEP = 1e-5
#: A run lowering the criterion by no more than this ends the restarts.
RESTART_GAIN = 1e-12
#: A parameter this close to a bound counts as on it in the convergence rule.
BOUND_SLACK = 1e-8


@dataclass(frozen=True, eq=False)
class ParameterSpace:
    """The parameters searched over: what the covariance layer says of them.

    Attributes
    ----------
    lower, upper : ndarray
        Bounds (``-inf`` / ``inf`` for none), in the parameters' own units.
    scale : ndarray
        The search runs on ``x / scale``.
    relative : ndarray of bool
        Components whose gradient the convergence rule weighs by ``max(1, |x / scale|)``.
    diagonals : ndarray of int
        Positions of the template diagonals (the second-order check probes these).
    names : tuple of str
        The parameters' names (messages).
    design : ModelDesign, optional
        For the template signs and the singular faces (theta of a design only).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> s = ParameterSpace.of_theta(d)
    >>> s.lower.tolist(), s.diagonals.tolist(), s.scale.round(4).tolist()
    ([0.0, -inf, 0.0], [0, 2], [1.0, 0.1873, 0.1873])
    """

    lower: np.ndarray
    upper: np.ndarray
    scale: np.ndarray
    relative: np.ndarray
    diagonals: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    names: tuple[str, ...] = ()
    design: ModelDesign | None = None

    @classmethod
    def of_theta(cls, design: ModelDesign) -> ParameterSpace:
        """lme4's theta of ``design`` (template diagonals >= 0), scaled by the columns."""
        lower = theta_lower(design)
        return cls(lower=lower, upper=np.full(len(lower), np.inf),
                   scale=DesignCovariance.of(design).theta_scale(),
                   relative=np.ones(len(lower), dtype=bool),
                   diagonals=np.flatnonzero(lower == 0.0),
                   names=tuple(parameter_names(design)), design=design)

    @classmethod
    def of_psi(cls, design: ModelDesign) -> ParameterSpace:
        """The structures' psi of ``design`` (log SDs and correlation transforms are
        scale-free; an unstructured term's theta is weighed by its size)."""
        cov = DesignCovariance.of(design)
        space = cls.box(cov.psi_bounds())
        return cls(lower=space.lower, upper=space.upper, scale=space.scale,
                   relative=np.array(cov.psi_kinds()) == "theta", names=tuple(cov.labels()))

    @classmethod
    def box(cls, bounds: Sequence[tuple[Any, Any]], scale: np.ndarray | None = None
            ) -> ParameterSpace:
        """Any parameters in a box (``None``: no bound), e.g. a profile's free ones."""
        lo = np.array([-np.inf if b[0] is None else float(b[0]) for b in bounds])
        hi = np.array([np.inf if b[1] is None else float(b[1]) for b in bounds])
        sc = np.ones(len(lo)) if scale is None else np.asarray(scale, dtype=float)
        return cls(lower=lo, upper=hi, scale=sc, relative=np.zeros(len(lo), dtype=bool))

    def search_bounds(self) -> list[tuple[float | None, float | None]]:
        """The box in the search units ``x / scale`` (``None``: no bound)."""
        return [(lo / s if np.isfinite(lo) else None, hi / s if np.isfinite(hi) else None)
                for lo, hi, s in zip(self.lower, self.upper, self.scale, strict=True)]

    def canonical_signs(self, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """lme4's template signs (design's theta only; others unchanged)."""
        if self.design is None:
            return np.array(phi, dtype=float), np.zeros(len(phi), dtype=bool)
        return DesignCovariance.of(self.design).canonical_signs(phi)


@dataclass(frozen=True, eq=False)
class SearchOptions:
    """How :func:`minimize_theta` searches (see the module docstring).

    ``maxiter``, ``ftol``, ``gtol`` and ``maxls`` are L-BFGS-B's; ``check_tol`` the
    convergence rule's bound (None: no rule, every end point is accepted);
    ``bounded``: L-BFGS-B keeps to the space's box; ``runs``: L-BFGS-B runs per start;
    ``newton``: the Newton polish; ``second_order``: the fit's checked descent, with
    ``face_check`` (descents from the singular faces) and ``units`` (the search's
    units in ``phi``) and ``descent`` (its L-BFGS-B runs compiled, :class:`Descent`);
    ``strategy``: a search of its own that runs instead
    (:class:`Strategy`; the bootstrap's quasi-Newton refits,
    :class:`hierlm.estimate.quasi_newton.QuasiNewton`).
    """

    maxiter: int = 1000
    ftol: float = 1e-12
    gtol: float = 1e-6
    maxls: int = 50
    check_tol: float | None = 1e-3
    bounded: bool = True
    runs: int = 1
    newton: bool = False
    second_order: bool = False
    face_check: bool = False
    units: np.ndarray | None = None
    strategy: Strategy | None = None
    descent: Descent | None = None

    def lbfgsb(self) -> dict[str, Any]:
        return {"maxiter": int(self.maxiter), "ftol": float(self.ftol),
                "gtol": float(self.gtol), "maxls": int(self.maxls)}


@dataclass(frozen=True, eq=False)
class SearchResult:
    """Where :func:`minimize_theta` ended.

    Attributes
    ----------
    theta : ndarray
        The minimizer, in the space's parameters (lme4's signs where the space has them).
    criterion : float
        The criterion there.
    gradient : ndarray
        Its gradient in the space's parameters.
    evaluations : int
        Calls of the criterion.
    converged : bool
        The convergence rule (and, with ``second_order``, the second-order check) holds.
    messages : tuple of str
        The optimizers' own accounts, in order.
    method : str
        What ran (``"L-BFGS-B"``, ``"L-BFGS-B+restart"``, ...).
    phases : tuple of (str, int)
        Evaluations spent by each phase.
    factor : ndarray, optional
        The Schur factor ``L_R`` of the criterion at ``theta``, where the search
        has it (the quasi-Newton strategy).
    """

    theta: np.ndarray
    criterion: float
    gradient: np.ndarray
    evaluations: int
    converged: bool
    messages: tuple[str, ...]
    method: str
    phases: tuple[tuple[str, int], ...] = ()
    factor: np.ndarray | None = None


class Strategy(Protocol):
    """A search that :func:`minimize_theta` hands the whole minimization to (given the
    criterion, the space, the first start and :func:`minimize_theta` itself, for its
    own stages)."""

    def search(self, criterion: Criterion, space: ParameterSpace, start: np.ndarray,
               minimize: Callable[..., SearchResult]) -> SearchResult: ...


class Descent(Protocol):
    """The checked descent's L-BFGS-B runs as compiled code: run from ``u0`` in the units
    ``units`` with L-BFGS-B's ``options``, updating ``search`` as its evaluations would
    (count, lowest point); L-BFGS-B's message, or None where it cannot run (then SciPy's
    L-BFGS-B runs).  :mod:`hierlm.estimate.descent_loop`."""

    def __call__(self, search: Search, u0: np.ndarray, units: np.ndarray,
                 options: dict[str, Any]) -> str | None: ...


class Search:
    """The criterion in search units, counted, with the lowest point kept."""

    def __init__(self, criterion: Criterion, scale: np.ndarray) -> None:
        self.criterion, self.scale = criterion, scale
        self.n = 0
        self.best: dict[str, Any] = {"f": np.inf}
        self.first: float | None = None  # the first value since it was last reset

    def fun(self, phi: np.ndarray) -> tuple[float, np.ndarray]:
        """``d`` and its gradient at ``x = phi * scale``, both in ``phi``."""
        f, g = self.criterion(phi * self.scale)
        self.n += 1
        if not (np.isfinite(f) and np.isfinite(g).all()):
            if self.first is None:
                self.first = HUGE
            return HUGE, np.zeros_like(phi)
        if self.first is None:
            self.first = float(f)
        if f < self.best["f"]:
            self.best.update(f=f, x=phi.copy(), g=g.copy())
        return f, g * self.scale


def converged(space: ParameterSpace, phi: np.ndarray, g_phi: np.ndarray, f: float,
              check_tol: float) -> bool:
    """The convergence rule at ``phi`` (module docstring); ``g_phi`` in ``phi``.

    Examples
    --------
    >>> s = ParameterSpace.box([(0.0, None), (None, None)])
    >>> converged(s, np.array([0.0, 1.0]), np.array([5.0, 1e-4]), 1.0, 1e-3)
    True
    """
    lo, hi = space.lower / space.scale, space.upper / space.scale
    out = ((phi <= lo + BOUND_SLACK) & (g_phi > 0)) | ((phi >= hi - BOUND_SLACK) & (g_phi < 0))
    crit = np.where(out, 0.0, np.abs(g_phi)) * np.where(space.relative,
                                                        np.maximum(1.0, np.abs(phi)), 1.0)
    return bool(np.isfinite(f) and np.max(crit, initial=0.0) <= check_tol)


def minimize_theta(criterion: Criterion, space: ParameterSpace,
                   start: np.ndarray | Sequence[np.ndarray],
                   options: SearchOptions | None = None) -> SearchResult:
    """Minimize ``criterion`` (value and gradient) over ``space`` from ``start``.

    Parameters
    ----------
    criterion : callable
        ``x -> (d(x), grad d(x))`` in the space's parameters.
    space : ParameterSpace
        The parameters (from the covariance layer, or a box).
    start : ndarray or sequence of ndarray
        One start, or several (each followed; the lowest point wins).
    options : SearchOptions, optional

    Returns
    -------
    SearchResult

    Examples
    --------
    >>> quad = lambda x: (float((x[0] - 2) ** 2 + (x[1] + 1) ** 2),
    ...                   np.array([2 * (x[0] - 2), 2 * (x[1] + 1)]))
    >>> r = minimize_theta(quad, ParameterSpace.box([(None, 1.0), (None, None)]),
    ...                    np.zeros(2))
    >>> r.theta.round(6).tolist(), round(r.criterion, 6), r.converged
    ([1.0, -1.0], 1.0, True)
    """
    opts = options or SearchOptions()
    if opts.strategy is not None:  # one start
        return opts.strategy.search(criterion, space, np.asarray(start, dtype=float),
                                    minimize_theta)
    starts = [np.asarray(start, dtype=float)] if np.ndim(start) == 1 else [
        np.asarray(s, dtype=float) for s in start]
    search = Search(criterion, space.scale)
    if opts.second_order:
        if len(starts) != 1:
            raise ValueError("the second-order check takes one start")
        theta, f, g, ok, method, messages_, phases_ = checked_descent(search, space,
                                                                      starts[0], opts)
        return SearchResult(theta=theta, criterion=f, gradient=g, evaluations=search.n,
                            converged=ok, messages=messages_, method=method, phases=phases_)
    bounds = space.search_bounds() if opts.bounded else None
    messages: list[str] = []
    for x0 in starts:
        _descend(search, space, x0 / space.scale, bounds, opts, messages)
    n_descent = search.n
    phases = [("descent", n_descent)]
    method = "L-BFGS-B" + (f" x{len(starts)}" if len(starts) > 1 else "")
    if opts.newton and "x" in search.best:
        _newton_polish(search, space)
        phases.append(("newton", search.n - n_descent))
        method += "+Newton"
    best = search.best
    if "x" not in best:
        x = starts[0] / space.scale
        return SearchResult(theta=x * space.scale, criterion=HUGE, gradient=np.zeros_like(x),
                            evaluations=search.n, converged=False,
                            messages=tuple(messages), method=method, phases=tuple(phases))
    phi, f, g = best["x"], float(best["f"]), best["g"]
    if opts.check_tol is None:  # L-BFGS-B's own stopping test
        ok = bool(messages) and messages[-1].startswith("CONVERGENCE")
    else:
        ok = converged(space, phi, g * space.scale, f, opts.check_tol)
    return SearchResult(theta=phi * space.scale, criterion=f, gradient=np.asarray(g, float),
                        evaluations=search.n, converged=ok, messages=tuple(messages),
                        method=method, phases=tuple(phases))


def _descend(search: Search, space: ParameterSpace, phi0: np.ndarray,
             bounds: list[tuple[float | None, float | None]] | None, opts: SearchOptions,
             messages: list[str]) -> None:
    """Up to ``opts.runs`` L-BFGS-B runs from ``phi0``, each from the last one's end."""
    phi = phi0
    for _ in range(max(int(opts.runs), 1)):
        search.first = None
        run = run_lbfgsb(search.fun, phi, bounds=bounds, **opts.lbfgsb())
        messages.append(run.message)
        best = search.best
        # the run's first value is at its start (clipped into the box)
        if "x" not in best or search.first is None or not best["f"] < (
                search.first - RESTART_GAIN):
            return
        phi = best["x"]
        if opts.check_tol is not None and converged(space, phi, best["g"] * space.scale,
                                                    float(best["f"]), opts.check_tol):
            return


def _newton_polish(search: Search, space: ParameterSpace) -> None:
    """Damped Newton steps on the parameters away from their bounds (the lowest point
    is kept by :class:`Search`)."""
    lo, hi = space.lower / space.scale, space.upper / space.scale
    phi, f = search.best["x"], float(search.best["f"])
    g = search.best["g"] * space.scale
    for _ in range(NEWTON_STEPS):
        idx = np.flatnonzero((phi > lo + 1e-3) & (phi < hi - 1e-3))
        if idx.size == 0:
            break
        H = np.zeros((idx.size, idx.size))
        for a, k in enumerate(idx):
            e = np.zeros_like(phi)
            e[k] = FD_STEP
            H[:, a] = (search.fun(phi + e)[1][idx] - search.fun(phi - e)[1][idx]) / (
                2 * FD_STEP)
        H = (H + H.T) / 2
        w = np.linalg.eigvalsh(H)
        if not np.all(np.isfinite(w)) or w[0] <= 1e-10 * max(1.0, abs(w[-1])):
            break  # not locally convex in the free parameters: keep L-BFGS-B's point
        step = np.zeros_like(phi)
        step[idx] = -np.linalg.solve(H, g[idx])
        t = 1.0
        while t > 1e-4:
            cand = np.clip(phi + t * step, lo, hi)
            fc, gc = search.fun(cand)
            if fc <= f:
                break
            t /= 2
        else:
            break
        moved = float(np.max(np.abs(cand - phi)))
        phi, f, g = cand, fc, gc
        if moved < 1e-10:
            break
