"""Kenward-Roger's V^-k products from one Cholesky factor, against dense n x n inverses."""

from __future__ import annotations

import numpy as np
import pytest

from hierlm.inference.kr_products import level_gram, v_products, v_products_one_term


def _brute(Z, X, lam, s2):
    n = Z.shape[0]
    K = Z @ lam
    Vi = np.linalg.inv(s2 * (np.eye(n) + K @ K.T))
    V2, V3 = Vi @ Vi, Vi @ Vi @ Vi
    return {"ZVZ": Z.T @ Vi @ Z, "ZVX": Z.T @ Vi @ X, "ZV2Z": Z.T @ V2 @ Z,
            "ZV2X": Z.T @ V2 @ X, "XV2X": X.T @ V2 @ X, "XV3X": X.T @ V3 @ X,
            "trV2": np.trace(V2)}


def _check(vp, ref):
    for name, want in ref.items():
        got = getattr(vp, name)
        scale = np.max(np.abs(want))
        assert np.max(np.abs(np.asarray(got) - want)) <= 1e-10 * scale, name


def test_crossed_terms_dense():
    # (1 + x | g) + (1 | h): Z'Z not block diagonal, templates with a correlation
    rng = np.random.default_rng(3)
    n, lg, lh = 120, 7, 5
    g, h = rng.integers(0, lg, n), rng.integers(0, lh, n)
    x = rng.normal(size=n)
    X = np.column_stack([np.ones(n), x, rng.normal(size=n)])
    Zg = np.zeros((n, 2 * lg))
    Zg[np.arange(n), 2 * g], Zg[np.arange(n), 2 * g + 1] = 1.0, x
    Zh = np.zeros((n, lh))
    Zh[np.arange(n), h] = 1.0
    Z = np.hstack([Zg, Zh])
    T = np.array([[0.8, 0.0], [-0.4, 0.3]])
    lam = np.zeros((Z.shape[1], Z.shape[1]))
    lam[:2 * lg, :2 * lg] = np.kron(np.eye(lg), T)
    lam[2 * lg:, 2 * lg:] = 1.7 * np.eye(lh)
    K = Z @ lam
    s2 = 0.7
    vp = v_products(Z.T @ Z, Z.T @ X, X.T @ X, K.T @ Z, K.T @ X, K.T @ K, s2, n)
    _check(vp, _brute(Z, X, lam, s2))


@pytest.mark.parametrize("p", [1, 2, 3])
def test_one_term_level_by_level(p):
    rng = np.random.default_rng(p)
    n, levels = 90, 11
    g = rng.integers(0, levels, n)
    cov = rng.normal(size=(n, p - 1))
    X = np.column_stack([np.ones(n), cov, rng.normal(size=n)]) if p > 1 else \
        np.column_stack([np.ones(n), rng.normal(size=n)])
    Z = np.zeros((n, levels * p))
    Z[np.arange(n), p * g] = 1.0
    for j in range(1, p):
        Z[np.arange(n), p * g + j] = cov[:, j - 1]
    T = np.tril(rng.normal(size=(p, p))) + 2 * np.eye(p)
    lam = np.kron(np.eye(levels), T)
    s2 = 1.3
    vp = v_products_one_term(Z.T @ Z, Z.T @ X, X.T @ X, T, s2, n)
    _check(vp, _brute(Z, X, lam, s2))


def test_singular_template_one_term():
    # a zero variance (T = 0): V = sigma^2 I, every product is the plain Gram matrix
    rng = np.random.default_rng(0)
    n, levels = 40, 6
    g = rng.integers(0, levels, n)
    Z = np.zeros((n, levels))
    Z[np.arange(n), g] = 1.0
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    vp = v_products_one_term(Z.T @ Z, Z.T @ X, X.T @ X, np.zeros((1, 1)), 2.0, n)
    _check(vp, _brute(Z, X, np.zeros((levels, levels)), 2.0))


def test_level_gram_matches_the_sparse_products():
    # per-level blocks of Z'Z and Z'X against the sparse term matrix's dense products
    rng = np.random.default_rng(7)
    n, levels, p = 200, 13, 3
    codes = rng.integers(0, levels, n)
    Xz, X = rng.normal(size=(n, p)), rng.normal(size=(n, 4))
    Z = np.zeros((n, levels * p))
    for j in range(p):
        Z[np.arange(n), p * codes + j] = Xz[:, j]
    A, B = level_gram(codes, Xz, X, levels)
    idx = np.arange(levels)[:, None] * p + np.arange(p)[None, :]
    ZZ = Z.T @ Z
    np.testing.assert_allclose(A, ZZ[idx[:, :, None], idx[:, None, :]], rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(B.reshape(-1, 4), Z.T @ X, rtol=1e-13, atol=1e-12)
    off = ZZ.copy()
    off[idx[:, :, None], idx[:, None, :]] = 0.0
    assert not off.any()  # one term: Z'Z is block diagonal


def _data(seed=5, n=300, levels=30):
    import pandas as pd

    rng = np.random.default_rng(seed)
    g = rng.integers(0, levels, n)
    x, z = rng.normal(size=n), rng.normal(size=n)
    b = rng.normal(size=(levels, 3)) * [1.0, 0.5, 0.3]
    y = 1 + 0.5 * x + b[g, 0] + b[g, 1] * x + b[g, 2] * z + rng.normal(size=n)
    f = np.array(["a", "b", "c"])[rng.integers(0, 3, n)]
    return pd.DataFrame({"y": y, "x": x, "z": z, "f": f, "g": g.astype(str),
                         "w": 0.5 + rng.random(n)})


def _assert_same(fast, dense, nfix):
    np.testing.assert_allclose(fast.phi_adj, dense.phi_adj, rtol=1e-10, atol=0)
    np.testing.assert_allclose(fast.W, dense.W, rtol=1e-9, atol=1e-14 * np.abs(dense.W).max())
    L = np.eye(nfix)
    assert fast.ddf(L) == pytest.approx(dense.ddf(L), rel=1e-10)
    for j in range(nfix):
        assert fast.ddf(L[j:j + 1]) == pytest.approx(dense.ddf(L[j:j + 1]), rel=1e-10)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | g)", "y ~ x + (1 + x | g)",
                                     "y ~ x + (1 + x + z | g)", "y ~ x + cs(0 + f | g)"])
@pytest.mark.parametrize("weighted", [False, True])
def test_one_term_levels_match_the_dense_path(formula, weighted):
    # Kenward-Roger's P, Q, K level by level (no q x q array) against the dense path:
    # q x q Z'Z, one Cholesky factor of Lambda'Z'Z Lambda + I, the permutation loop
    import warnings

    import hierlm
    from hierlm.inference import kenward_roger

    data = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit(formula, data, weights=data["w"] if weighted else None)
    fast = kenward_roger._kr_info(res)
    dense = kenward_roger._kr_info(res, levels=False)
    _assert_same(fast, dense, res.fixef.size)
