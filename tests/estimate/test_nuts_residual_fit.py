"""NUTS fits with residual= / sigma= through hierlm.fit and Model: the result, its
density against a dense Gaussian marginal, recovery of a known truth, and refusals."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

import hierlm
import hierlm.estimate.nuts_residual_fit as nrf
from hierlm.errors import MethodError
from hierlm.objective.gram import term_matrix
from tests.estimate.test_nuts_residual import _data

FORMULA = "y ~ x + (x | subject)"
AR1, SIG = "ar1(visit | subject)", "~ grp"
SMALL = {"draws": 100, "tune": 100, "chains": 2, "progressbar": False}


def _quiet(fn: Any, *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _dense_cov(d: pd.DataFrame, model: hierlm.Model, sigma: float, Sigma: np.ndarray,
               phi: float, delta: np.ndarray) -> np.ndarray:
    """``sigma^2 S C S + Z (I kron Sigma) Z'`` built entry by entry from the data."""
    design, rd = model.design, model.residual
    assert rd is not None
    n = len(d)
    s = np.exp(rd.V @ delta) if rd.V.shape[1] else np.ones(n)
    subj, visit = d["subject"].to_numpy(), d["visit"].to_numpy(dtype=float)
    C = (subj[:, None] == subj[None, :]) * phi ** np.abs(visit[:, None] - visit[None, :])
    Z = term_matrix(design.terms[0]).toarray()
    G = np.kron(np.eye(design.terms[0].n_levels), Sigma)
    return sigma**2 * s[:, None] * C * s[None, :] + Z @ G @ Z.T


@pytest.fixture(scope="module")
def small() -> dict[str, Any]:
    """One small fit (Model API), its data and the PyMC model the fit sampled."""
    d = _data(seed=2, n_sub=16, n_vis=6)
    built: list[Any] = []
    original = nrf.build_residual_model

    def keep(*args: Any, **kwargs: Any) -> Any:
        built.append(original(*args, **kwargs))
        return built[-1]

    nrf.build_residual_model = keep  # type: ignore[assignment]
    try:
        model = hierlm.Model(FORMULA, d, residual=AR1, sigma=SIG)
        res = _quiet(model.fit, "nuts", random_seed=7, **SMALL)
    finally:
        nrf.build_residual_model = original  # type: ignore[assignment]
    return {"d": d, "model": model, "res": res, "pymc": built[0]}


def test_result_fields_and_names(small: dict[str, Any]) -> None:
    res, d = small["res"], small["d"]
    reml = _quiet(hierlm.fit, FORMULA, d, residual=AR1, sigma=SIG)
    assert res.method == "NUTS" and reml.method == "REML"
    assert res.residual_parameters.index.tolist() == reml.residual_parameters.index.tolist() \
        == ["rho", "log_sd_ratio:grpb"]
    post = res.idata["posterior"]
    assert post["ar1_phi"].dims == ("chain", "draw")
    assert post["log_sd_ratio"].dims == ("chain", "draw", "sigma_term")
    assert post["log_sd_ratio"]["sigma_term"].values.tolist() == ["grpb"]
    # the REML fit's DataTree names the same variables the same way
    est = reml.to_datatree()["estimate"]
    assert {"ar1_phi", "log_sd_ratio"} <= set(est.data_vars)
    assert est["log_sd_ratio"].dims[-1] == "sigma_term"
    # residual_parameters: posterior means of the draws
    np.testing.assert_allclose(res.residual_parameters["rho"], float(post["ar1_phi"].mean()),
                               rtol=1e-12)
    np.testing.assert_allclose(res.residual_parameters["log_sd_ratio:grpb"],
                               float(post["log_sd_ratio"].mean()), rtol=1e-12)
    assert res.sigma == pytest.approx(float(post["sigma"].median()), rel=1e-12)
    # residual_sd(): sigma, times exp(ratio) on the rows of level b, indexed like fitted()
    sd = res.residual_sd()
    assert sd.index.equals(res.fitted().index)
    expect = res.sigma * np.where(d["grp"] == "b",
                                  np.exp(res.residual_parameters["log_sd_ratio:grpb"]), 1.0)
    np.testing.assert_allclose(sd.to_numpy(), expect, rtol=1e-12)
    # k = p + 3 covariance parameters + sigma + rho + one log ratio
    assert res.aic == pytest.approx(-2 * res.loglik + 2 * (2 + 3 + 1 + 2), rel=1e-12)
    assert res.nuts is not None and res.nuts.sampler == "pymc"
    assert {"ar1_phi", "log_sd_ratio[grpb]"} <= set(res.nuts.diagnostics.index)
    assert "ar1_phi ~ Uniform(-1, 1)" in res.nuts.prior_lines
    assert res.residual == AR1 and res.sigma_formula == SIG


