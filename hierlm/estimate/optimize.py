"""Stage 3 (frequentist): minimize lme4's profiled criterion over theta.

L-BFGS-B with the exact autodiff gradient and lme4's bounds (template diagonals
>= 0), run on a rescaled parameter ``phi``: row ``j`` of each term's template is
multiplied by the root mean square ``s_j`` of the term's column ``j``, so that
``theta = phi / s``.  Rescaling a predictor by any factor then leaves the path
of the optimizer unchanged (badly scaled predictors, ``x ~ 1e5`` or ``1e-5``, fit
like ``x ~ 1``); the start is the identity template in ``phi`` (lme4's identity
start for unit-scale columns).

Convergence is judged on the projected gradient in ``phi``, each component
multiplied by ``max(1, |phi_j|)`` (a relative criterion for large parameters, as
in near-perfect fits where theta grows like ``1 / sigma``); components at an
active lower bound that point outward are zeroed.  A point that fails this test
passes if lme4's own check does (the gradient scaled by the Cholesky factor of a
finite-difference Hessian of the exact gradient, below 2e-3; see
:mod:`hierlm.estimate.convergence`): with large data the criterion is steep and a
gradient of 0.1 can be a gain of 1e-7.  If L-BFGS-B stops short, it
restarts once from its best point; if that fails too, bounded Powell (derivative
free) restarts from the best point and L-BFGS-B polishes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.optimize

from hierlm.design.terms import ModelDesign
from hierlm.errors import MethodError
from hierlm.estimate.convergence import LME4_TOL, scaled_gradient
from hierlm.objective.profiled import ProfiledObjective
from hierlm.objective.theta import theta_lower, theta_start, tril_colmajor

# ftol, gtol: L-BFGS-B's stopping rules; check_tol: the largest scaled projected-gradient
# component still called converged (lme4 flags scaled gradients above 2e-3).
DEFAULT_OPTIONS: dict[str, float | int] = {
    "maxiter": 1000, "ftol": 1e-12, "gtol": 1e-6, "check_tol": 1e-3,
}


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
    factor : tuple of ndarray, optional
        ``(L1, L_R)`` at ``theta`` when the optimizer evaluated it there (saves
        :func:`hierlm.estimate.frequentist.fit_profiled` one evaluation).
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
    parts = []
    for term in design.terms:
        rms = np.sqrt(np.mean(np.square(term.X), axis=0))
        rms = np.where(np.isfinite(rms) & (rms > 0), rms, 1.0)
        rows, _ = tril_colmajor(term.p)
        parts.append(1.0 / rms[rows])
    return np.concatenate(parts) if parts else np.zeros(0)


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
    if x_start is None:
        x_start = theta_start(design) * scale
    x0 = x_start / scale
    trace: list[tuple[tuple[float, ...], float]] = []
    best: dict[str, Any] = {"f": np.inf, "x": x0.copy()}

    def fun(phi: np.ndarray) -> tuple[float, np.ndarray]:
        theta = phi * scale
        f, g, L1, L_R = objective.evaluate(theta, reml)
        trace.append((tuple(float(v) for v in theta), float(f)))
        if not (np.isfinite(f) and np.all(np.isfinite(g))):
            return 1e300, np.zeros_like(phi)
        if f < best["f"]:
            best.update(f=f, x=phi.copy(), g=g.copy(), factor=(L1.copy(), L_R.copy()))
        return f, g * scale

    def check() -> tuple[np.ndarray, float, np.ndarray, bool]:
        phi = np.maximum(best["x"], lower)
        theta = phi * scale
        if np.array_equal(phi, best["x"]) and "g" in best:
            f, g = best["f"], best["g"]  # already evaluated there
        else:
            f, g = objective.value_and_grad(theta, reml)
        pg = projected_gradient(theta, g, lower)
        crit = np.abs(pg * scale) * np.maximum(1.0, np.abs(phi))
        ok = bool(np.isfinite(f) and np.max(crit, initial=0.0) <= float(opts["check_tol"]))
        if not ok and np.isfinite(f):
            # Large data make the criterion steep: judge the gradient against the
            # curvature, as lme4 does, before restarting.
            sg = scaled_gradient(lambda th: fun(th / scale)[1] / scale, theta, pg, lower)
            ok = sg is not None and sg <= LME4_TOL
        return theta, float(f), pg, ok

    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    lbfgs = {"maxiter": int(opts["maxiter"]), "ftol": float(opts["ftol"]),
             "gtol": float(opts["gtol"]), "maxls": 50}

    def run_lbfgs() -> str:
        res = scipy.optimize.minimize(fun, np.maximum(best["x"], lower), jac=True,
                                      method="L-BFGS-B", bounds=bounds, options=lbfgs)
        return str(res.message)

    method, message = "L-BFGS-B", run_lbfgs()
    theta, f, pg, converged = check()
    if not converged:
        method, message = "L-BFGS-B+restart", f"{message}; {run_lbfgs()}"
        theta, f, pg, converged = check()
    if not converged:
        pres = scipy.optimize.minimize(lambda x: fun(x)[0], np.maximum(best["x"], lower),
                                       method="Powell", bounds=bounds,
                                       options={"xtol": 1e-10, "ftol": 1e-14})
        method, message = "L-BFGS-B+Powell", f"{message}; {pres.message}; {run_lbfgs()}"
        theta, f, pg, converged = check()
    reuse = np.array_equal(theta, np.maximum(best["x"], lower) * scale) and f == best["f"]
    return OptimizerResult(theta=theta, objective=f, gradient=pg, n_evals=len(trace),
                           converged=converged, message=message, method=method,
                           trace=tuple(trace), factor=best.get("factor") if reuse else None)
