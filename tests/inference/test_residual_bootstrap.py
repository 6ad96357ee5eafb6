"""Parametric bootstrap with a residual structure.

Outside checks: the simulated errors have the fitted covariance (empirical against the
closed form), and the bootstrap distribution of phi is centred near the estimate with
a spread close to the profile interval's (a simulation with known truth: the fit)."""

from __future__ import annotations

import numpy as np
import pytest

import hierlm
from hierlm.design.residual_design import design_with_residual
from hierlm.estimate.residual_simulate import correlated_errors
from tests.residual_data import residual_data


@pytest.mark.parametrize("residual, rho", [("ar1(visit | Mare)", 0.6), ("cs(1 | Mare)", -0.02)])
def test_simulated_errors_have_the_structure_covariance(residual: str, rho: float) -> None:
    d = residual_data("ovary")
    _, rd = design_with_residual("follicles ~ s + c + (1 | Mare)", d, residual, None)
    z = np.random.default_rng(2).standard_normal((len(d), 20000))
    e = correlated_errors(rd, rho, z)
    rows = np.flatnonzero(rd.group == 0)[:4]
    emp = np.cov(e[rows])
    if residual.startswith("ar1"):
        v = rd.time[rows]
        want = rho ** np.abs(v[:, None] - v[None, :])
    else:
        want = np.full((4, 4), rho) + (1 - rho) * np.eye(4)
    np.testing.assert_allclose(emp, want, atol=0.03)


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