def test_summary_names_the_residual_parameters(small: dict[str, Any]) -> None:
    text = _quiet(small["res"].summary)
    for needle in ("fit by NUTS", "Residual correlation: ar1(visit | subject)",
                   "ar1_phi", "log_sd_ratio[grpb]", "log_sd_ratio[grpb] ~ Normal(0, 1)",
                   "log_likelihood omitted"):
        assert needle in text


def test_fit_path_density_matches_dense_marginal(small: dict[str, Any]) -> None:
    """The model the fit sampled, evaluated at its own posterior draws, against a dense
    n x n Gaussian log density."""
    res, d, model, pm_model = small["res"], small["d"], small["model"], small["pymc"]
    post = res.idata["posterior"]
    loglik = pm_model.compile_logp(vars=pm_model.potentials, jacobian=False)
    rvs = {rv.name: rv for rv in pm_model.free_RVs}
    for chain, draw in ((0, 5), (1, 60), (0, 99)):
        at = post.isel(chain=chain, draw=draw)
        sd = at["sd_subject"].values
        r = float(at["corr_subject"].values[0])
        R = np.array([[1.0, r], [r, 1.0]])
        values = {"beta": at["beta"].values, "sigma": float(at["sigma"]),
                  "sd_subject": sd, "chol_corr_subject": np.linalg.cholesky(R),
                  "ar1_phi": float(at["ar1_phi"]), "log_sd_ratio": at["log_sd_ratio"].values}
        point = {}
        for name, v in values.items():
            rv = rvs[name]
            tr = pm_model.rvs_to_transforms.get(rv)
            value_var = pm_model.rvs_to_values[rv]
            point[value_var.name] = (np.asarray(v, dtype=float) if tr is None else
                                     tr.forward(np.asarray(v, dtype=float),
                                                *rv.owner.inputs).eval())
        V = _dense_cov(d, model, values["sigma"], sd[:, None] * R * sd[None, :],
                       values["ar1_phi"], values["log_sd_ratio"])
        dense = st.multivariate_normal(model.design.X @ values["beta"], V).logpdf(d["y"])
        np.testing.assert_allclose(float(loglik(point)), dense, rtol=1e-8)


def test_loglik_at_point_estimates_matches_dense_marginal(small: dict[str, Any]) -> None:
    res, d, model = small["res"], small["d"], small["model"]
    t = res.theta
    T = np.array([[t[0], 0.0], [t[1], t[2]]])
    V = _dense_cov(d, model, res.sigma, res.sigma**2 * T @ T.T, res.residual_parameters["rho"],
                   res.residual_parameters.to_numpy()[1:])
    dense = st.multivariate_normal(model.design.X @ res.fixef.to_numpy(), V).logpdf(d["y"])
    np.testing.assert_allclose(res.loglik, dense, rtol=1e-9)


