"""Parametric bootstrap with a residual structure: the bootstrap distribution of phi is
centred near the estimate, and its percentile interval is close to the profile interval
(tests/estimate/test_residual_simulate.py checks the simulated errors' covariance)."""

from __future__ import annotations

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
