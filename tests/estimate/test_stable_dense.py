"""The dense-QR estimates of small models against a brute-force GLS and the sparse route.

Outside checks: beta, sigma, vcov(beta) and the criterion of a dense GLS with the
``n x n`` marginal covariance (``tests.dense``), the conditional modes
``b = Lambda Lambda' Z' V^-1 (y - X beta)``, and the iterative refinement of
:mod:`hierlm.estimate.stable_pls` (a different algorithm on the same problem).
"""

from __future__ import annotations

import numpy as np
import pytest

import hierlm
from hierlm.estimate import stable_dense, stable_pls
from hierlm.objective import compile_objective
from tests.dense import dense_lambda, dense_z, marginal_cov, profiled_criterion
from tests.objective.test_profiled import FORMULAS, random_data, random_theta


def _gls(design, theta, reml):
    V = marginal_cov(design, theta)
    X, y, n, p = design.X, design.y, design.nobs, design.p
    Vi_X = np.linalg.solve(V, X)
    XVX = X.T @ Vi_X
    beta = np.linalg.solve(XVX, Vi_X.T @ y)
    r = y - X @ beta
    sigma2 = float(r @ np.linalg.solve(V, r)) / (n - p if reml else n)
    lam = dense_lambda(design, theta)
    b = lam @ lam.T @ dense_z(design).T @ np.linalg.solve(V, r)
    return beta, sigma2, sigma2 * np.linalg.inv(XVX), b


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False])
def test_dense_estimates_match_dense_gls(formula: str, reml: bool) -> None:
    design = hierlm.build_design(formula, random_data(20 + len(formula)))
    obj = compile_objective(design)
    assert stable_dense.suits_dense(obj)
    theta = random_theta(design, np.random.default_rng(len(formula)))
    L1, L_R = obj.evaluate(theta, reml)[2:]
    est, crit = stable_dense.dense_estimates(obj, theta, L1, L_R, reml)
    beta, sigma2, vcov, b = _gls(design, theta, reml)
    np.testing.assert_allclose(est.beta, beta, rtol=1e-9, atol=1e-9)
    assert est.sigma**2 == pytest.approx(sigma2, rel=1e-9)
    np.testing.assert_allclose(est.vcov, vcov, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([x.ravel() for x in est.b]), b,
                               rtol=1e-8, atol=1e-9)
    assert crit == pytest.approx(profiled_criterion(design, theta, reml), rel=1e-10)


@pytest.mark.parametrize("formula", FORMULAS[:4])
def test_dense_estimates_equal_the_sparse_refinement(formula: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = random_data(40 + len(formula)).assign(w=lambda d: 0.5 + (np.arange(len(d)) % 3))
    design = hierlm.build_design(formula, data, weights="w")
    obj = compile_objective(design)
    theta = random_theta(design, np.random.default_rng(1))
    L1, L_R = obj.evaluate(theta, True)[2:]
    dense, c_dense = stable_pls.stable_estimates(obj, theta, L1, L_R, True)
    monkeypatch.setattr(stable_pls, "suits_dense", lambda o: False)
    sparse, c_sparse = stable_pls.stable_estimates(obj, theta, L1, L_R, True)
    assert c_dense == pytest.approx(c_sparse, rel=1e-12)
    for a, b in [(dense.beta, sparse.beta), (dense.vcov, sparse.vcov),
                 *zip(dense.b, sparse.b, strict=True),
                 *zip(dense.cond_var, sparse.cond_var, strict=True)]:
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * float(np.abs(b).max()))
    assert dense.sigma == pytest.approx(sparse.sigma, rel=1e-12)


def test_many_rows_take_the_sparse_route() -> None:
    design = hierlm.build_design(FORMULAS[1], random_data(3, n=30_000))
    assert not stable_dense.suits_dense(compile_objective(design))