def test_ranef_fitted_and_predictions(small: dict[str, Any]) -> None:
    res, d, model = small["res"], small["d"], small["model"]
    post = res.idata["posterior"]
    r = post["r_subject"]  # every posterior draw got a random-effect draw
    assert r.sizes["chain"] * r.sizes["draw"] == res.nuts.ranef_draws == 200
    mean = r.mean(("chain", "draw")).transpose("subject_level", "subject_term").values
    rt = res.ranef()
    np.testing.assert_allclose(rt["value"].to_numpy(), mean.T.ravel(), rtol=1e-12)
    Z = term_matrix(model.design.terms[0]).toarray()
    fitted = model.design.X @ res.fixef.to_numpy() + Z @ mean.ravel()
    np.testing.assert_allclose(res.fitted().to_numpy(), fitted, rtol=1e-10)
    np.testing.assert_allclose(res.predict().to_numpy(), fitted, rtol=1e-10)
    # prediction intervals use each draw's SD ratio: the level-b rows are wider
    pi = res.predict(interval="prediction")
    width = (pi["upper"] - pi["lower"]).groupby(d["grp"].to_numpy()).mean()
    assert width["b"] > 1.2 * width["a"]


def test_marginal_moments_average_the_residual_covariance(small: dict[str, Any]) -> None:
    res = small["res"]
    rows = pd.DataFrame({"x": [0.0, 0.5, 0.5], "subject": ["new", "new", "other"],
                         "visit": [0, 2, 2], "grp": ["a", "b", "b"]})
    _, cov = res.marginal_moments(rows)
    post = res.idata["posterior"]
    sig = post["sigma"].values.ravel()
    phi = post["ar1_phi"].values.ravel()
    ratio = np.exp(post["log_sd_ratio"].values.ravel())
    theta = post["theta"].values.reshape(-1, 3)
    # rows 0 and 1 share the subject: sigma^2 phi^2 * 1 * ratio + z0' Sigma z1
    Sig = [s**2 * np.array([[t[0], 0], [t[1], t[2]]]) @ np.array([[t[0], t[1]], [0, t[2]]])
           for s, t in zip(sig, theta, strict=True)]
    z0, z1 = np.array([1.0, 0.0]), np.array([1.0, 0.5])
    expect01 = np.mean([s**2 * p**2 * q + z0 @ S @ z1
                        for s, p, q, S in zip(sig, phi, ratio, Sig, strict=True)])
    assert cov.iloc[0, 1] == pytest.approx(expect01, rel=1e-10)
    expect11 = np.mean([s**2 * q**2 + z1 @ S @ z1
                        for s, q, S in zip(sig, ratio, Sig, strict=True)])
    assert cov.iloc[1, 1] == pytest.approx(expect11, rel=1e-10)
    assert cov.iloc[1, 2] == 0.0


