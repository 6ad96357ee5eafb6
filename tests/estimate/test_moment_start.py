"""The moment (MINQUE(0)) start against a dense brute-force computation and a simulation.

The brute force builds ``M = I - X (X'X)^{-1} X'`` and ``Q_j = Z_j Z_j'`` as dense
``n x n`` matrices and solves ``sum_j tr(M Q_i M Q_j) sigma_j^2 = y'M Q_i M y``
directly; :func:`moment_theta` reads the same numbers off the Gram blocks.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.estimate.moment_start import moment_theta
from hierlm.objective.gram import compute_gram


def _crossed(rng: np.random.Generator, n: int, sd: tuple[float, float, float]) -> pd.DataFrame:
    g = rng.integers(0, 17, n)
    h = rng.integers(0, 6, n)
    k = g % 5  # nested-like third factor: shares information with g
    x = rng.normal(size=n)
    w = rng.normal(size=n)
    y = (1.0 + 0.5 * x + rng.normal(size=17)[g] * sd[0] + rng.normal(size=6)[h] * sd[1]
         + rng.normal(size=5)[k] * x * sd[2] + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "w": w, "g": g.astype(str), "h": h.astype(str),
                         "k": k.astype(str)})


def _brute_force(design: hierlm.design.terms.ModelDesign) -> np.ndarray:
    X, y, n = design.X, design.y, design.nobs
    M = np.eye(n) - X @ np.linalg.solve(X.T @ X, X.T)
    Qs = []
    for t in design.terms:
        Z = np.zeros((n, t.n_levels))
        Z[np.arange(n), t.codes] = t.X[:, 0]
        Qs.append(Z @ Z.T)
    Qs.append(np.eye(n))
    MQ = [M @ Q @ M for Q in Qs]
    H = np.array([[np.sum(a * b.T) for b in Qs] for a in MQ])
    u = np.array([y @ a @ y for a in MQ])
    s = np.linalg.solve(H, u)
    return np.sqrt(np.maximum(s[:-1], 0.0) / s[-1])


@pytest.mark.parametrize("formula", [
    "y ~ x + (1 | g) + (1 | h)",
    "y ~ x + w + (1 | g) + (1 | h) + (0 + x | k)",
    "y ~ 1 + (1 | h) + (0 + x | g)",
])
def test_moment_theta_matches_dense_brute_force(formula: str) -> None:
    data = _crossed(np.random.default_rng(11), 240, (0.8, 0.5, 0.3))
    design = hierlm.build_design(formula, data)
    np.testing.assert_allclose(moment_theta(design, compute_gram(design)),
                               _brute_force(design), rtol=1e-9)


def test_moment_theta_recovers_known_truth() -> None:
    """Unbiased moments: on a large simulated design the start is near the truth."""
    rng = np.random.default_rng(5)
    n, ng, nh = 60_000, 2_000, 300
    g, h = rng.integers(0, ng, n), rng.integers(0, nh, n)
    y = 2.0 + 0.6 * rng.normal(size=ng)[g] + 0.3 * rng.normal(size=nh)[h] + rng.normal(size=n)
    data = pd.DataFrame({"y": y, "g": g, "h": h})
    design = hierlm.build_design("y ~ 1 + (1 | g) + (1 | h)", data)
    np.testing.assert_allclose(moment_theta(design, compute_gram(design)), [0.6, 0.3],
                               rtol=0.1)


def test_moment_theta_declines_vector_terms() -> None:
    d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    assert moment_theta(d, compute_gram(d)) is None


def test_moment_theta_declines_terms_it_cannot_tell_apart() -> None:
    data = _crossed(np.random.default_rng(3), 240, (0.8, 0.5, 0.3))
    d = hierlm.build_design("y ~ x + (1 | g) + (1 | g2)", data.assign(g2=data["g"]))
    assert moment_theta(d, compute_gram(d)) is None


def test_moment_theta_does_not_depend_on_the_blocks_shift() -> None:
    """Blocks centred by any ``a`` (chunked data sum them so) give the same start."""
    import dataclasses

    data = _crossed(np.random.default_rng(2), 240, (0.8, 0.5, 0.3))
    design = hierlm.build_design("y ~ x + (1 | g) + (1 | h)", data)
    gram = compute_gram(design)
    # the same blocks, but of y - X (a + shift) instead of the least-squares residual
    a = np.array([0.7, -0.4])
    qr, p = gram.q_rest, gram.p
    XtX = gram.A_RR[qr:qr + p, qr:qr + p]
    A = gram.A_RR.copy()
    A[:, -1] = gram.A_RR[:, -1] - gram.A_RR[:, qr:qr + p] @ a
    A[-1, :] = A[:, -1]
    A[-1, -1] = gram.A_RR[-1, -1] + a @ XtX @ a  # X'e = 0 for the least-squares e
    nz_val = gram.nz_val.copy()
    y_row = gram.nz_row == gram.m - 1
    x_nz = {r: gram.nz_row == r for r in range(qr, qr + p)}
    for k in range(gram.A11.shape[0]):
        sel = gram.nz_level == k
        shift = sum(a[r - qr] * nz_val[sel & x_nz[r], 0].sum() for r in range(qr, qr + p))
        nz_val[sel & y_row, 0] -= shift
    moved = dataclasses.replace(gram, A_RR=A, nz_val=nz_val)
    np.testing.assert_allclose(moment_theta(design, moved), moment_theta(design, gram),
                               rtol=1e-9)
    np.testing.assert_allclose(moment_theta(design, gram), _brute_force(design), rtol=1e-9)


def _large(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(100 + seed)
    n, ng, nh, nk = 12_000, 400, 30, 6
    g, h, k = rng.integers(0, ng, n), rng.integers(0, nh, n), rng.integers(0, nk, n)
    x = rng.normal(size=n)
    sd = rng.choice([0.0, 0.0, 0.05, 0.3, 1.0], size=3)
    y = (0.5 * x + sd[0] * rng.normal(size=ng)[g] + sd[1] * rng.normal(size=nh)[h]
         + sd[2] * rng.normal(size=nk)[k] * x + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "h": [f"h{i}" for i in h],
                         "k": [f"k{i}" for i in k]})


@pytest.mark.parametrize("seed", range(5))
def test_default_fit_from_the_moment_start_reaches_best_of_starts(seed: int) -> None:
    """Above 10,000 rows the fit starts from the moment estimate (and runs in the units of
    its curvature): its criterion is the lowest that random starts find, and a boundary
    optimum is still flagged singular."""
    import warnings

    from hierlm.estimate.moment_start import MOMENT_START_MIN_NOBS
    from hierlm.estimate.optimize import theta_scale

    data = _large(seed)
    model = hierlm.Model("y ~ x + (1 | g) + (1 | h) + (0 + x | k)", data)
    assert model.design.nobs > MOMENT_START_MIN_NOBS
    moment = moment_theta(model.design, model.objective.gram)
    assert moment is not None
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in ("reml", "ml"):
            res = model.fit(method)
            start = np.maximum(moment / theta_scale(model.design), 0.05) * theta_scale(
                model.design)
            np.testing.assert_allclose(res.optimizer["trace"][0][:-1], start)
            others = [model.fit(method, start=rng.uniform(0.05, 2.0, size=3)) for _ in range(4)]
            best = min(others, key=lambda r: r.objective)
            assert res.objective <= best.objective + 1e-6 * abs(best.objective)
            assert res.converged
            if best.is_singular and best.objective <= res.objective + 1e-6:
                assert res.is_singular
