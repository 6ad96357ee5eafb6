"""emmeans of a NUTS fit: the same tables from the posterior draws of beta."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hierlm
from tests.inference.test_emmeans import data_of, fit_of

SMALL = {"draws": 200, "tune": 200, "chains": 2, "progressbar": False, "sampler": "pymc",
         "cores": 1, "random_seed": 5}


@pytest.fixture(scope="module")
def nuts() -> hierlm.FitResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hierlm.fit("y ~ A * B + (1 | subject)", data_of("twofactor"), method="nuts",
                          **SMALL)


def test_posterior_emmeans_table(nuts: hierlm.FitResult) -> None:
    em = nuts.emmeans("A")
    assert list(em.table.columns) == ["A", "emmean", "se", "lower", "upper"]
    beta = nuts.idata["posterior"]["beta"]
    draws = beta.values.reshape(-1, beta.shape[-1])
    names = list(beta.coords["coef"].values)
    col = {n: draws[:, names.index(n)] for n in names}
    # the mean of a1 averages B = b1 and b2 equally: intercept + Bb2 / 2 (written out here)
    a1 = col["(Intercept)"] + 0.5 * col["Bb2"]
    assert em.table["emmean"].iloc[0] == pytest.approx(np.median(a1), rel=1e-12)
    assert em.table["se"].iloc[0] == pytest.approx(np.std(a1, ddof=1), rel=1e-12)
    lo, hi = np.quantile(a1, [0.025, 0.975])
    assert (em.table["lower"].iloc[0], em.table["upper"].iloc[0]) == pytest.approx((lo, hi))
    # the posterior agrees with the REML fit within its uncertainty
    reml = fit_of("twofactor").emmeans("A").table
    assert np.all(np.abs(em.table["emmean"] - reml["emmean"]) < 3 * em.table["se"])


def test_posterior_pairs_have_intervals_not_p(nuts: hierlm.FitResult) -> None:
    p = nuts.emmeans("A", level=0.9).pairs()
    assert list(p.columns) == ["contrast", "estimate", "se", "lower", "upper"]
    assert p["contrast"].tolist() == ["a1 - a2", "a1 - a3", "a2 - a3"]
    assert np.all(p["lower"] < p["estimate"]) and np.all(p["estimate"] < p["upper"])