def test_seed_reproduces_the_draws(small: dict[str, Any]) -> None:
    again = _quiet(hierlm.fit, FORMULA, small["d"], method="nuts", residual=AR1, sigma=SIG,
                   random_seed=7, **SMALL)
    a, b = small["res"].idata["posterior"], again.idata["posterior"]
    for name in ("beta", "sigma", "ar1_phi", "log_sd_ratio", "r_subject"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    pd.testing.assert_series_equal(small["res"].residual_parameters, again.residual_parameters)


def test_save_and_load_round_trip(small: dict[str, Any], tmp_path: Any) -> None:
    res = small["res"]
    res.save(str(tmp_path / "fit.hierlm"))
    back = hierlm.load(tmp_path / "fit.hierlm")
    pd.testing.assert_series_equal(back.residual_parameters, res.residual_parameters)
    np.testing.assert_array_equal(back.residual_scale, res.residual_scale)
    assert back.nuts is not None and back.nuts.prior_lines == res.nuts.prior_lines


@pytest.mark.parametrize("kwargs,match", [
    ({"residual": AR1, "sampler": "nutpie"}, "nutpie"),
    ({"residual": AR1, "draws": 0}, "draws must be a positive integer"),
    ({"residual": AR1, "weights": "w"}, "prior weights"),
])
def test_unsupported_combinations_are_one_clear_error(kwargs: dict[str, Any],
                                                      match: str) -> None:
    d = _data(n_sub=8)
    d["w"] = 1.0 + (d["visit"] % 2)
    d["u"] = np.random.default_rng(0).uniform(size=len(d))  # an SD level per row
    with pytest.raises(MethodError, match=match) as info:
        hierlm.fit(FORMULA, d, method="nuts", **kwargs)
    assert info.value.__cause__ is None


def test_car1_with_real_times_fits() -> None:
    """Real-valued times: more row classes than the dense class matrices keep, so the
    graph sums sparse ones (once refused with a MethodError)."""
    d = _data(seed=4, n_sub=16, n_vis=6)
    rng = np.random.default_rng(1)
    d["time"] = d["visit"] + rng.uniform(0.0, 0.9, len(d))
    d["z"] = rng.uniform(-1.0, 1.0, len(d))
    res = _quiet(hierlm.fit, "y ~ x + (1 | subject)", d, method="nuts",
                 residual="car1(time | subject)", sigma="~ z", random_seed=3, **SMALL)
    par = res.residual_parameters
    assert list(par.index) == ["rho", "log_sd_ratio:z"]
    assert 0.0 < par["rho"] < 1.0 and np.isfinite(par["log_sd_ratio:z"])
    post = res.idata["posterior"]
    assert post["car1_phi"].shape == (2, 100)
    assert np.isfinite(res.ranef()["value"].to_numpy()).all()
    assert np.isfinite(res.fitted().to_numpy()).all()


def test_cs_with_a_numeric_sd_column_fits() -> None:
    """cs(...) with an SD level per row (once refused with a MethodError): the graph
    sums the rows' and row pairs' matrices (residual_cs_pairs)."""
    d = _data(seed=4, n_sub=16, n_vis=6)
    d["z"] = np.random.default_rng(1).uniform(-1.0, 1.0, len(d))
    res = _quiet(hierlm.fit, "y ~ x + (1 | subject)", d, method="nuts",
                 residual="cs(1 | subject)", sigma="~ z", random_seed=3, **SMALL)
    par = res.residual_parameters
    assert list(par.index) == ["rho", "log_sd_ratio:z"]
    assert -0.2 < par["rho"] < 1.0 and np.isfinite(par["log_sd_ratio:z"])
    assert res.idata["posterior"]["cs_rho"].shape == (2, 100)
    assert np.isfinite(res.ranef()["value"].to_numpy()).all()
    assert np.isfinite(res.fitted().to_numpy()).all()


def test_nuts_fit_with_residual_is_refused_by_frequentist_tools(
        small: dict[str, Any]) -> None:
    with pytest.raises(MethodError, match="REML or ML fit, not NUTS"):
        small["res"].bootstrap(2, seed=1, progressbar=False)


@pytest.mark.slow
def test_posterior_recovers_known_ar1_truth() -> None:
    """phi = 0.6 and an SD ratio of 1.5 on 120 subjects x 8 visits: the posterior SD of
    phi is about 0.04 there, so three of them (0.12) is a real check."""
    d = _data(seed=21, n_sub=120, n_vis=8, phi=0.6)
    res = _quiet(hierlm.fit, "y ~ x + (1 | subject)", d, method="nuts", residual=AR1,
                 sigma=SIG, draws=400, tune=400, chains=2, random_seed=3, progressbar=False)
    post = res.idata["posterior"]
    phi = post["ar1_phi"].values.ravel()
    ratio = post["log_sd_ratio"].values.ravel()
    print(f"phi {phi.mean():.4f} (sd {phi.std():.4f}); log ratio {ratio.mean():.4f} "
          f"(sd {ratio.std():.4f})")
    assert phi.std() < 0.05 and ratio.std() < 0.06
    assert abs(phi.mean() - 0.6) < 3 * phi.std()
    assert abs(ratio.mean() - np.log(1.5)) < 3 * ratio.std()
    assert res.nuts.divergences == 0


@pytest.mark.slow
def test_posterior_means_are_close_to_reml_on_a_larger_design() -> None:
    """With 200 subjects x 8 visits the likelihood dominates the priors: posterior means
    within half a posterior SD of the REML estimates (Bernstein-von Mises)."""
    d = _data(seed=5, n_sub=200, n_vis=8, phi=0.5)
    reml = _quiet(hierlm.fit, FORMULA, d, residual=AR1, sigma=SIG)
    res = _quiet(hierlm.fit, FORMULA, d, method="nuts", residual=AR1, sigma=SIG,
                 draws=500, tune=500, chains=2, random_seed=11, progressbar=False)
    diag = res.nuts.diagnostics
    checks = {"beta[(Intercept)]": reml.fixef["(Intercept)"], "beta[x]": reml.fixef["x"],
              "ar1_phi": reml.residual_parameters["rho"],
              "log_sd_ratio[grpb]": reml.residual_parameters["log_sd_ratio:grpb"]}
    for name, value in checks.items():
        print(f"{name}: posterior {diag.loc[name, 'mean']:.4f} (sd {diag.loc[name, 'sd']:.4f}),"
              f" REML {value:.4f}")
        assert abs(diag.loc[name, "mean"] - value) < 0.5 * diag.loc[name, "sd"], name
    sig = res.idata["posterior"]["sigma"].values.ravel()
    assert abs(sig.mean() - reml.sigma) < 0.5 * sig.std()


@pytest.mark.slow
def test_car1_and_sigma_only_fits() -> None:
    d = _data(seed=4, n_sub=40, n_vis=6)
    d["t"] = d["visit"] * 0.5
    car = _quiet(hierlm.fit, "y ~ x + (1 | subject)", d, method="nuts",
                 residual="car1(t | subject)", draws=150, tune=150, chains=2, random_seed=1,
                 progressbar=False)
    phi = car.idata["posterior"]["car1_phi"].values
    assert phi.min() > 0 and car.residual_parameters.index.tolist() == ["rho"]
    assert "car1_phi ~ Uniform(0, 1)" in car.nuts.prior_lines
    reml = _quiet(hierlm.fit, "y ~ x + (1 | subject)", d, residual="car1(t | subject)")
    # one time unit is two visits: phi_car1 = phi_ar1^2 = 0.36
    assert abs(car.residual_parameters["rho"] - reml.residual_parameters["rho"]) < 3 * phi.std()
    only = _quiet(hierlm.fit, "y ~ x + (1 | subject)", d, method="nuts", sigma=SIG,
                  draws=150, tune=150, chains=2, random_seed=1, progressbar=False)
    assert only.residual_parameters.index.tolist() == ["log_sd_ratio:grpb"]
    assert "ar1_phi" not in only.idata["posterior"]


@pytest.mark.slow
def test_cs_within_plots_close_to_reml() -> None:
    """cs(1 | plot), plots of three visits within subjects, beside (1 | subject): the
    posterior mean of the plot correlation within half a posterior SD of REML's."""
    d = _data(seed=8, n_sub=100, n_vis=6)
    d["plot"] = d["subject"] + "_" + (d["visit"] % 2).astype(str)
    reml = _quiet(hierlm.fit, "y ~ x + (1 | subject)", d, residual="cs(1 | plot)", sigma=SIG)
    res = _quiet(hierlm.fit, "y ~ x + (1 | subject)", d, method="nuts",
                 residual="cs(1 | plot)", sigma=SIG, draws=400, tune=400, chains=2,
                 random_seed=2, progressbar=False)
    assert res.residual_parameters.index.tolist() == ["rho", "log_sd_ratio:grpb"]
    rho = res.idata["posterior"]["cs_rho"].values.ravel()
    print(f"cs_rho {rho.mean():.4f} (sd {rho.std():.4f}); "
          f"REML {reml.residual_parameters['rho']:.4f}")
    assert abs(rho.mean() - reml.residual_parameters["rho"]) < 0.5 * rho.std()
    assert rho.min() > -0.5
