"""A structured fit through the rest of the package: save/load, predict, simulate,
marginal moments, Wald intervals, and the methods not supported yet."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.errors import IdentifiabilityWarning, SingularFitWarning
from tests.covariance.brute import DenseFit, dense_v
from tests.covariance.test_fit_dense import data, fitted


def test_save_load_round_trips_a_structured_fit(tmp_path):
    res = fitted("ar1", True)
    res.save(str(tmp_path / "ar1.hierlm"))
    back = hierlm.load(str(tmp_path / "ar1.hierlm"))
    pd.testing.assert_series_equal(back.covariance_parameters, res.covariance_parameters)
    np.testing.assert_array_equal(back.theta, res.theta)
    assert back.aic == res.aic
    assert back.coder.terms[0].structure == "ar1"
    new = data().head(10)
    np.testing.assert_allclose(back.predict(new), res.predict(new), rtol=1e-12)


def test_marginal_moments_are_the_structured_covariance():
    """marginal_moments' covariance of a subject's rows is Z Sigma Z' + sigma^2 I with
    Sigma built from the reported sd and rho (dense, independent of theta)."""
    res = fitted("ar1", True)
    rows = data().iloc[:8]
    _, cov = res.marginal_moments(rows)
    sd = res.covariance_parameters["subject: sd"]
    rho = res.covariance_parameters["subject: rho"]
    t = rows["time"].str[1:].astype(int).to_numpy() - 1
    expected = sd**2 * rho ** np.abs(np.subtract.outer(t, t)) + res.sigma**2 * np.eye(8)
    np.testing.assert_allclose(cov.to_numpy(), expected, rtol=1e-9)
    fit = DenseFit(res.model.design, "ar1", True)
    v = np.array([np.log(sd / res.sigma), rho])
    np.testing.assert_allclose(dense_v(fit, v, res.sigma**2)[:8, :8], expected, rtol=1e-9)


def test_simulate_has_the_fitted_covariance():
    res = fitted("cs", True)
    sims = res.simulate(nsim=4000, seed=3)
    first = sims.iloc[:8].to_numpy()   # one subject's 8 rows
    _, cov = res.marginal_moments(data().iloc[:8])
    np.testing.assert_allclose(np.cov(first), cov.to_numpy(), atol=0.25)


def test_wald_confint_names_the_structure_parameters():
    res = fitted("toep", True)
    ci = res.confint(method="wald")
    assert ci.index[:8].tolist() == [f"sd_timet{j}|subject" for j in range(1, 5)] + [
        "rho_lag1|subject", "rho_lag2|subject", "rho_lag3|subject", "sigma"]
    assert res.covariance_parameters.index[-3:].tolist() == [
        "subject: rho_lag1", "subject: rho_lag2", "subject: rho_lag3"]


def _one_per_cell(seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(f"s{s}", f"t{t}", rng.normal()) for s in range(30) for t in range(1, 5)]
    frame = pd.DataFrame(rows, columns=["subject", "time", "y"])
    frame["y"] += rng.normal(size=30).repeat(4)
    return frame


@pytest.mark.parametrize("written", ["diag(0 + time | subject)",
                                     "diag(0 + time | subject, hom=True)",
                                     "cs(0 + time | subject, hom=True)",
                                     "toep(0 + time | subject, hom=True)"])
def test_unidentifiable_structures_warn(written):
    with pytest.warns(IdentifiabilityWarning, match="not identifiable beside the residual"):
        hierlm.fit(f"y ~ 1 + {written}", _one_per_cell())


def test_heterogeneous_toeplitz_is_identified_with_one_observation_per_cell():
    """Its covariances rho_|i-j| s_i s_j tie the SDs, so no delta moves between them and
    sigma^2 (the Orthodont toep reference is a point optimum, not a ridge)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        warnings.simplefilter("ignore", SingularFitWarning)
        hierlm.fit("y ~ 1 + toep(0 + time | subject)", _one_per_cell())


def test_the_warning_is_true_the_likelihood_is_flat():
    """With one observation per cell, moving delta between the variances and sigma^2
    leaves the dense marginal covariance, and hierlm's profiled criterion, unchanged
    (homogeneous cs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit("y ~ 1 + cs(0 + time | subject, hom=True)", _one_per_cell())
    fit = DenseFit(res.model.design, "homcs", True)
    sd, rho, s2 = 1.0, 0.4, 0.64
    delta = 0.2
    var1, s2_1 = sd**2 + delta, s2 - delta
    v0 = np.array([np.log(sd / np.sqrt(s2)), rho])
    v1 = np.array([0.5 * np.log(var1 / s2_1), rho * sd**2 / var1])
    np.testing.assert_allclose(dense_v(fit, v1, s2_1), dense_v(fit, v0, s2), atol=1e-12)
    # the profiled criterion depends on Sigma / sigma^2 only: equal at both points
    obj = res.model.objective
    thetas = []
    for v in (v0, v1):
        T = np.linalg.cholesky(np.exp(2 * v[0]) * (np.full((4, 4), v[1])
                                                   + (1 - v[1]) * np.eye(4)))
        thetas.append(np.concatenate([T[j:, j] for j in range(4)]))
    f0, f1 = (obj.value_and_grad(th, True)[0] for th in thetas)
    assert f0 == pytest.approx(f1, rel=1e-10)
    assert not np.allclose(thetas[0], thetas[1])


def test_identifiable_structures_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        hierlm.fit("y ~ 1 + ar1(0 + time | subject)", _one_per_cell())
        hierlm.fit("y ~ 1 + cs(0 + time | subject)", _one_per_cell())


def test_datatree_carries_the_structure_parameters():
    res = fitted("ar1", True)
    est = res.to_datatree()["estimate"].to_dataset()
    cp = est["covariance_parameters"]
    assert cp.coords["covariance_parameter"].values.tolist() == ["subject: sd", "subject: rho"]
    np.testing.assert_array_equal(cp.values, res.covariance_parameters.to_numpy())
    # the implied SDs and correlations, as for an unstructured term
    np.testing.assert_allclose(est["sd_subject"].values, res.covariance_parameters.iloc[0])
    np.testing.assert_allclose(est["corr_subject"].values[0], res.covariance_parameters.iloc[1])


def test_bootstrap_refits_each_replicate():
    """Replicate i is the fit's own method refitted to the i-th simulated response (the
    same draws as bootstrap.simulate with the seed), and the intervals name rho."""
    from hierlm.inference.bootstrap import simulate
    from hierlm.objective.gram import term_matrix

    res = fitted("ar1", True)
    boot = res.bootstrap(6, seed=11, progressbar=False)
    assert boot.n_failed == 0
    design = res.model.design
    Y = simulate(design, res, np.random.default_rng(11), [term_matrix(t) for t in design.terms],
                 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = res.model.with_response(Y[4]).fit("reml")
    row = boot.replicates.iloc[4]
    assert row["objective"] == pytest.approx(again.objective, rel=1e-12)
    assert row["rho|subject"] == pytest.approx(again.covariance_parameters["subject: rho"],
                                               rel=1e-10)
    np.testing.assert_allclose(row[list(res.fixef.index)], again.fixef, rtol=1e-10)
    ci = boot.confint()
    assert ci.index.tolist() == ["sd|subject", "rho|subject", "sigma", "(Intercept)", "x"]
    assert boot.estimates["rho|subject"] == pytest.approx(
        res.covariance_parameters["subject: rho"], rel=1e-12)
