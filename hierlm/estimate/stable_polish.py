"""The optimum of a nearly exact fit, polished on the residual-based criterion.

The optimizer's criterion is read off the Cholesky factor of the Gram matrix, whose
last pivot is ``r^2 = |y - X beta - Z b|^2 + |u|^2`` computed as a difference of numbers
of the size of ``A_yy = |y - X a|^2``: its rounding error is about ``eps A_yy``, so the
criterion's is about

    noise = nr * eps * A_yy / r^2        (nr = n - REML p),

the criterion units by which the optimizer can misjudge two points.  For ordinary fits
this is below 1e-12 (the 24 reference fits of ``python -m benchmarks.peers``: 6e-15 to
4e-13).  Where the residual SD is tiny against the signal it is not: intercepts of SD 1
with residual SD 1e-6 (``tests/test_hard_designs.py``) give 0.03, and the criterion seen
by the optimizer scatters by about 0.025 around the true one near the optimum, so where
the search stops depends on rounding (three evaluations of the same criterion, sharing
only the Gram blocks, stopped 5e-7, 1e-6 and 1.6e-5 relative above the optimum).

Where ``noise`` exceeds :data:`NOISE_TOL`, the fit's theta is polished by Powell's
method (derivative-free: the criterion's gradient has the same error) on the criterion
the fit reports, which is computed from residuals (:mod:`hierlm.estimate.stable_pls`;
errors of order ``eps kappa``, not ``eps kappa^2``), from the optimizer's theta, in
units of ``max(|theta_i|, 1)``, within the covariance parameters' bounds; the polished
point is kept where its criterion is lower.  Tested in
``tests/estimate/test_stable_polish.py`` against the optimum of a dense Householder QR
criterion (:func:`tests.dense.profiled_criterion_qr`), whatever evaluation drove the
search.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import scipy.optimize

from hierlm.covariance.layout import theta_lower
from hierlm.estimate.extract import Estimates
from hierlm.estimate.optimize import OptimizerResult
from hierlm.objective.profiled import ProfiledObjective

__all__ = ["NOISE_TOL", "gram_noise", "polish"]

#: Criterion units of rounding noise (:func:`gram_noise`) above which theta is polished.
NOISE_TOL = 1e-6


def gram_noise(objective: ProfiledObjective, L_R: np.ndarray, reml: bool) -> float:
    """The optimizer's criterion's rounding error near theta (module docstring), from
    the factor ``L_R`` there.

    Examples
    --------
    >>> import hierlm
    >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> r = m.fit()
    >>> L_R = m.objective.evaluate(np.asarray(r.theta), True)[3]
    >>> gram_noise(m.objective, L_R, True) < 1e-12
    True
    """
    g = objective.gram
    r2 = float(L_R[-1, -1]) ** 2
    nr = g.n - (g.p if reml else 0)
    if not r2 > 0.0:
        return float("inf")
    return float(nr * np.finfo(float).eps * float(g.A_RR[-1, -1]) / r2)


def polish(objective: ProfiledObjective, opt: OptimizerResult, reml: bool,
           criterion: float, estimates: Callable[[np.ndarray], tuple[Estimates, float]]
           ) -> tuple[OptimizerResult, tuple[Estimates, float]] | None:
    """The optimizer's result moved to the lowest residual-based criterion near its
    theta, with the estimates there; None where nothing is lower (or nothing to do).

    ``criterion`` is the residual-based criterion at ``opt.theta``; ``estimates(theta)``
    returns the estimates and that criterion at ``theta``.
    """
    theta0 = np.asarray(opt.theta, dtype=float)
    lower = theta_lower(objective.design)
    scale = np.maximum(np.abs(theta0), 1.0)

    def f(u: np.ndarray) -> float:
        theta = u * scale
        if not np.all(np.isfinite(theta)) or np.any(theta < lower):
            return float("inf")
        try:
            value = estimates(theta)[1]
        except (ArithmeticError, ValueError, np.linalg.LinAlgError):
            return float("inf")
        return value if np.isfinite(value) else float("inf")

    bounds = [(lo / s if np.isfinite(lo) else None, None) for lo, s in zip(lower, scale,
                                                                            strict=True)]
    res = scipy.optimize.minimize(f, theta0 / scale, method="Powell", bounds=bounds,
                                  options={"xtol": 1e-10, "ftol": 1e-15,
                                           "maxfev": 200 * len(theta0)})
    theta = np.asarray(res.x, dtype=float) * scale
    if not float(res.fun) < criterion:
        return None
    est = estimates(theta)
    out = dataclasses.replace(
        opt, theta=theta, objective=float(est[1]), factor=None,
        method=f"{opt.method}+stable-polish",
        message=f"{opt.message}; polished on the residual-based criterion (Powell, "
                f"{int(res.nfev)} evaluations): {float(criterion):.10g} -> "
                f"{float(est[1]):.10g}")
    return out, est
