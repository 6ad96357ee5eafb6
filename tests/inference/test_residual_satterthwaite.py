"""Satterthwaite's df with residual parameters among the variance parameters.

Two outside checks: (1) a compound-symmetric residual within plots of a random block
effect is the model with a random plot intercept (for rho >= 0), whose df hierlm
matches to lmerTest already; df do not depend on how the variance parameters are
written, so they agree; (2) a dense brute-force deviance ``d(psi) = log|V| + ... ``
(``V`` formed densely) differentiated by finite differences in every parameter.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.covariance.layout import templates
from tests.residual_data import residual_data


def test_cs_residual_df_equal_random_plot_intercept_df() -> None:
    d = residual_data("oats")
    cs = hierlm.fit("yield ~ nitro + Variety + (1 | Block)", d, residual="cs(1 | plot)")
    re = hierlm.fit("yield ~ nitro + Variety + (1 | Block) + (1 | plot)", d)
    assert cs.objective == pytest.approx(re.objective, rel=1e-9)
    a, b = cs.coef_table(), re.coef_table()
    np.testing.assert_allclose(a["df"], b["df"], rtol=1e-5)
    np.testing.assert_allclose(a["se"], b["se"], rtol=1e-6)


def _ar1_data(seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_id, k = 15, 6
    g = np.repeat(np.arange(n_id), k)
    t = np.tile(np.arange(k), n_id)
    x = rng.normal(size=n_id * k)
    w = np.repeat(rng.normal(size=n_id), k)  # a between-subject covariate
    e = np.zeros(n_id * k)
    for i in range(n_id * k):
        e[i] = rng.normal() if t[i] == 0 else 0.6 * e[i - 1] + 0.8 * rng.normal()
    sd = np.where(g % 3 == 0, 2.0, 1.0)
    y = 1 + 0.5 * x + 0.3 * w + rng.normal(size=n_id)[g] + sd * e
    return pd.DataFrame({"y": y, "x": x, "w": w, "g": g, "t": t,
                         "kind": np.where(g % 3 == 0, "b", "a")})


def _dense_dev(psi: np.ndarray, res: hierlm.FitResult, d: pd.DataFrame,
               reml: bool) -> tuple[float, np.ndarray]:
    des = res.model.design
    n_theta = len(res.theta)
    theta, sigma, rho, delta = psi[:n_theta], psi[n_theta], psi[n_theta + 1], psi[n_theta + 2:]
    n = des.nobs
    Z = np.zeros((n, des.q))
    t0 = des.terms[0]
    for j in range(t0.p):
        Z[np.arange(n), t0.codes * t0.p + j] = t0.X[:, j]
    T = templates(des, theta)[0]
    G = np.kron(np.eye(t0.n_levels), T @ T.T)
    g, t = d["g"].to_numpy(), d["t"].to_numpy()
    C = np.where(g[:, None] == g[None, :], rho ** np.abs(t[:, None] - t[None, :]), 0.0)
    s = np.exp(res.model.residual.V @ delta)
    V = sigma**2 * (Z @ G @ Z.T + s[:, None] * C * s[None, :])
    Vi = np.linalg.inv(V)
    X, y = des.X, des.y
    A = X.T @ Vi @ X
    beta = np.linalg.solve(A, X.T @ Vi @ y)
    r = y - X @ beta
    p = X.shape[1]
    dev = np.linalg.slogdet(V)[1] + r @ Vi @ r + (n - reml * p) * np.log(2 * np.pi)
    if reml:
        dev += np.linalg.slogdet(A)[1]
    else:
        dev += 0.0
    return float(dev), np.linalg.inv(A)


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_df_match_dense_finite_differences(method: str) -> None:
    d = _ar1_data()
    res = hierlm.fit("y ~ x + w + (1 | g)", d, method, residual="ar1(t | g)", sigma="~ kind")
    reml = method == "reml"
    psi = np.concatenate([res.theta, [res.sigma], res.residual_parameters.to_numpy()])
    k, h = len(psi), 1e-4
    H = np.zeros((k, k))
    for i in range(k):
        for j in range(k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            H[i, j] = (_dense_dev(psi + ei + ej, res, d, reml)[0]
                       - _dense_dev(psi + ei - ej, res, d, reml)[0]
                       - _dense_dev(psi - ei + ej, res, d, reml)[0]
                       + _dense_dev(psi - ei - ej, res, d, reml)[0]) / (4 * h * h)
    C0 = _dense_dev(psi, res, d, reml)[1]
    J = np.stack([(_dense_dev(psi + np.eye(k)[i] * h, res, d, reml)[1]
                   - _dense_dev(psi - np.eye(k)[i] * h, res, d, reml)[1]) / (2 * h)
                  for i in range(k)])
    A = 2 * np.linalg.inv(H)
    want = []
    for c in np.eye(C0.shape[0]):
        g = np.einsum("a,kab,b->k", c, J, c)
        want.append(2 * (c @ C0 @ c) ** 2 / (g @ A @ g))
    table = res.coef_table()
    np.testing.assert_allclose(table["se"] ** 2, np.diag(C0), rtol=1e-6)
    np.testing.assert_allclose(table["df"], want, rtol=2e-3)
