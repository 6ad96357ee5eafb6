"""predict(interval=...) for fits with residual= / sigma=, against dense Henderson
equations in ``u`` (``b = Lambda u``, ``G = Lambda Lambda'``, which may be singular):
``M = [[X'R^-1X, X'R^-1Z Lambda], [Lambda'Z'R^-1X, Lambda'Z'R^-1Z Lambda + I]]`` with
``R`` the residual covariance formed densely (``n x n``), ``Var(x'beta-hat + z'b-hat -
x'beta - z'b) = [x; Lambda'z]' M^-1 [x; Lambda'z]``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import hierlm
from hierlm.covariance.layout import templates


def _data(seed: int = 11, n_id: int = 14, k: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_id), k)
    t = np.tile(np.arange(k), n_id)
    x = rng.normal(size=n_id * k)
    e = np.zeros(n_id * k)
    for i in range(n_id * k):
        e[i] = rng.normal() if t[i] == 0 else 0.6 * e[i - 1] + 0.8 * rng.normal()
    sd = np.where(g % 2 == 0, 2.0, 1.0)
    y = 2 + 0.5 * x + 0.2 * t + rng.normal(size=n_id)[g] + rng.normal(size=n_id)[g] * 0.3 * t \
        + sd * e
    return pd.DataFrame({"y": y, "x": x, "g": g.astype(str), "t": t,
                         "kind": np.where(g % 2 == 0, "b", "a")})


def _dense_c(res: hierlm.FitResult, d: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    des = res.model.design
    n = des.nobs
    term = des.terms[0]
    Z = np.zeros((n, term.q))
    for j in range(term.p):
        Z[np.arange(n), term.codes * term.p + j] = term.X[:, j]
    T = templates(des, res.theta)[0]
    Lam = res.sigma * np.kron(np.eye(term.n_levels), T)  # b = Lam u, u ~ N(0, I)
    G = Lam @ Lam.T
    par = res.residual_parameters
    same = d["g"].to_numpy()[:, None] == d["g"].to_numpy()[None, :]
    t = d["t"].to_numpy(float)
    C = np.where(same, par["rho"] ** np.abs(t[:, None] - t[None, :]), 0.0)
    s = res.residual_sd().to_numpy()
    Ri = np.linalg.inv(s[:, None] * C * s[None, :])
    X = des.X
    ZL = Z @ Lam
    M = np.block([[X.T @ Ri @ X, X.T @ Ri @ ZL], [ZL.T @ Ri @ X, ZL.T @ Ri @ ZL + np.eye(des.q)]])
    # Var([beta-hat - beta; u-hat - u]); z'(b-hat - b) = (Lam'z)'(u-hat - u); mapped back
    # to [beta; b] so that Var([x; z]'[beta-hat - beta; b-hat - b]) = [x; z]' C [x; z]
    p = X.shape[1]
    Tm = np.zeros((p + des.q, p + des.q))
    Tm[:p, :p] = np.eye(p)
    Tm[p:, p:] = Lam
    return Tm @ np.linalg.inv(M) @ Tm.T, G


@pytest.fixture(scope="module")
def fit() -> tuple[hierlm.FitResult, pd.DataFrame]:
    d = _data()
    return hierlm.fit("y ~ x + t + (t | g)", d, residual="ar1(t | g)", sigma="~ kind"), d


def test_confidence_interval_of_fitted_rows_matches_dense(fit) -> None:
    res, d = fit
    C, _ = _dense_c(res, d)
    des = res.model.design
    Z = np.zeros((des.nobs, des.q))
    term = des.terms[0]
    for j in range(term.p):
        Z[np.arange(des.nobs), term.codes * term.p + j] = term.X[:, j]
    W = np.hstack([des.X, Z])
    var = np.einsum("ij,jk,ik->i", W, C, W)
    out = res.predict(interval="confidence", level=0.9)
    half = scipy.stats.norm.ppf(0.95) * np.sqrt(var)
    np.testing.assert_allclose(out["fit"], res.fitted(), rtol=1e-10)
    np.testing.assert_allclose(out["upper"] - out["fit"], half, rtol=1e-6)
    # population level: x' vcov x, the dense (X'V^-1 X)^-1 block of C
    pop = res.predict(re_form="NA", interval="confidence")
    vx = np.einsum("ij,jk,ik->i", des.X, C[:3, :3], des.X)
    np.testing.assert_allclose(pop["upper"] - pop["fit"], scipy.stats.norm.ppf(0.975)
                               * np.sqrt(vx), rtol=1e-6)


def test_prediction_interval_adds_the_rows_own_residual_sd(fit) -> None:
    res, d = fit
    C, G = _dense_c(res, d)
    new = pd.DataFrame({"x": [0.3, -1.0, 0.5], "t": [2, 4, 7], "g": ["0", "new", "new"],
                        "kind": ["b", "a", "b"]})
    out = res.predict(new, allow_new_levels=True, interval="prediction")
    sd = res.sigma * np.exp(np.array([1.0, 0.0, 1.0])
                            * res.residual_parameters["log_sd_ratio:kindb"])
    z = np.column_stack([np.ones(3), new["t"]])
    Sig = G[:2, :2]
    w = np.zeros((3, C.shape[0]))
    w[:, :3] = np.column_stack([np.ones(3), new["x"], new["t"]])
    w[0, 3:5] = z[0]  # subject "0": its random effects are conditioned on
    var = np.einsum("ij,jk,ik->i", w, C, w) + sd**2
    var[1:] += np.einsum("ij,jk,ik->i", z[1:], Sig, z[1:])  # a new subject's
    np.testing.assert_allclose(out["upper"] - out["fit"],
                               scipy.stats.norm.ppf(0.975) * np.sqrt(var), rtol=1e-6)
    # the SD of the row's own variance group: kind b's rows are wider
    assert (out["upper"] - out["lower"]).iloc[2] > (out["upper"] - out["lower"]).iloc[1]

