"""NUTS results: posterior-predictive summaries, marginal moments as posterior means, and
ArviZ's summary rows lined up with ``ranef()``."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.covariance.layout import templates
from hierlm.results.result import FitResult

SMALL = {"draws": 150, "tune": 150, "chains": 2, "progressbar": False, "sampler": "pymc",
         "cores": 1, "random_seed": 4}


@pytest.fixture(scope="module")
def nuts() -> FitResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hierlm.fit("Reaction ~ 1 + Days + (1 + Days | Subject)",
                          hierlm.load_sleepstudy(), method="nuts", **SMALL)


def test_az_summary_rows_match_ranef(nuts: FitResult) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(nuts.idata, var_names=["r_Subject"], kind="stats", round_to="none")
    rt = nuts.ranef()
    for g, level, term, value in zip(rt.group, rt.level, rt.term, rt.value, strict=True):
        assert abs(table.loc[f"r_{g}[{term}, {level}]", "mean"] - value) < 1e-9


def test_posterior_predictions(nuts: FitResult) -> None:
    post = nuts.idata["posterior"]
    new = pd.DataFrame({"Days": [0.0, 9.0, 3.0], "Subject": ["308", "372", "new"]})
    fit, draws = nuts.predict(new, allow_new_levels=True, draws=True)
    # by hand from the draws: beta_0 + beta_1 Days + b[level]
    beta = post["beta"].values.reshape(-1, 2)
    r = post["r_Subject"]
    b308 = r.sel(Subject_level="308").values.reshape(-1, 2)  # term-major: (draws, term)
    b372 = r.sel(Subject_level="372").values.reshape(-1, 2)
    by_hand = np.column_stack([beta[:, 0] + b308[:, 0],
                               beta[:, 0] + b372[:, 0] + 9 * (beta[:, 1] + b372[:, 1]),
                               beta[:, 0] + 3 * beta[:, 1]])
    np.testing.assert_allclose(draws, by_hand, rtol=1e-12)
    np.testing.assert_allclose(fit.to_numpy(), by_hand.mean(axis=0), rtol=1e-12)
    ci = nuts.predict(new, allow_new_levels=True, interval="confidence", level=0.8)
    np.testing.assert_allclose(ci.lower.to_numpy(), np.quantile(by_hand, 0.1, axis=0),
                               rtol=1e-12)
    pi = nuts.predict(new, allow_new_levels=True, interval="prediction", level=0.8)
    assert np.all(pi.upper - pi.lower > ci.upper - ci.lower)
    # a new subject's prediction interval is wider than a seen one's
    assert (pi.upper - pi.lower).iloc[2] > (pi.upper - pi.lower).iloc[0]


def test_marginal_moments_are_posterior_means(nuts: FitResult) -> None:
    post = nuts.idata["posterior"]
    rows = pd.DataFrame({"Days": [0.0, 2.0], "Subject": ["a", "a"]})
    mean, cov = nuts.marginal_moments(rows)
    beta = post["beta"].values.reshape(-1, 2)
    sig = post["sigma"].values.reshape(-1)
    (T,) = templates(nuts.model.design, post["theta"].values.reshape(-1, 3))
    Z = np.array([[1.0, 0.0], [1.0, 2.0]])
    covs = [s**2 * (Z @ t @ t.T @ Z.T + np.eye(2)) for s, t in zip(sig, T, strict=True)]
    np.testing.assert_allclose(cov.to_numpy(), np.mean(covs, axis=0), rtol=1e-10)
    np.testing.assert_allclose(mean.to_numpy(), (beta @ Z.T).mean(axis=0), rtol=1e-10)


def test_bootstrap_group_has_the_posterior_layout(nuts: FitResult) -> None:
    from tests.results.test_datatree import small_bootstrap

    reml = hierlm.fit("Reaction ~ 1 + Days + (1 + Days | Subject)", hierlm.load_sleepstudy())
    boot = reml.to_datatree(small_bootstrap(reml, n=5))["bootstrap"]
    post = nuts.idata["posterior"]
    for name in ("beta", "sigma", "sd_Subject", "corr_Subject"):
        assert boot[name].dims == post[name].dims, name
        for dim in boot[name].dims[2:]:
            assert list(boot[dim].values) == list(post[dim].values), dim
    # the same plot can take both: NUTS' tree with the bootstrap added
    both = nuts.to_datatree(small_bootstrap(reml, n=5))
    assert {"posterior", "bootstrap"} <= set(both.children)


def test_integer_levels_in_coordinates_and_summary() -> None:
    data = hierlm.load_sleepstudy()
    data = data.assign(Subject=data.Subject.astype(int))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit("Reaction ~ 1 + Days + (1 + Days | Subject)", data, method="nuts",
                         **{**SMALL, "draws": 50, "tune": 50})
    level = res.idata["posterior"]["Subject_level"].values
    assert level.dtype.kind == "i" and list(level[:3]) == [308, 309, 310]
    assert list(res.idata["log_likelihood"]["Subject_level"].values[:2]) == [308, 309]
    rt = res.ranef()
    assert rt.level.dtype == np.int64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(res.idata, var_names=["r_Subject"], kind="stats", round_to="none")
    for level_, term, value in zip(rt.level, rt.term, rt.value, strict=True):
        assert abs(table.loc[f"r_Subject[{term}, {level_}]", "mean"] - value) < 1e-9
