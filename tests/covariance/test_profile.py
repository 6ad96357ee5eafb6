"""Profile intervals of a structure's own parameters against a dense brute force.

The brute force profiles the dense ML deviance (beta at its GLS value) over the other
parameters with Nelder-Mead, and finds where ``zeta = +/-1.96`` by Brent's method.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

from tests.covariance.brute import DenseFit, unprofiled
from tests.covariance.test_fit_dense import fitted


def _profile_endpoints(structure: str, which: str):
    res = fitted(structure, False)
    fit = DenseFit(res.model.design, structure, False)
    sd, rho = res.covariance_parameters.to_numpy()[[0, -1]]
    d_hat = unprofiled(fit, np.array([np.log(sd / res.sigma), rho]), res.sigma)[0]

    def dev(sd, rho, sigma):
        if not (sd > 0 and sigma > 0 and -1 < rho < 1):
            return 1e300
        return unprofiled(fit, np.array([np.log(sd / sigma), rho]), sigma)[0]

    def profiled(c):
        if which == "rho":
            f = lambda x: dev(np.exp(x[0]), c, np.exp(x[1]))  # noqa: E731
            x0 = np.log([sd, res.sigma])
        else:
            f = lambda x: dev(c, np.tanh(x[0]), np.exp(x[1]))  # noqa: E731
            x0 = np.array([np.arctanh(rho), np.log(res.sigma)])
        out = scipy.optimize.minimize(f, x0, method="Nelder-Mead",
                                      options={"xatol": 1e-10, "fatol": 1e-12})
        return out.fun

    est = rho if which == "rho" else sd
    z = 1.959963984540054

    def zeta(c):
        return np.sign(c - est) * np.sqrt(max(profiled(c) - d_hat, 0.0))

    return res, est, zeta, z


@pytest.mark.parametrize("structure", ["ar1", "homcs"])
@pytest.mark.parametrize("which", ["rho", "sd"])
def test_profile_interval_matches_dense(structure, which):
    res, est, zeta, z = _profile_endpoints(structure, which)
    ci = res.confint()
    name = f"{which}|subject"
    lower, upper = ci.loc[name, "lower"], ci.loc[name, "upper"]
    for mine, target in ((lower, -z), (upper, z)):
        a, b = sorted([est + 0.5 * (mine - est), est + 1.5 * (mine - est)])
        if which == "rho":
            b = min(b, 0.999)
        ref = scipy.optimize.brentq(lambda c, t=target: zeta(c) - t, a, b, xtol=1e-8)
        assert mine == pytest.approx(ref, abs=2e-3 * max(1.0, abs(ref)))


@pytest.mark.slow
def test_profile_names_the_structure_parameters():
    ci = fitted("toep", False).confint()
    assert ci.index[:8].tolist() == [f"sd_timet{j}|subject" for j in range(1, 5)] + [
        "rho_lag1|subject", "rho_lag2|subject", "rho_lag3|subject", "sigma"]
    assert np.all(ci["lower"] <= ci["upper"])
