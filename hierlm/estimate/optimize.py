"""Stage 3 (frequentist): minimize lme4's profiled criterion over theta.

The criterion depends on each template ``T_i`` only through ``T_i T_i'``, which is
unchanged when a column of ``T_i`` changes sign.  So the minimization runs
*unconstrained* (L-BFGS-B without bounds, exact autodiff gradient) and the answer is
mapped back to lme4's half-space (template diagonals >= 0) by flipping the columns
with a negative diagonal (:mod:`hierlm.estimate.boundary`).  With lme4's bounds
instead, a line search that lands on ``theta_jj = 0`` stops there for good: the
criterion is even in ``theta_jj`` when the rest of column ``j`` is zero (scalar terms,
last diagonals), so its derivative vanishes on the bound even where the bound is a
maximum along it.

Three further checks make the end point a local minimum of the bounded problem:

* first order: the gradient in the rescaled parameter ``phi`` (below), each component
  times ``max(1, |phi_j|)``, is at most ``check_tol``; a point that fails passes if
  lme4's own check does (gradient scaled by the Cholesky factor of a finite-difference
  Hessian of the exact gradient, below 2e-3; :mod:`hierlm.estimate.convergence`).  If
  L-BFGS-B stops short it restarts once; then Powell, then L-BFGS-B again.
* second order at zero diagonals (``escape_boundary``): for every template diagonal
  with ``|phi_j| < ZERO_DIAG``, alone and all together, the criterion is
  evaluated at ``phi_j = h`` for ``h`` in ``boundary.ESCAPE_STEPS``; a lower point restarts the
  descent there (at most ``MAX_ESCAPES`` times).  A point that still fails is not
  converged, and the warning names the parameter.
* a second, singular optimum: on samples of at most ``FACE_CHECK_MAX_NOBS`` rows, where
  the criterion can have both an interior and a boundary local minimum, one more
  descent starts from each term's covariance with its smallest eigenvalue set to 0;
  the lowest end point wins.  These descents stay on the face (the criterion is even
  in the zeroed diagonal there) and on the reference fits end 0.6 to 280 units of the
  criterion above the interior optimum, which they never replace.  So they stop at
  L-BFGS-B's ``ftol`` of ``FACE_FTOL`` (1e-8) instead of 1e-12; one that passes below
  the best point goes on from there at full precision.  The estimates are unchanged
  (bit for bit on the 24 reference fits of ``benchmarks.peers``), with 481 instead of
  509 evaluations in all.

Measured on 200 random small designs, by REML and ML (400 fits;
``tests/estimate/test_optimum.py``: ``(0 + x | g)``, ``(1 | g) + (0 + x | g)``,
``(1 + x | g)``, ``(1 + x | g) + (1 | h)``, ``(1 + x + z | g)``, 4-40 groups, true SDs
0-1): with bounded L-BFGS-B (the previous optimizer) 103 fits ended above the best of
12 random starts, by up to 7 units of the criterion, all reported converged; bounded
L-BFGS-B with the two checks above still failed 35; unconstrained L-BFGS-B alone 1;
unconstrained with both checks 0, in 9,749 evaluations for the 400 default fits.
Benchmark cases (``python -m benchmarks.optimizer_bench``), evaluations before ->
after: sleepstudy 11 -> 11 + 11 (face check), penicillin 13 -> 13 + 20, pastes
12 -> 12 + 13, maximal 4x4 + 4x4 crossed 38 -> 50 (second-order probes of its singular
templates), InstEval 25 -> 32 (REML; 26 -> 35 ML: unconstrained line searches).

The optimizer runs on ``phi``: row ``j`` of each term's template is multiplied by the
root mean square ``s_j`` of the term's column ``j``, so that ``theta = phi / s``.
Rescaling a predictor then leaves the optimizer's path unchanged (``x ~ 1e5`` or
``1e-5`` fit like ``x ~ 1``); the start is the identity template in ``phi`` (lme4's
identity start for unit-scale columns).

Large samples (more than ``moment_start.MOMENT_START_MIN_NOBS`` rows) whose terms are all scalar
start instead from the moment estimate of :mod:`hierlm.estimate.moment_start`, and
L-BFGS-B runs in units ``phi_j / (phi0_j / sqrt(q_j))`` (``phi0``: that start, ``q_j``:
the term's levels), where the criterion's Hessian is about ``2 I``
(:func:`default_start`).  From the identity start, L-BFGS-B spent most evaluations
finding each term's scale: the criterion is steep in terms with many levels and flat
in those with few (InstEval's ``dept``, 14 levels, overshot to ``theta = -1.5``).
Evaluations, identity start -> moment start in these units (in the moment start's
own ``phi`` units alone: 13 REML, 13 ML): InstEval REML 32 -> 12 (9 descent + 3 for
lme4's Hessian check, needed where the gradient ends at about 2e-3, the criterion
then flat to its last digit), ML 35 -> 9; the simulated 1M-row MovieLens design
(``benchmarks.simulate``) 16 -> 6.  The criterion at the end agreed to 1e-10
relative in all four InstEval fits.  Smaller samples keep lme4's start, so the
randomized-design results above are unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.optimize

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.layout import (
    theta_lower,
)
from hierlm.covariance.parameters import parameter_names
from hierlm.design.terms import ModelDesign
from hierlm.errors import MethodError
from hierlm.estimate.boundary import (
    ESCAPE_TOL,
    MAX_ESCAPES,
    ZERO_DIAG,
    canonical_signs,
    escape_boundary,
    face_starts,
)
from hierlm.estimate.convergence import LME4_TOL, scaled_gradient
from hierlm.estimate.lbfgsb import minimize_lbfgsb
from hierlm.estimate.moment_start import default_start
from hierlm.objective.profiled import ProfiledObjective

# ftol, gtol: L-BFGS-B's stopping rules; check_tol: the largest scaled projected-gradient
# component still called converged (lme4 flags scaled gradients above 2e-3).
DEFAULT_OPTIONS: dict[str, float | int] = {
    "maxiter": 1000, "ftol": 1e-12, "gtol": 1e-6, "check_tol": 1e-3,
}
# Samples up to this size also get one descent from each term's rank-reduced covariance.
FACE_CHECK_MAX_NOBS = 10_000
# L-BFGS-B's ftol for those descents until they pass below the best point so far.
FACE_FTOL = 1e-8


@dataclass(frozen=True)
class OptimizerResult:
    """Where the optimizer stopped and how it got there.

    Attributes
    ----------
    theta : ndarray
        The minimizer.
    objective : float
        lme4's criterion at ``theta``.
    gradient : ndarray
        Projected gradient with respect to theta at ``theta``.
    n_evals : int
        Objective (with gradient) evaluations.
    converged : bool
        The scaled projected gradient (see the module docstring) is at most ``check_tol``.
    message : str
        The optimizer's own account.
    method : str
        ``"L-BFGS-B"``, ``"L-BFGS-B+restart"`` or ``"L-BFGS-B+Powell"``.
    trace : tuple of (theta, objective)
        Every evaluation, in order.
    phases : tuple of (str, int)
        Evaluations spent by each phase: ``"descent"`` from the start, then one
        ``"face"`` per term for samples of at most ``FACE_CHECK_MAX_NOBS``.
    factor : tuple of ndarray, optional
        ``(L1, L_R)`` at ``theta`` when the optimizer evaluated it there (saves
        :func:`hierlm.estimate.frequentist.fit_profiled` one evaluation).
    psi : ndarray, optional
        The structures' parameters at the minimizer, for a model with a structured
        covariance (:mod:`hierlm.estimate.optimize_structured`); None otherwise.
    """

    theta: np.ndarray
    objective: float
    gradient: np.ndarray
    n_evals: int
    converged: bool
    message: str
    method: str
    trace: tuple[tuple[tuple[float, ...], float], ...] = field(default=())
    factor: tuple[np.ndarray, np.ndarray] | None = None
    phases: tuple[tuple[str, int], ...] = field(default=())
    psi: np.ndarray | None = None


def projected_gradient(theta: np.ndarray, grad: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Zero the gradient components that push an active bound outward.

    Examples
    --------
    >>> projected_gradient(np.array([0.0, 1.0]), np.array([2.0, 3.0]), np.array([0.0, 0.0]))
    array([0., 3.])
    """
    g = np.array(grad, dtype=float)
    g[(theta <= lower) & (g > 0)] = 0.0
    return g


