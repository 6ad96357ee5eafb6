"""Coverage of 95% intervals on a simulated design with known truth (slow).

Design: 20 groups x 6 observations, ``y = 1 + 0.5 x + b_g + e`` with ``x ~ N(0, 1)``
drawn once (the design is fixed),
``b_g ~ N(0, 0.8^2)``, ``e ~ N(0, 1)``; model ``y ~ x + (1 | g)`` by REML.  For each of
``R = 200`` simulated datasets: Satterthwaite 95% t intervals for the intercept and
slope, the 95% profile interval of the group SD, and the 95% percentile interval of
the group SD from a 200-replicate parametric bootstrap.  A coverage rate must lie
within 3 Monte Carlo SEs of 0.95 (SE = sqrt(0.95 * 0.05 / 200) = 0.0154: 0.904-0.996).

Result of the last run (seed 20261201): intercept 0.960, slope 0.940, profile SD
0.975, bootstrap SD 0.930 (about 3 min on 2 shared cores).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import hierlm
from hierlm.inference.profile import profiler

R = 200
TRUTH = {"(Intercept)": 1.0, "x": 0.5, "sd": 0.8}


def simulate(rng: np.random.Generator, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return 1.0 + 0.5 * x + 0.8 * rng.standard_normal(20)[g] + rng.standard_normal(g.size)


@pytest.mark.slow
def test_intervals_cover_at_nominal_rate():
    rng = np.random.default_rng(20261201)
    g = np.repeat(np.arange(20), 6)
    x = rng.standard_normal(g.size)  # the design is fixed; only y is simulated
    data = pd.DataFrame({"y": simulate(rng, x, g), "x": x, "g": g.astype(str)})
    model = hierlm.Model("y ~ x + (1 | g)", data)
    hits = {"(Intercept)": 0, "x": 0, "profile_sd": 0, "boot_sd": 0}
    z = scipy.stats.norm.ppf(0.975)
    for r in range(R):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = model.with_response(simulate(rng, x, g)).fit("reml")
            ct = res.coef_table()
            for name in ["(Intercept)", "x"]:
                half = scipy.stats.t.ppf(0.975, ct.loc[name, "df"]) * ct.loc[name, "se"]
                hits[name] += abs(ct.loc[name, "estimate"] - TRUTH[name]) <= half
            pr = profiler(res)
            lo, hi = pr.endpoint(0, -z), pr.endpoint(0, z)
            hits["profile_sd"] += lo <= TRUTH["sd"] <= hi
            b = res.bootstrap(200, seed=r, progressbar=False)
            ci = b.confint(0.95).loc["sd_(Intercept)|g"]
            hits["boot_sd"] += ci["lower"] <= TRUTH["sd"] <= ci["upper"]
    rates = {k: v / R for k, v in hits.items()}
    print(rates)
    se = np.sqrt(0.95 * 0.05 / R)
    for k, v in rates.items():
        assert abs(v - 0.95) <= 3 * se, (k, v)
