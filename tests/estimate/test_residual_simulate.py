"""Simulated residuals have the structure's covariance (empirical against closed form)."""

from __future__ import annotations

import numpy as np
import pytest

from hierlm.design.residual_design import design_with_residual
from hierlm.estimate.residual_simulate import correlated_errors, simulate_responses
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


def test_simulated_responses_have_the_marginal_covariance() -> None:
    """Random intercept (SD 2 sigma) plus AR(1) errors with a log SD ratio by group."""
    d = residual_data("orthodont")
    des, rd = design_with_residual("distance ~ age + (1 | Subject)", d,
                                   "ar1(visit | Subject)", "~ Sex")
    beta, sigma, phi, delta = np.array([17.0, 0.6]), 1.5, 0.4, np.array([-0.5])
    y = simulate_responses(des, rd, beta, np.array([2.0]), sigma, phi, delta, 20000,
                           np.random.default_rng(3))
    rows = np.flatnonzero(rd.group == rd.group[-1])  # a Female subject: SD ratio e^-0.5
    emp = np.cov(y[rows])
    s = sigma * np.exp(-0.5)
    v = rd.time[rows]
    want = (2.0 * sigma) ** 2 + s**2 * phi ** np.abs(v[:, None] - v[None, :])
    np.testing.assert_allclose(emp, want, rtol=0.05)
    np.testing.assert_allclose(y[rows].mean(axis=1), des.X[rows] @ beta, atol=0.1)
