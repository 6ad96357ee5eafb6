"""Parametric bootstrap with a residual structure: the bootstrap distribution of phi is
centred near the estimate, and its percentile interval is close to the profile interval
(tests/estimate/test_residual_simulate.py checks the simulated errors' covariance)."""

from __future__ import annotations

import pytest

import hierlm
from tests.residual_data import residual_data


def test_bootstrap_of_phi() -> None:
    d = residual_data("ovary")
    res = hierlm.fit("follicles ~ s + c + (1 | Mare)", d, "ml", residual="ar1(visit | Mare)")
    boot = res.bootstrap(60, seed=4)
    assert boot.n_failed == 0
    phi = boot.replicates["rho"]
    assert list(boot.replicates.columns[-2:]) == ["sigma", "rho"]
    assert abs(phi.median() - res.residual_parameters["rho"]) < 0.05
    prof = res.confint("profile").loc["rho"]
    ci = boot.confint().loc["rho"]
    # percentile and profile intervals agree to within a third of the profile's width
    width = prof["upper"] - prof["lower"]
    assert abs(ci["lower"] - prof["lower"]) < width / 3
    assert abs(ci["upper"] - prof["upper"]) < width / 3
    again = res.confint("bootstrap", n=5, seed=1)
    assert "rho" in again.index


def test_bootstrap_with_a_structured_random_term() -> None:
    """diag(1 + Days | Subject) with AR(1) errors: every refit succeeds (all failed when
    the refits were started at theta instead of the structure's psi), the table names the
    structure's own parameters, and each replicate's criterion is that of the equal
    two-term model fitted to the same simulated response by the unstructured path."""
    import dataclasses

    import numpy as np

    from hierlm.covariance.parameters import sdcor_from_theta
    from hierlm.estimate.residual_fit import fit_residual
    from hierlm.estimate.residual_simulate import simulate_responses

    d = hierlm.load_sleepstudy()
    res = hierlm.fit("Reaction ~ Days + diag(1 + Days | Subject)", d,
                     residual="ar1(Days | Subject)")
    boot = res.bootstrap(4, seed=3)
    assert boot.n_failed == 0
    cols = list(boot.replicates.columns)
    assert cols[3:] == ["sd_(Intercept)|Subject", "sd_Days|Subject", "sigma", "rho"]
    model = res.model
    rd, par = model.residual, res.residual_parameters.to_numpy()
    ys = simulate_responses(model.design, rd, res.fixef.to_numpy(), res.theta,
                            float(res.sigma), float(par[0]), par[1:], 4,
                            np.random.default_rng(3))
    two = hierlm.fit("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", d,
                     residual="ar1(Days | Subject)").model
    for i in range(4):
        rec = fit_residual(dataclasses.replace(two.design, y=ys[:, i]), two.residual, True)
        assert boot.replicates["objective"][i] == pytest.approx(rec.objective, rel=1e-8)
        sds = sdcor_from_theta(two.design, rec.theta, rec.sigma)  # sd, sd, sigma
        got = boot.replicates.iloc[i][["sd_(Intercept)|Subject", "sd_Days|Subject", "sigma"]]
        np.testing.assert_allclose(got.to_numpy(dtype=float), sds, rtol=2e-3)
