"""Stage 3 (frequentist): minimize lme4's profiled criterion over theta.

L-BFGS-B with the exact autodiff gradient and lme4's bounds (template diagonals
>= 0).  Convergence is judged on the projected gradient: components at an active
lower bound that point outward are zeroed.  If L-BFGS-B stops short, bounded
Powell (derivative free) restarts from the best point and L-BFGS-B polishes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.optimize

from hierlm.errors import MethodError
from hierlm.objective.profiled import ProfiledObjective
from hierlm.objective.theta import theta_lower, theta_start

# ftol, gtol: L-BFGS-B's stopping rules; check_tol: the largest projected-gradient
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
        Projected gradient at ``theta``.
    n_evals : int
        Objective (with gradient) evaluations.
    converged : bool
        ``max |projected gradient| <= gtol`` (scaled by ``1 + |objective|`` / 1e3).
    message : str
        The optimizer's own account.
    trace : tuple of (theta, objective)
        Every evaluation, in order.
    """

    theta: np.ndarray
    objective: float
    gradient: np.ndarray
    n_evals: int
    converged: bool
    message: str
    method: str
    trace: tuple[tuple[tuple[float, ...], float], ...] = field(default=())


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


def _check_options(options: dict[str, Any] | None) -> dict[str, Any]:
    opts: dict[str, Any] = dict(DEFAULT_OPTIONS)
    for key, val in (options or {}).items():
        if key not in DEFAULT_OPTIONS:
            raise MethodError(f"unknown optimizer option '{key}'; known: "
                              f"{', '.join(DEFAULT_OPTIONS)}")
        if not isinstance(val, int | float) or isinstance(val, bool) or not val > 0:
            raise MethodError(f"optimizer option '{key}' must be a positive number, got {val!r}")
        opts[key] = val
    return opts


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
        Starting theta (lme4's identity templates by default).
    options : dict, optional
        ``maxiter``, ``ftol`` and ``gtol`` (L-BFGS-B's stopping rules) and ``check_tol``
        (the largest projected gradient accepted as converged).

    Returns
    -------
    OptimizerResult

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
    x0 = theta_start(design) if start is None else np.maximum(np.asarray(start, float), lower)
    trace: list[tuple[tuple[float, ...], float]] = []
    best: dict[str, Any] = {"f": np.inf, "x": x0.copy()}

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = objective.value_and_grad(x, reml)
        trace.append((tuple(float(v) for v in x), float(f)))
        if not (np.isfinite(f) and np.all(np.isfinite(g))):
            return 1e300, np.zeros_like(x)
        if f < best["f"]:
            best["f"], best["x"] = f, x.copy()
        return f, g

    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    res = scipy.optimize.minimize(
        fun, x0, jac=True, method="L-BFGS-B", bounds=bounds,
        options={"maxiter": int(opts["maxiter"]), "ftol": float(opts["ftol"]),
                 "gtol": float(opts["gtol"]), "maxls": 50},
    )
    method, message = "L-BFGS-B", str(res.message)
    theta = np.maximum(best["x"], lower)
    f, g = objective.value_and_grad(theta, reml)
    pg = projected_gradient(theta, g, lower)
    tol = float(opts["check_tol"])
    if not np.max(np.abs(pg), initial=0.0) <= tol:
        pres = scipy.optimize.minimize(lambda x: fun(x)[0], theta, method="Powell",
                                       bounds=bounds, options={"xtol": 1e-10, "ftol": 1e-14})
        res = scipy.optimize.minimize(
            fun, np.maximum(best["x"], lower), jac=True, method="L-BFGS-B", bounds=bounds,
            options={"maxiter": int(opts["maxiter"]), "ftol": float(opts["ftol"]),
                     "gtol": float(opts["gtol"])})
        method, message = "L-BFGS-B+Powell", f"{pres.message}; {res.message}"
        theta = np.maximum(best["x"], lower)
        f, g = objective.value_and_grad(theta, reml)
        pg = projected_gradient(theta, g, lower)
    converged = bool(np.isfinite(f) and np.max(np.abs(pg), initial=0.0) <= tol)
    return OptimizerResult(theta=theta, objective=float(f), gradient=pg, n_evals=len(trace),
                           converged=converged, message=message, method=method,
                           trace=tuple(trace))
