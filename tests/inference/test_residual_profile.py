"""Profile intervals of phi: at each end the dense criterion, minimized over the other
parameters by a generic optimizer, is chi2_1(0.95) above its minimum."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.stats

import hierlm
from hierlm.inference.residual_profile import residual_profile_confint
from tests.residual_data import residual_data


def _dense_profile(res: hierlm.FitResult, phi: float, reml: bool) -> float:
    """min over theta (one random intercept) of lme4's profiled criterion, V dense."""
    des = res.model.design
    rd = res.model.residual
    n, p = des.nobs, des.p
    Z = np.zeros((n, des.terms[0].n_levels))
    Z[np.arange(n), des.terms[0].codes] = 1.0
    same = rd.group[:, None] == rd.group[None, :]
    C = np.where(same, phi ** np.abs(rd.time[:, None] - rd.time[None, :]), 0.0)
    X, y = des.X, des.y

    def crit(theta: float) -> float:
        V = theta**2 * Z @ Z.T + C
        Vi = np.linalg.inv(V)
        A = X.T @ Vi @ X
        r = y - X @ np.linalg.solve(A, X.T @ Vi @ y)
        r2 = r @ Vi @ r
        nr = n - p if reml else n
        out = np.linalg.slogdet(V)[1] + nr * (1 + np.log(2 * np.pi * r2 / nr))
        return float(out + (np.linalg.slogdet(A)[1] if reml else 0.0))

    return float(scipy.optimize.minimize_scalar(crit, bounds=(0.0, 5.0), method="bounded",
                                                options={"xatol": 1e-9}).fun)


@pytest.mark.parametrize("method", ["ml", "reml"])
def test_phi_interval_ends_are_chi2_above_the_minimum(method: str) -> None:
    d = residual_data("ovary")
    res = hierlm.fit("follicles ~ s + c + (1 | Mare)", d, method, residual="ar1(visit | Mare)")
    ci = residual_profile_confint(res)  # on the fit's own criterion
    assert list(ci.index) == ["rho"]
    lo, hi = ci.loc["rho"]
    if method == "ml":  # the full table's row: the same profile, other code
        full = res.confint("profile").loc["rho"]
        np.testing.assert_allclose(full.to_numpy(), [lo, hi], rtol=1e-5)
    phi = res.residual_parameters["rho"]
    assert lo < phi < hi
    reml = method == "reml"
    best = _dense_profile(res, phi, reml)
    assert best == pytest.approx(res.objective, rel=1e-8)
    cut = scipy.stats.chi2.ppf(0.95, 1)
    for end in (lo, hi):
        assert _dense_profile(res, end, reml) - best == pytest.approx(cut, abs=2e-3)
