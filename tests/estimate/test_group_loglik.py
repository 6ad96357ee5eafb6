"""Per-group marginal likelihoods against dense brute force (both computation paths)."""

from __future__ import annotations

import numpy as np
import pytest

import hierlm
from hierlm.estimate.group_loglik import group_loglik, split_factor
from tests.dense import marginal_cov, neg2_loglik
from tests.objective.test_profiled import random_data, random_theta


@pytest.mark.parametrize(("formula", "expected"), [
    ("y ~ x + (1 + x | g)", "g"),
    ("y ~ x + (1 + x || g)", "g"),
    ("y ~ x + (1 | g/k)", "g"),
    ("y ~ x + (1 | g) + (1 | h)", None),
])
def test_split_factor(formula: str, expected: str | None) -> None:
    design = hierlm.build_design(formula, random_data(2))
    s = split_factor(design)
    assert (None if s is None else design.terms[s].group) == expected


@pytest.mark.parametrize("formula", ["y ~ x + (1 + x | g)", "y ~ 1 + (1 | g/k)",
                                     "y ~ x + (1 + x || g) + (1 | k:g)",
                                     "y ~ x + (1 + x || g)", "y ~ 0 + x + (1 | g)"])
def test_group_loglik_matches_dense(formula: str) -> None:
    rng = np.random.default_rng(9)
    design = hierlm.build_design(formula, random_data(4, n=70))
    split = split_factor(design)
    assert split is not None
    D = 3
    thetas = np.stack([random_theta(design, rng) for _ in range(D)])
    betas = rng.normal(size=(D, design.p))
    sigmas = rng.uniform(0.5, 2.0, size=D)
    ll = group_loglik(design, split, thetas, betas, sigmas, max_block=200)
    # one draw per batch: the same numbers
    np.testing.assert_allclose(group_loglik(design, split, thetas, betas, sigmas, max_block=1),
                               ll, rtol=1e-12)
    codes = design.terms[split].codes
    for d in range(D):
        total = -0.5 * neg2_loglik(design, thetas[d], betas[d], sigmas[d])
        assert ll[d].sum() == pytest.approx(total, rel=1e-10)
        V = sigmas[d] ** 2 * marginal_cov(design, thetas[d])
        for g in range(design.terms[split].n_levels):
            rows = codes == g
            r = design.y[rows] - design.X[rows] @ betas[d]
            Vg = V[np.ix_(rows, rows)]
            expected = -0.5 * (rows.sum() * np.log(2 * np.pi) + np.linalg.slogdet(Vg)[1]
                               + r @ np.linalg.solve(Vg, r))
            assert ll[d, g] == pytest.approx(expected, rel=1e-10)
