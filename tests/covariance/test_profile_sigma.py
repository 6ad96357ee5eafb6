"""The profile interval of sigma when its Wald lower endpoint is negative.

Beside an ``ar1`` term the residual SD is poorly determined (here its Wald interval
reaches below 0); the profile's search must not evaluate the deviance at sigma = 0, and
here the profile never reaches the cutoff below the estimate, so the lower endpoint is
the bound 0.  Both endpoints are checked against a dense brute-force profile (the ML deviance of
:mod:`tests.covariance.brute`, minimized over the SD and rho by Nelder-Mead).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize

import hierlm
from hierlm.inference.profile import profiler
from tests.covariance.brute import DenseFit, unprofiled


def _data() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    lag = np.abs(np.subtract.outer(np.arange(6), np.arange(6)))
    b = rng.multivariate_normal(np.zeros(6), 9 * 0.7**lag, size=40)
    rows = [(f"p{i:02d}", f"w{t}", t, round(20 - 0.5 * t + b[i, t] + rng.normal(0, 1.0), 2))
            for i in range(40) for t in range(6)]
    return pd.DataFrame(rows, columns=["patient", "week", "t", "score"])


@pytest.mark.slow
def test_sigma_interval_when_the_wald_step_crosses_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit("score ~ t + ar1(0 + week | patient)", _data(), method="ML")
        ci = res.confint("profile")
    sd, rho = res.covariance_parameters.to_numpy()
    pr = profiler(res)  # the first step of the search (the Wald endpoint) is below 0
    w = pr.k - 1
    assert pr.names[w] == "sigma" and pr.estimates[w] - 1.96 * pr.scale[w] < 0
    fit = DenseFit(res.model.design, "ar1", False)
    d_hat = unprofiled(fit, np.array([np.log(sd / res.sigma), rho]), res.sigma)[0]

    def zeta(sigma):
        def f(x):
            if abs(np.tanh(x[1])) > 0.999:
                return 1e300
            return unprofiled(fit, np.array([x[0] - np.log(sigma), np.tanh(x[1])]), sigma)[0]
        out = scipy.optimize.minimize(f, [np.log(sd), np.arctanh(rho)], method="Nelder-Mead",
                                      options={"xatol": 1e-10, "fatol": 1e-12})
        return np.sign(sigma - res.sigma) * np.sqrt(max(out.fun - d_hat, 0.0))

    lower, upper = ci.loc["sigma", ["lower", "upper"]]
    # the profile of sigma never reaches -1.96 below the estimate: the bound 0 is the
    # lower endpoint (the AR(1) term takes up the residual variance)
    assert zeta(1e-3) > -1.959963984540054 + 0.5
    assert lower == 0.0
    ref = scipy.optimize.brentq(lambda c: zeta(c) - 1.959963984540054, res.sigma,
                                5 * res.sigma, xtol=1e-8)
    assert upper == pytest.approx(ref, abs=2e-3)
