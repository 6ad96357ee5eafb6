"""The inference graph against a dense brute-force computation (n x n V in numpy).

Outside checks: ``d(theta, sigma)`` and ``C(psi) = sigma^2 (X'V^{-1}X)^{-1}`` are
computed densely; their Hessian and Jacobian by central finite differences of the
dense functions (step 1e-4 relative, error ~1e-7 relative).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.inference.deviance import varpar_info
from tests.conftest import dataset
from tests.dense import marginal_cov


def dense_dev(design, psi, reml):
    theta, sigma = psi[:-1], psi[-1]
    V = marginal_cov(design, theta)
    X, y = design.X, design.y
    Vi = np.linalg.inv(V)
    XtVX = X.T @ Vi @ X
    beta = np.linalg.solve(XtVX, X.T @ Vi @ y)
    r = y - X @ beta
    n, p = X.shape
    d = np.linalg.slogdet(V)[1] + r @ Vi @ r / sigma**2
    if reml:
        return d + np.linalg.slogdet(XtVX)[1] + (n - p) * np.log(2 * np.pi * sigma**2)
    return d + n * np.log(2 * np.pi * sigma**2)


def dense_vcov(design, psi):
    V = marginal_cov(design, psi[:-1])
    X = design.X
    return psi[-1] ** 2 * np.linalg.inv(X.T @ np.linalg.solve(V, X))


def fd_hessian(f, x, h):
    k = len(x)
    H = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h[i], np.eye(k)[j] * h[j]
            H[i, j] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (
                4 * h[i] * h[j])
    return H


CASES = [("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
         ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
         ("simulated", "y ~ x + (1 | g) + (1 + z | h)"),  # a non-scalar second term
         pytest.param("simulated", "y ~ x + z + (1 + x + z | g)",  # 3 x 3 first blocks
                      marks=pytest.mark.slow)]


def simulated():
    rng = np.random.default_rng(3)
    n = 240
    g, h = rng.integers(0, 12, n), rng.integers(0, 5, n)
    x, z = rng.standard_normal(n), rng.standard_normal(n)
    y = (1 + x + rng.standard_normal(12)[g] + rng.standard_normal(12)[g] * x
         + rng.standard_normal(5)[h] * z + rng.standard_normal(n))
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": g.astype(str), "h": h.astype(str)})


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize(("data", "formula"), CASES)
def test_deviance_hessian_jacobian_match_dense(data, formula, reml):
    frame = simulated() if data == "simulated" else dataset(data)
    res = hierlm.fit(formula, frame, method="reml" if reml else "ml")
    design = res.model.design
    info = varpar_info(res.model.objective, res.theta, res.sigma, reml)
    psi = info.psi
    assert info.deviance == pytest.approx(dense_dev(design, psi, reml), rel=1e-10)
    assert info.deviance == pytest.approx(res.objective, rel=1e-10)  # sigma-hat: same value
    h = 1e-4 * np.maximum(np.abs(psi), 0.1)
    H = fd_hessian(lambda x: dense_dev(design, x, reml), psi, h)
    np.testing.assert_allclose(info.hessian, H, rtol=1e-5, atol=1e-5 * np.abs(H).max())
    np.testing.assert_allclose(info.vcov_beta, dense_vcov(design, psi), rtol=1e-9)
    for j in range(len(psi)):
        e = np.eye(len(psi))[j] * h[j]
        dC = (dense_vcov(design, psi + e) - dense_vcov(design, psi - e)) / (2 * h[j])
        np.testing.assert_allclose(info.jacobian[j], dC, rtol=1e-6,
                                   atol=1e-7 * np.abs(dC).max() + 1e-12)
    A = 2 * np.linalg.inv(H)  # entries near 0 carry the FD Hessian's absolute error
    np.testing.assert_allclose(info.vcov_varpar, A, rtol=1e-4, atol=1e-5 * np.abs(A).max())
