"""Profile-likelihood intervals of the residual parameters (phi, rho, log SD ratios).

For parameter ``j`` of a fit with ``residual=`` / ``sigma=`` the profile is
``h(v) = min crit`` over theta, beta, sigma and the other residual parameters with
parameter ``j`` held at ``v``, on the fit's own criterion (REML or ML).  The interval is
``{v : h(v) - crit-hat <= chi2_1(level)}``, found on each side by bracketing and
Brent's root finder in the unconstrained parameter (:mod:`hierlm.estimate.residual_fit`)
and mapped back; a side whose profile never rises that far ends at the parameter's
bound (phi = +-1, a CS correlation's limits).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.optimize
import scipy.stats

from hierlm.errors import MethodError
from hierlm.estimate.residual_fit import (
    Z_MAX,
    ResidualProfile,
    to_natural,
    to_unconstrained,
)
from hierlm.estimate.theta_optimizer import ParameterSpace, SearchOptions, minimize_theta

#: First step away from the estimate, in the unconstrained parameter.
STEP = 0.25
#: The inner minimization over the other residual parameters: plain L-BFGS-B with
#: scipy's defaults but for its stops.
PROFILE_SEARCH = SearchOptions(maxiter=15000, ftol=1e-12, gtol=1e-6, maxls=20,
                               check_tol=None)


def _profile_fn(profile: ResidualProfile, z_hat: np.ndarray, j: int) -> Any:
    others = [i for i in range(len(z_hat)) if i != j]

    def h(v: float) -> float:
        z = z_hat.copy()
        z[j] = v
        if not others:
            return profile(z)

        def fg(w: np.ndarray) -> tuple[float, np.ndarray]:
            z[others] = w
            f, g = profile.value_and_grad(z)
            return f, g[others]

        res = minimize_theta(fg, ParameterSpace.box([(None, None)] * len(others)),
                             z_hat[others], PROFILE_SEARCH)
        return float(res.criterion)
    return h


def _natural(profile: ResidualProfile, z_hat: np.ndarray, j: int, v: float) -> float:
    z = z_hat.copy()
    z[j] = v
    rho, delta = to_natural(profile.rd, z)
    values = ([rho] if profile.rd.n_corr else []) + list(delta)
    return float(values[j])


def residual_profile_confint(res: Any, level: float = 0.95) -> pd.DataFrame:
    """Profile intervals ``lower, upper`` of ``res.residual_parameters``.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.load_sleepstudy()
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", d, residual="ar1(Days | Subject)")
    >>> ci = residual_profile_confint(res)
    >>> bool(ci.loc["rho", "lower"] < res.residual_parameters["rho"] < ci.loc["rho", "upper"])
    True
    """
    model = getattr(res, "model", None)
    rd = None if model is None else getattr(model, "residual", None)
    if model is None or rd is None:
        raise MethodError("profile intervals of the residual parameters need the fitted "
                          "model (FitResult.model), which a result read from disk lacks")
    reml = res.is_reml
    profile = ResidualProfile(model.design, rd, reml)
    par = res.residual_parameters.to_numpy(dtype=float)
    z_hat = to_unconstrained(rd, float(par[0]) if rd.n_corr else 0.0, par[rd.n_corr:])
    profile.theta = np.asarray(res.theta, dtype=float)
    f_hat = min(profile(z_hat), float(res.objective))
    cut = float(scipy.stats.chi2.ppf(level, 1))
    rows = []
    for j in range(len(z_hat)):
        h = _profile_fn(profile, z_hat, j)
        ends = []
        for sign in (-1.0, 1.0):
            limit = sign * (Z_MAX - 1.0) if j < rd.n_corr else sign * 50.0
            inside, step, end = z_hat[j], STEP, None
            while True:
                v = z_hat[j] + sign * step
                if sign * (v - limit) >= 0:
                    v = limit
                profile.theta = np.asarray(res.theta, dtype=float)
                if h(v) - f_hat > cut:
                    end = scipy.optimize.brentq(lambda x, h=h: h(x) - f_hat - cut,
                                                min(inside, v), max(inside, v), xtol=1e-6)
                    break
                if v == limit:
                    break
                inside, step = v, 2 * step
            if end is None:
                bound = to_natural(rd, np.full(len(z_hat), sign * np.inf))[0] if (
                    j < rd.n_corr) else sign * np.inf
                ends.append(float(bound))
            else:
                ends.append(_natural(profile, z_hat, j, end))
        rows.append(ends)
    return pd.DataFrame(rows, index=res.residual_parameters.index, columns=["lower", "upper"])
