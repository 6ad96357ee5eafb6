"""Random-effect draws against dense brute force."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import hierlm
from hierlm.estimate.conditional import ConditionalSampler, csr_from_triplets
from hierlm.estimate.frequentist import fit_profiled
from hierlm.objective import compile_objective
from tests.dense import dense_lambda, dense_z
from tests.objective.test_profiled import FORMULAS, random_data, random_theta


def dense_conditional(design: hierlm.design.terms.ModelDesign, theta: np.ndarray,
                      beta: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of ``u | y`` from ``(Lambda'Z'Z Lambda + I)``."""
    ZL = dense_z(design) @ dense_lambda(design, theta)
    P = ZL.T @ ZL + np.eye(design.q)
    mean = np.linalg.solve(P, ZL.T @ (design.y - design.X @ beta))
    return mean, sigma**2 * np.linalg.inv(P)


@pytest.mark.parametrize("formula", FORMULAS)
def test_mean_and_covariance_match_dense(formula: str) -> None:
    rng = np.random.default_rng(3 + len(formula))
    design = hierlm.build_design(formula, random_data(11 + len(formula)))
    cs = ConditionalSampler(compile_objective(design))
    for _ in range(2):
        theta = random_theta(design, rng)
        beta = rng.normal(size=design.p)
        sigma = float(rng.uniform(0.5, 2.0))
        mean, cov = dense_conditional(design, theta, beta, sigma)
        f = cs.factor(theta)
        got = cs.draw(f, beta, sigma, np.zeros(design.q))
        np.testing.assert_allclose(got, mean, rtol=1e-8, atol=1e-10)
        # The draw is affine in z: its linear part K gives the covariance K K' exactly.
        K = cs.draw(f, beta, sigma, np.eye(design.q)) - got[:, None]
        np.testing.assert_allclose(K @ K.T, cov, rtol=1e-8, atol=1e-10)


def test_monte_carlo_draws_of_b() -> None:
    design = hierlm.build_design("y ~ x + (1 + x | g) + (1 | h)", random_data(5, n=80))
    rng = np.random.default_rng(0)
    theta = random_theta(design, rng)
    beta, sigma = np.array([0.3, -0.2]), 1.3
    cs = ConditionalSampler(compile_objective(design))
    D = 4000
    b = cs.sample_b(np.tile(theta, (D, 1)), np.tile(beta, (D, 1)), np.full(D, sigma), rng)
    flat = np.concatenate([x.reshape(D, -1) for x in b], axis=1)
    mean_u, cov_u = dense_conditional(design, theta, beta, sigma)
    Lam = dense_lambda(design, theta)
    mean_b, cov_b = Lam @ mean_u, Lam @ cov_u @ Lam.T
    se = np.sqrt(np.diag(cov_b) / D)
    assert np.all(np.abs(flat.mean(0) - mean_b) < 5 * se + 1e-12)
    np.testing.assert_allclose(np.cov(flat, rowvar=False), cov_b, atol=0.15 * cov_b.max())


@pytest.mark.parametrize("formula", ["y ~ x + (1 + x | g)", "y ~ x + (1 | g)"])
def test_batched_one_term_draws_equal_per_draw_path(formula: str) -> None:
    """One-term models draw all posterior draws at once; the per-draw path (the compiled
    factor, checked against the dense conditional above) gives the same numbers."""
    design = hierlm.build_design(formula, random_data(4, n=90))
    cs = ConditionalSampler(compile_objective(design))
    rng = np.random.default_rng(8)
    D = 7
    theta = np.stack([random_theta(design, rng) for _ in range(D)])
    beta = rng.normal(size=(D, design.p))
    sigma = rng.uniform(0.5, 2.0, D)
    got = cs.sample_b(theta, beta, sigma, np.random.default_rng(21))
    z = np.random.default_rng(21).standard_normal((D, design.q))
    for d in range(D):
        f = cs.factor(theta[d])
        want = cs.to_b(f, cs.draw(f, beta[d], float(sigma[d]), z[d]))
        np.testing.assert_allclose(got[0][d], want[0], rtol=1e-9, atol=1e-12)


def test_mean_at_reml_is_conditional_mode() -> None:
    design = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    obj = compile_objective(design)
    res = fit_profiled(obj, reml=True)
    cs = ConditionalSampler(obj)
    f = cs.factor(res.theta)
    b = cs.to_b(f, cs.draw(f, res.fixef.to_numpy(), res.sigma, np.zeros(design.q)))
    ref = res.ranef_table
    for j, term in enumerate(design.terms[0].coef_names):
        np.testing.assert_allclose(b[0][:, j], ref[ref.term == term]["value"], rtol=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_csr_from_triplets_equals_scipys_constructor(seed):
    """The same indptr, indices and data (and dtypes) as scipy's triplet constructor,
    unique positions or repeated ones (which scipy sums)."""
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 30)), int(rng.integers(1, 30)))
    n = int(rng.integers(0, shape[0] * shape[1]))
    flat = rng.choice(shape[0] * shape[1], size=n, replace=seed % 2 == 1)
    rows, cols = flat // shape[1], flat % shape[1]
    data = rng.standard_normal(n)
    a = csr_from_triplets(data, rows, cols, shape)
    b = sp.csr_matrix((data, (rows, cols)), shape=shape)
    for x, y in ((a.indptr, b.indptr), (a.indices, b.indices), (a.data, b.data)):
        np.testing.assert_array_equal(x, y)
        assert x.dtype == y.dtype
