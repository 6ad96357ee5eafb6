"""The custom Ops against dense NumPy and central finite differences."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from hierlm.objective import lapack
from hierlm.objective.chol_logdiag import chol_logdiag
from hierlm.objective.schur_update import schur_update


def spd(rng: np.random.Generator, m: int) -> np.ndarray:
    A = rng.normal(size=(m, m))
    return A @ A.T + np.eye(m)


def test_lapack_bindings_match_numpy() -> None:
    S = spd(np.random.default_rng(0), 6)
    L = S.copy()
    assert lapack.potrf_lower(L) == 0
    np.testing.assert_allclose(L, np.linalg.cholesky(S), rtol=1e-12)
    X = L.copy()
    assert lapack.trtri_lower(X) == 0
    np.testing.assert_allclose(X, np.linalg.inv(L), rtol=1e-10, atol=1e-12)
    Y = X.copy()
    assert lapack.lauum_lower(Y) == 0
    np.testing.assert_allclose(np.tril(Y), np.tril(X.T @ X), rtol=1e-10, atol=1e-12)
    assert lapack.potrf_lower(-S) > 0


def sym_fd(f, X: np.ndarray, h: float = 1e-6) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Central differences of f along symmetric perturbations ``E_ij + E_ji``, halved."""
    out = np.zeros_like(X)
    for idx in np.ndindex(*X.shape):
        E = np.zeros_like(X)
        E[idx] += h / 2
        E[idx[:-2] + (idx[-1], idx[-2])] += h / 2
        out[idx] = (f(X + E) - f(X - E)) / (2 * h)
    return out


@pytest.mark.parametrize("signed", [False, True])
def test_chol_logdiag_value_and_gradient(signed: bool) -> None:
    rng = np.random.default_rng(1)
    m = 7
    S0, w0 = spd(rng, m), rng.normal(size=m) if signed else rng.uniform(0.5, 2.0, m)
    S, w = pt.matrix(), pt.vector()
    L, g = chol_logdiag(S)
    f = (g * w).sum() + (g**2).sum()
    fn = pytensor.function([S, w], [f, pytensor.grad(f, S), L])
    val, grad, L0 = fn(S0, w0)
    np.testing.assert_allclose(L0, np.linalg.cholesky(S0), rtol=1e-12)

    def ref(Sx: np.ndarray) -> float:
        d = np.log(np.diag(np.linalg.cholesky(Sx)))
        return float((d * w0).sum() + (d**2).sum())

    assert val == pytest.approx(ref(S0), rel=1e-12)
    np.testing.assert_allclose(grad, grad.T, atol=1e-12)
    np.testing.assert_allclose(grad, sym_fd(ref, S0), rtol=1e-6, atol=1e-8)


def test_chol_logdiag_not_positive_definite_gives_nan() -> None:
    S = pt.matrix()
    fn = pytensor.function([S], chol_logdiag(S)[1])
    assert np.all(np.isnan(fn(-spd(np.random.default_rng(2), 4))))


def random_pattern(rng: np.random.Generator, l1: int, m: int, nnz: int) -> tuple:
    level = np.sort(rng.integers(0, l1, nnz))
    counts = np.bincount(level, minlength=l1)
    counts = np.minimum(counts, m)
    level = np.repeat(np.arange(l1), counts)
    row = np.concatenate([np.sort(rng.choice(m, size=c, replace=False)) for c in counts])
    level_ptr = np.concatenate([[0], np.cumsum(counts)])
    order = np.argsort(row, kind="stable")
    row_ptr = np.concatenate([[0], np.cumsum(np.bincount(row, minlength=m))])
    return row, level, level_ptr, order, row_ptr


@pytest.mark.parametrize("p1", [1, 2, 3])
def test_schur_update_matches_dense_product_and_differences(p1: int) -> None:
    rng = np.random.default_rng(3 + p1)
    l1, m, nnz = 6, 9, 25
    pattern = random_pattern(rng, l1, m, nnz)
    row, level = pattern[0], pattern[1]
    val = rng.normal(size=(len(row), p1))
    W, C = pt.tensor3(), pt.matrix()
    U = schur_update(W, pt.as_tensor(val), *[pt.as_tensor(x.astype(np.int64)) for x in pattern])
    fn = pytensor.function([W, C], [U, pytensor.grad((U * C).sum(), W)])
    B = rng.normal(size=(l1, p1, p1))
    W0 = B @ B.transpose(0, 2, 1)
    C0 = rng.normal(size=(m, m))
    U0, gW = fn(W0, C0)

    A = np.zeros((m, l1 * p1))
    for a in range(len(row)):
        A[row[a], level[a] * p1:(level[a] + 1) * p1] = val[a]
    Wd = np.zeros((l1 * p1, l1 * p1))
    for k in range(l1):
        Wd[k * p1:(k + 1) * p1, k * p1:(k + 1) * p1] = W0[k]
    np.testing.assert_allclose(U0, A @ Wd @ A.T, rtol=1e-12, atol=1e-12)

    def f(Wx: np.ndarray) -> float:
        return float((fn(Wx, C0)[0] * C0).sum())

    np.testing.assert_allclose(gW, gW.transpose(0, 2, 1), atol=1e-12)
    np.testing.assert_allclose(gW, sym_fd(f, W0), rtol=1e-6, atol=1e-7)
