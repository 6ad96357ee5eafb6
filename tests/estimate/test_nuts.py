"""method="nuts": output layout, ArviZ interplay, and (slow) accuracy and calibration.

The fast tests share one short sampling run per design (the compiled sampler is
cached per design shape, so further fits of the same design only sample).
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from types import SimpleNamespace
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hierlm
from hierlm.errors import MethodError, PriorError
from hierlm.estimate.conditional import log_likelihood_dataset
from hierlm.estimate.nuts_info import NutsInfo
from hierlm.results.nuts_summary import format_nuts_footer
from hierlm.results.result import FitResult
from tests.objective.test_profiled import random_data

SLEEP = "Reaction ~ 1 + Days + (1 + Days | Subject)"
SMALL = {"draws": 150, "tune": 150, "chains": 2, "progressbar": False, "sampler": "pymc",
         "cores": 1}


def quiet_fit(model: hierlm.Model, **kwargs: Any) -> FitResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit("nuts", **kwargs)


@pytest.fixture(scope="module")
def sleep_model() -> hierlm.Model:
    return hierlm.Model(SLEEP, hierlm.load_sleepstudy())


@pytest.fixture(scope="module")
def sleep_fit(sleep_model: hierlm.Model) -> FitResult:
    return quiet_fit(sleep_model, random_seed=3, **SMALL)


def test_posterior_layout(sleep_fit: FitResult) -> None:
    dt = sleep_fit.idata
    assert {"posterior", "sample_stats", "observed_data", "log_likelihood"} <= set(dt.children)
    post = dt["posterior"]
    assert dict(post.sizes)["chain"] == 2 and dict(post.sizes)["draw"] == 150
    assert post["beta"].dims == ("chain", "draw", "coef")
    assert list(post["coef"].values) == ["(Intercept)", "Days"]
    assert post["sd_Subject"].dims == ("chain", "draw", "Subject_term")
    assert list(post["Subject_term"].values) == ["(Intercept)", "Days"]
    assert list(post["Subject_pair"].values) == ["(Intercept), Days"]
    assert post["corr_Subject"].shape == (2, 150, 1)
    assert post["sigma"].dims == ("chain", "draw")
    assert post["theta"].shape == (2, 150, 3)
    r = post["r_Subject"]
    assert r.dims == ("chain", "draw", "Subject_term", "Subject_level")
    assert r.shape == (2, 150, 2, 18)
    assert list(post["Subject_level"].values[:2]) == ["308", "309"]
    assert not any(str(v).startswith("chol_") for v in post.data_vars)
    assert np.all(np.abs(post["corr_Subject"].values) <= 1)
    np.testing.assert_array_equal(dt["observed_data"]["y"].values, sleep_fit.y)
    ll = dt["log_likelihood"]["y"]
    assert ll.dims == ("chain", "draw", "Subject_level") and np.all(np.isfinite(ll.values))


def test_theta_matches_sds_and_correlations(sleep_fit: FitResult) -> None:
    post = sleep_fit.idata["posterior"]
    th = post["theta"].values.reshape(-1, 3)
    sd = post["sd_Subject"].values.reshape(-1, 2)
    sig = post["sigma"].values.reshape(-1)
    rho = post["corr_Subject"].values.reshape(-1)
    T0, T1, T2 = th.T
    np.testing.assert_allclose(sig * T0, sd[:, 0], rtol=1e-10)
    np.testing.assert_allclose(sig * np.hypot(T1, T2), sd[:, 1], rtol=1e-10)
    np.testing.assert_allclose(T1 / np.hypot(T1, T2), rho, rtol=1e-8, atol=1e-12)


def test_result_fields(sleep_fit: FitResult) -> None:
    res = sleep_fit
    post = res.idata["posterior"]
    assert res.method == "NUTS" and not res.is_singular and isinstance(res.converged, bool)
    np.testing.assert_allclose(res.fixef, post["beta"].mean(("chain", "draw")).values)
    np.testing.assert_allclose(res.fixef_se, post["beta"].std(("chain", "draw"), ddof=1).values)
    assert res.sigma == pytest.approx(float(post["sigma"].median()))
    vc = res.varcorr
    sds = np.median(post["sd_Subject"].values.reshape(-1, 2), axis=0)
    np.testing.assert_allclose(vc["sd_or_corr"].iloc[:2], sds)
    assert vc["sd_or_corr"].iloc[2] == pytest.approx(float(post["corr_Subject"].median()))
    # theta is the template of the reported medians
    T = np.array([[res.theta[0], 0], [res.theta[1], res.theta[2]]]) * res.sigma
    np.testing.assert_allclose(np.sqrt(np.diag(T @ T.T)), sds, rtol=1e-10)
    rt = res.ranef()
    assert rt.columns.tolist() == ["group", "level", "term", "value", "cond_sd"]
    assert len(rt) == 36 and (rt["cond_sd"] > 0).all()
    draws = post["r_Subject"]
    np.testing.assert_allclose(rt["value"].iloc[:18], draws.mean(("chain", "draw")).values[0])
    assert len(res.fitted()) == res.nobs and np.isfinite(res.loglik)
    assert res.aic == pytest.approx(-2 * res.loglik + 2 * 6)
    assert res.n_evals >= 2 * 300
    assert res.nuts.priors["sd"]["Subject"]["Days"]["scale"] > 0
    assert set(res.nuts.diagnostics.columns) == {"mean", "sd", "r_hat", "ess_bulk",
                                                      "ess_tail"}


def test_summary_and_warnings(sleep_fit: FitResult) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = sleep_fit.summary()
    assert text.splitlines()[0] == "Bayesian linear mixed model fit by NUTS ['hierlm']"
    for needle in ("Priors:", "HalfStudentT", "LKJ(eta=2)", "r_hat", "ess_bulk", "ess_tail",
                   "Divergent transitions:", "corr_Subject[(Intercept), Days]",
                   "Post. mean", "PSIS-LOO leaving out one level of 'Subject'",
                   "not posterior model comparison"):
        assert needle in text
    import arviz as az

    assert f"elpd_loo {float(az.loo(sleep_fit.idata).elpd):.2f}" in text
    # 300 draws in all cannot reach ess_bulk 400 for every parameter.
    assert sleep_fit.nuts.min_ess_bulk < 400
    assert any("ess_bulk" in str(w.message) for w in caught)


def test_loo_runs(sleep_fit: FitResult) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = az.loo(sleep_fit.idata)
    assert np.isfinite(loo.elpd) and loo.n_data_points == 18


def test_reproducible_and_ranef_options(sleep_model: hierlm.Model, sleep_fit: FitResult) -> None:
    none = quiet_fit(sleep_model, random_seed=3, ranef_draws=False, **SMALL)
    # Same seed, same posterior: the random-effect draws use their own stream.
    pd.testing.assert_series_equal(none.fixef, sleep_fit.fixef)
    assert "r_Subject" not in none.idata["posterior"] and none.nuts.ranef_draws == 0
    assert (none.ranef()["cond_sd"] > 0).all()
    assert np.corrcoef(none.ranef()["value"], sleep_fit.ranef()["value"])[0, 1] > 0.99
    thin = quiet_fit(sleep_model, random_seed=4, ranef_draws=40, **SMALL)
    r = thin.idata["posterior_ranef"]["r_Subject"]
    assert r.dims == ("chain", "draw", "Subject_term", "Subject_level")
    assert r.shape == (2, 20, 2, 18) and r["draw"].values[-1] == 149
    assert "r_Subject" not in thin.idata["posterior"] and thin.nuts.ranef_draws == 40


def test_crossed_design_has_no_log_likelihood() -> None:
    design = hierlm.build_design("y ~ x + (1 | g) + (1 | h)", random_data(6, n=80))
    ds, note = log_likelihood_dataset(design, xr.Dataset(), np.zeros((1, 2)),
                                      np.zeros((1, 2)), np.ones(1))
    assert ds is None and "crossed" in note
    res = SimpleNamespace(nuts=NutsInfo(sampler="pymc", draws=1, tune=1, chains=1,
                                        log_likelihood_note=note, divergences=0,
                                        max_rhat=1.0, min_ess_bulk=1000.0))
    footer = "\n".join(format_nuts_footer(res))  # type: ignore[arg-type]
    assert f"Model comparison: {note}" in footer
    assert "hierlm.anova" in footer and "K-fold cross-validation" in footer


def test_nested_design() -> None:
    model = hierlm.Model("y ~ 1 + (1 | g/k)", random_data(8, n=60))
    res = quiet_fit(model, random_seed=2, **{**SMALL, "draws": 60, "tune": 60})
    post = res.idata["posterior"]
    assert set(post.data_vars) >= {"sd_k:g", "sd_g", "r_k:g", "r_g"}
    # one-coefficient terms: scalar SDs and level-only random effects (clean forest plots)
    assert post["r_k:g"].dims == ("chain", "draw", "k:g_level")
    assert post["sd_g"].dims == ("chain", "draw") and "g_term" not in post.coords
    assert res.idata["log_likelihood"]["y"].dims == ("chain", "draw", "g_level")
    assert list(res.varcorr["group"]) == ["k:g", "g", "Residual"]


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"priors": {"sigma": {"scale": -1}}}, PriorError),
    ({"priors": {"sd": {"Subjects": {"scale": 2}}}}, PriorError),
    ({"priors": {"beta": {"Days": {"mu": "0"}}}}, PriorError),
    ({"draws": 0}, MethodError),
    ({"chains": 1.5}, MethodError),
    ({"sampler": "stan"}, MethodError),
    ({"ranef_draws": -1}, MethodError),
    ({"init": "map"}, MethodError),
    ({"target_accept": 1.0}, MethodError),
])
def test_bad_arguments_raise_before_sampling(sleep_model: hierlm.Model, kwargs: dict,
                                             error: type) -> None:
    with pytest.raises(error):
        sleep_model.fit("nuts", **kwargs)


def test_arviz_plots(sleep_fit: FitResult) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dt = sleep_fit.idata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        az.plot_trace_dist(dt, var_names=["beta", "sigma", "sd_Subject", "corr_Subject"],
                           backend="matplotlib")
        az.plot_forest(dt, var_names=["r_Subject"], backend="matplotlib")
        az.plot_dist(dt, var_names=["sd_Subject", "corr_Subject"], backend="matplotlib")
    plt.close("all")


@pytest.mark.skipif(importlib.util.find_spec("nutpie") is None, reason="nutpie not installed")
def test_nutpie_sampler(sleep_model: hierlm.Model) -> None:
    kw = {**SMALL, "sampler": "nutpie", "random_seed": 5}
    a, b = quiet_fit(sleep_model, **kw), quiet_fit(sleep_model, **kw)
    assert a.nuts.sampler == "nutpie" and a.n_evals > 0
    pd.testing.assert_series_equal(a.fixef, b.fixef)
    assert a.idata["posterior"]["r_Subject"].shape == (2, 150, 2, 18)
    assert abs(a.fixef["Days"] - 10.47) < 3


def test_sleepstudy_defaults_match_reml(sleep_model: hierlm.Model) -> None:
    """Default settings (4 chains x 1000 draws after 1000 tuning) against the REML fit.

    About 30 s with PyMC's sampler on a 2-core machine (the compiled sampler is
    shared with the fixtures above).
    """
    start = time.perf_counter()
    res = sleep_model.fit("nuts", random_seed=2024, progressbar=False)
    elapsed = time.perf_counter() - start
    reml = sleep_model.fit("reml")
    diag = res.nuts.diagnostics
    assert res.nuts.divergences == 0 and res.converged
    assert (diag["r_hat"] <= 1.01).all(), diag
    assert (diag["ess_bulk"] >= 1000).all(), diag
    z = (res.fixef - reml.fixef) / res.fixef_se
    assert (z.abs() < 0.25).all(), z
    post, ref = res.ranef(), reml.ranef()
    zr = (post["value"] - ref["value"]) / post["cond_sd"]
    assert (zr.abs() < 0.25).all(), zr.abs().max()
    print(f"sleepstudy NUTS with defaults: {elapsed:.1f} s ({res.nuts.sampler})")


SBC_PRIORS = {"beta": {"(Intercept)": {"mu": 0.0, "sigma": 1.0}},
              "sigma": {"scale": 1.0, "nu": 3.0}, "sd": {"g": {"scale": 1.0}}}


@pytest.mark.slow
def test_simulation_based_calibration() -> None:
    """Coverage of central posterior intervals, truth drawn from the (fixed) prior.

    ``y ~ 1 + (1 | g)``, 10 groups x 5 observations; per replicate the truth is drawn
    from the priors given to the sampler (``beta ~ N(0, 1)``, ``sigma ~
    HalfStudentT(3, 1)``, ``sd_g ~ HalfNormal(1)``), data simulated, and NUTS run with
    2 chains x 300 draws (300 tuning), PyMC's sampler.  Observed with 100 replicates:
    50% intervals cover beta in 0.47 and sd_g in 0.46 of replicates, 90% intervals
    in 0.92 and 0.91 (binomial 3-sigma bounds: 0.35-0.65 and 0.81-0.99); 2.5-3.5 minutes
    on a 2-core machine.
    """
    reps = 100
    rng = np.random.default_rng(20240601)
    g = np.repeat(np.arange(10), 5).astype(str)
    base = hierlm.Model("y ~ 1 + (1 | g)", pd.DataFrame({"y": rng.normal(size=50), "g": g}))
    codes = base.design.terms[0].codes
    hits = {("beta", 50): 0, ("beta", 90): 0, ("sd", 50): 0, ("sd", 90): 0}
    for r in range(reps):
        beta = rng.normal()
        sigma = abs(rng.standard_t(3))
        sd = abs(rng.normal())
        y = beta + sd * rng.normal(size=10)[codes] + sigma * rng.normal(size=50)
        res = quiet_fit(base.with_response(y), priors=SBC_PRIORS, random_seed=r,
                        ranef_draws=False, **{**SMALL, "draws": 300, "tune": 300})
        post = res.idata["posterior"]
        for name, truth, draws in (("beta", beta, post["beta"].values.ravel()),
                                   ("sd", sd, post["sd_g"].values.ravel())):
            for width in (50, 90):
                lo, hi = np.quantile(draws, [0.5 - width / 200, 0.5 + width / 200])
                hits[(name, width)] += bool(lo <= truth <= hi)
    rates = {k: v / reps for k, v in hits.items()}
    print(f"SBC coverage over {reps} replicates: {rates}")
    for (_, width), rate in rates.items():
        p = width / 100
        assert abs(rate - p) <= 3 * np.sqrt(p * (1 - p) / reps), rates