def theta_scale(design: ModelDesign) -> np.ndarray:
    """Factors ``1 / s_j`` with ``theta = phi * theta_scale(design)`` (see module docstring).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> theta_scale(d).round(4).tolist()
    [1.0, 0.1873, 0.1873]
    """
    return DesignCovariance.of(design).theta_scale()


def _check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    if options is not None and not isinstance(options, dict):
        raise MethodError(f"optimizer options must be a dict, got {type(options).__name__}")
    opts: dict[str, Any] = dict(DEFAULT_OPTIONS)
    for key, val in (options or {}).items():
        if key not in DEFAULT_OPTIONS:
            raise MethodError(f"unknown optimizer option {key!r}; known: "
                              f"{', '.join(DEFAULT_OPTIONS)}")
        if (not isinstance(val, int | float) or isinstance(val, bool) or not math.isfinite(val)
                or not val > 0):
            raise MethodError(f"optimizer option '{key}' must be a positive number, got {val!r}")
        if key == "maxiter" and val != int(val):
            raise MethodError(f"optimizer option 'maxiter' must be a whole number, got {val!r}")
        opts[key] = val
    return opts


def _check_start(start: object, lower: np.ndarray) -> np.ndarray | None:
    if start is None:
        return None
    try:
        x = np.asarray(start, dtype=np.float64)
    except (TypeError, ValueError):
        raise MethodError(f"start must be {len(lower)} numbers (theta), got {start!r}") from None
    if x.shape != lower.shape:
        raise MethodError(f"start must have length {len(lower)} (theta), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise MethodError(f"start must be finite, got {x.tolist()}")
    return np.maximum(x, lower)


def optimize_theta(objective: ProfiledObjective, reml: bool, start: np.ndarray | None = None,
                   options: dict[str, Any] | None = None) -> OptimizerResult:
    """Minimize the profiled REML criterion or ML deviance over theta.

    Parameters
    ----------
    objective : ProfiledObjective
        From :func:`hierlm.objective.compile_objective`.
    reml : bool
        REML criterion (True) or ML deviance (False).
    start : ndarray, optional
        Starting theta (identity templates for unit-scale columns by default).
    options : dict, optional
        ``maxiter`` (a positive whole number), ``ftol`` and ``gtol`` (L-BFGS-B's
        stopping rules) and ``check_tol`` (the largest scaled projected gradient
        accepted as converged).

    Returns
    -------
    OptimizerResult

    Raises
    ------
    MethodError
        On an unknown or invalid option, or a ``start`` of the wrong length.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective import compile_objective
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> r = optimize_theta(compile_objective(d), reml=False)
    >>> round(r.objective, 4), r.converged
    (1751.9393, True)
    """
    opts = _check_options(options)
    design = objective.design
    lower = theta_lower(design)
    x_start = _check_start(start, lower)
    scale = theta_scale(design)
    units = np.ones(len(scale))
    if x_start is None:
        x_start, units = default_start(objective, scale)
    x0 = x_start / scale
    diag = np.flatnonzero(lower == 0.0)
    trace: list[tuple[tuple[float, ...], float]] = []
    best: dict[str, Any] = {"f": np.inf, "x": x0.copy()}

    def fun(phi: np.ndarray) -> tuple[float, np.ndarray]:
        theta = phi * scale
        f, g, L1, L_R = objective.evaluate(theta, reml)
        trace.append((tuple(theta.tolist()), float(f)))  # Python floats, as float(v)
        if not (np.isfinite(f) and np.all(np.isfinite(g))):
            return 1e300, np.zeros_like(phi)
        if f < best["f"]:
            best.update(f=f, x=phi.copy(), g=g.copy(), factor=(L1.copy(), L_R.copy()))
        return f, g * scale

    def check() -> tuple[np.ndarray, float, np.ndarray, bool]:
        phi = best["x"]
        theta = phi * scale
        if "g" in best:
            f, g = best["f"], best["g"]  # already evaluated there
        else:
            f, g = objective.value_and_grad(theta, reml)
        crit = np.abs(g * scale) * np.maximum(1.0, np.abs(phi))
        ok = bool(np.isfinite(f) and np.max(crit, initial=0.0) <= float(opts["check_tol"]))
        if not ok and np.isfinite(f):
            # Large data make the criterion steep: judge the gradient against the
            # curvature, as lme4 does, before restarting.
            sg = scaled_gradient(lambda th: fun(th / scale)[1] / scale, theta, g,
                                 np.full_like(lower, -np.inf))
            ok = sg is not None and sg <= LME4_TOL
        return theta, float(f), g, ok

    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    lbfgs: dict[str, Any] = {"maxiter": int(opts["maxiter"]), "ftol": float(opts["ftol"]),
                             "gtol": float(opts["gtol"]), "maxls": 50}

    def fun_units(u: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = fun(u * units)
        return f, g * units

    def run_lbfgs(x_init: np.ndarray, ftol: float | None = None) -> str:
        # minimize()'s loop, bitwise; in the units of default_start (phi itself unless
        # the start is a moment estimate)
        return minimize_lbfgsb(fun_units, x_init / units,
                               **(lbfgs if ftol is None else {**lbfgs, "ftol": ftol}))

    def descend(x_init: np.ndarray, ftol: float | None = None
                ) -> tuple[str, str, tuple[np.ndarray, float, np.ndarray, bool]]:
        method, message = "L-BFGS-B", run_lbfgs(x_init, ftol)
        state = check()
        if not state[3]:
            method, message = "L-BFGS-B+restart", f"{message}; {run_lbfgs(best['x'])}"
            state = check()
        if not state[3]:
            # Powell on the canonical half-space (diagonals >= 0, where it can be
            # bounded); T T' is unchanged by the sign flips.
            pres = scipy.optimize.minimize(lambda x: fun(x)[0],
                                           canonical_signs(design, best["x"])[0],
                                           method="Powell", bounds=bounds,
                                           options={"xtol": 1e-10, "ftol": 1e-14})
            method = "L-BFGS-B+Powell"
            message = f"{message}; {pres.message}; {run_lbfgs(best['x'])}"
            state = check()
        return method, message, state

    def polish(method: str, message: str, state: tuple) -> tuple[str, str, tuple]:
        """Escape saddles at zero template diagonals until none is left (or give up)."""
        for _ in range(MAX_ESCAPES):
            escaped = escape_boundary(lambda x: fun(x)[0], best["x"], float(best["f"]), diag)
            if escaped is None:
                return method, message, state
            m2, msg2, state = descend(escaped)
            method, message = f"{method}+escape+{m2}", f"{message}; escaped a saddle; {msg2}"
        lower_point = escape_boundary(lambda x: fun(x)[0], best["x"], float(best["f"]), diag)
        if lower_point is not None:
            state = (*state[:3], False)
            names = parameter_names(design)
            moved = [names[j] for j in diag if lower_point[j] != best["x"][j]]
            message += (f"; the criterion still decreases from {', '.join(moved)} = 0 into "
                        f"the interior (second-order check failed)")
        return method, message, state

    method, message, state = polish(*descend(x0))
    phases = [("descent", len(trace))]
    if state[3] and design.nobs <= FACE_CHECK_MAX_NOBS:
        # Small samples can have a second, singular local optimum besides an interior
        # one: descend once from each term's rank-reduced covariance and keep the lower.
        face_ftol = max(FACE_FTOL, float(opts["ftol"]))
        for face in face_starts(design, best["x"] * scale):
            f_before = best["f"]
            # to the looser FACE_FTOL first: the end point counts only if it is lower
            m2, msg2, st2 = polish(*descend(face / scale, face_ftol))
            if best["f"] < f_before:
                # it is: on from there to full precision
                m3, msg3, st2 = polish(*descend(best["x"]))
                m2, msg2 = f"{m2}+{m3}", f"{msg2}; {msg3}"
                method, message, state = f"{method}+face+{m2}", f"{message}; {msg2}", st2
            phases.append(("face", len(trace) - sum(n for _, n in phases)))
    theta, f, g, converged = state
    near = diag[(np.abs(best["x"][diag]) < ZERO_DIAG) & (best["x"][diag] != 0.0)]
    if near.size:
        # Report an exact zero where the criterion does not tell it from 1e-16 (lme4's
        # bound gives exact zeros too).
        snapped = best["x"].copy()
        snapped[near] = 0.0
        f0, g0 = fun(snapped)
        if f0 <= f + ESCAPE_TOL * max(1.0, abs(f)):
            if f0 >= f:  # fun() kept the factor of the unsnapped point
                best.pop("factor", None)
            best.update(x=snapped, f=f0, g=g0 / scale)
            f, g = f0, g0 / scale
        last, n_last = phases[-1]
        phases[-1] = (last, n_last + len(trace) - sum(n for _, n in phases))
    phi, flipped = canonical_signs(design, best["x"])
    theta = phi * scale
    g = np.where(flipped, -g, g)
    reuse = np.array_equal(theta, best["x"] * scale) and f == best["f"]
    return OptimizerResult(theta=theta, objective=f, gradient=g, n_evals=len(trace),
                           converged=converged, message=message, method=method,
                           trace=tuple(trace), factor=best.get("factor") if reuse else None,
                           phases=tuple(phases))
