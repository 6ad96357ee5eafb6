"""The whitened criterion equals the dense marginal likelihood with residual structure.

Brute force: ``V0 = Z Lambda Lambda' Z' + S C S`` built densely, then lme4's profiled
criteria ``log|V0| + n (1 + log(2 pi r2 / n))`` (ML) and ``log|V0| + log|X'V0^-1 X| +
(n - p)(1 + log(2 pi r2 / (n - p)))`` (REML), ``r2 = min_beta (y - X beta)' V0^-1 (y -
X beta)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.linalg as sla

import hierlm
from hierlm.covariance.layout import templates
from hierlm.design.residual_design import design_with_residual
from hierlm.objective import compile_objective
from hierlm.objective.residual_gram import relative_sd, whitened_design


def _data(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(12):
        k = rng.integers(2, 7)
        visits = np.sort(rng.choice(np.arange(1, 10), size=k, replace=False))
        for v in visits:
            rows.append((i, v, v + rng.uniform(-0.3, 0.3), "ab"[i % 2], "uvw"[v % 3]))
    d = pd.DataFrame(rows, columns=["id", "visit", "time", "grp", "tri"])
    d["x"] = rng.normal(size=len(d))
    d["y"] = 1 + 0.5 * d["x"] + rng.normal(size=len(d)) + rng.normal(size=12)[d["id"]]
    return d.sample(frac=1.0, random_state=seed)  # rows not in time order


def _dense(design: hierlm.Model, rd: object, theta: np.ndarray, rho: float,
           delta: np.ndarray, d: pd.DataFrame, time: str | None, reml: bool) -> float:
    des = design
    n = des.nobs
    Z = np.zeros((n, des.q))
    col = 0
    for t in des.terms:
        for j in range(t.p):
            Z[np.arange(n), col + t.codes * t.p + j] = t.X[:, j]
        col += t.q
    Ts = templates(des, theta)
    Lam = sla.block_diag(*[np.kron(np.eye(t.n_levels), T) for t, T in zip(des.terms, Ts,
                                                                          strict=True)])
    g = rd.group
    same = g[:, None] == g[None, :]
    if rd.spec is None:
        C = np.eye(n)
    elif rd.spec.kind == "cs":
        C = np.where(same, rho, 0.0)
        np.fill_diagonal(C, 1.0)
    else:
        tt = d[time].to_numpy(dtype=float)
        C = np.where(same, rho ** np.abs(tt[:, None] - tt[None, :]), 0.0)
    s = relative_sd(rd, delta)
    V0 = Z @ Lam @ Lam.T @ Z.T + s[:, None] * C * s[None, :]
    Vi = np.linalg.inv(V0)
    X, y = des.X, des.y
    A = X.T @ Vi @ X
    beta = np.linalg.solve(A, X.T @ Vi @ y)
    r = y - X @ beta
    r2 = float(r @ Vi @ r)
    logdet = np.linalg.slogdet(V0)[1]
    p = X.shape[1]
    if reml:
        return float(logdet + np.linalg.slogdet(A)[1]
                     + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p))))
    return float(logdet + n * (1 + np.log(2 * np.pi * r2 / n)))


@pytest.mark.parametrize("residual, sigma, rho, time", [
    ("ar1(visit | id)", None, 0.6, "visit"),
    ("ar1(visit | id)", "~ grp", -0.4, "visit"),
    ("car1(time | id)", "~ grp + tri", 0.7, "time"),
    ("cs(1 | id)", None, 0.3, None),
    ("cs(1 | id)", "~ grp", -0.1, None),
    (None, "~ grp * tri", 0.0, None),
    ("car1(time | id)", "~ x", 0.5, "time"),   # glmmTMB's dispformula: a numeric column
])
@pytest.mark.parametrize("reml", [True, False])
def test_whitened_criterion_equals_dense(residual: str | None, sigma: str | None, rho: float,
                                         time: str | None, reml: bool) -> None:
    d = _data()
    des, rd = design_with_residual("y ~ x + (1 + x | id)", d, residual, sigma)
    # the design's rows are in the data's order (design_with_residual keeps it)
    frame = d.reset_index(drop=True)
    delta = np.linspace(-0.5, 0.4, rd.V.shape[1])
    theta = np.array([0.8, 0.2, 0.5])
    wd, logdet = whitened_design(des, rd, rho, delta)
    got = compile_objective(wd)(theta, reml) + logdet
    want = _dense(des, rd, theta, rho, delta, frame, time, reml)
    assert got == pytest.approx(want, rel=1e-10)
