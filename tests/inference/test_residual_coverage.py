"""Coverage of 95% intervals under AR(1) errors with known truth (slow).

Design: 30 subjects x 6 visits, ``y = 1 + 0.5 x + b_g + e``, ``x ~ N(0, 1)`` drawn once,
``b_g ~ N(0, 0.7^2)``, ``e`` AR(1) within each subject with ``phi = 0.5`` and SD 1;
model ``y ~ x + (1 | g)``, ``residual="ar1(visit | g)"`` by REML.  For each of ``R``
datasets: Satterthwaite 95% t intervals for the intercept and slope and the 95%
profile interval of phi.  A rate must lie within 3 Monte Carlo SEs of 0.95
(``R = 150``: SE 0.0178, 0.897-1.0).

Result of the last run (seed 20261205, ``python -m pytest -m slow -s
tests/inference/test_residual_coverage.py``, 150 s on 2 shared cores): intercept 0.927,
slope 0.933, phi 0.960.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import hierlm
from hierlm.inference.residual_profile import residual_profile_confint

R = 150
TRUTH = {"(Intercept)": 1.0, "x": 0.5, "rho": 0.5}


def _data(rng: np.random.Generator, x: np.ndarray) -> pd.DataFrame:
    n_g, k = 30, 6
    e = np.empty((n_g, k))
    z = rng.normal(size=(n_g, k))
    e[:, 0] = z[:, 0]
    for j in range(1, k):
        e[:, j] = 0.5 * e[:, j - 1] + np.sqrt(1 - 0.25) * z[:, j]
    g = np.repeat(np.arange(n_g), k)
    y = 1 + 0.5 * x + rng.normal(0, 0.7, n_g)[g] + e.ravel()
    return pd.DataFrame({"y": y, "x": x, "g": g, "visit": np.tile(np.arange(k), n_g)})


@pytest.mark.slow
def test_intervals_for_beta_and_phi_cover() -> None:
    rng = np.random.default_rng(20261205)
    x = rng.normal(size=180)
    hits = {k: 0 for k in TRUTH}
    for _ in range(R):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = hierlm.fit("y ~ x + (1 | g)", _data(rng, x), residual="ar1(visit | g)")
            table = res.coef_table()
            ci = residual_profile_confint(res)  # phi on the REML criterion
        for name in ("(Intercept)", "x"):
            half = scipy.stats.t.ppf(0.975, table.loc[name, "df"]) * table.loc[name, "se"]
            hits[name] += abs(table.loc[name, "estimate"] - TRUTH[name]) <= half
        hits["rho"] += ci.loc["rho", "lower"] <= TRUTH["rho"] <= ci.loc["rho", "upper"]
    rates = {k: v / R for k, v in hits.items()}
    print("coverage", rates)
    se = np.sqrt(0.95 * 0.05 / R)
    assert all(abs(r - 0.95) <= 3 * se for r in rates.values()), rates
