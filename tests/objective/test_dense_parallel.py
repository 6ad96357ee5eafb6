"""The two-thread Cholesky, triangular inverse and ``Y'Y`` against NumPy's dense results."""

from __future__ import annotations

import numpy as np
import pytest

from hierlm.objective import dense_parallel


def _spd(m: int, seed: int) -> np.ndarray:
    A = np.random.default_rng(seed).normal(size=(m, m))
    return A @ A.T + m * np.eye(m)


@pytest.mark.parametrize("m", [5, 397, 1001])
@pytest.mark.parametrize("threads", [1, 2])
def test_factor_inverse_and_gram(m: int, threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dense_parallel, "MIN_SPLIT", 64)  # several levels of splitting
    S = _spd(m, m)
    a = S.copy()
    assert dense_parallel.potrf(a, threads) == 0
    L = np.tril(a)
    np.testing.assert_allclose(L, np.linalg.cholesky(S), rtol=1e-12, atol=1e-12 * np.abs(L).max())
    assert np.array_equal(np.triu(a, 1), np.triu(S, 1))  # the other triangle is untouched
    Li = L.copy()
    assert dense_parallel.trtri(Li, threads) == 0
    np.testing.assert_allclose(np.tril(Li) @ L, np.eye(m), atol=1e-12)
    Y = np.tril(Li)
    G = Y.copy()
    assert dense_parallel.lauum(G, threads) == 0
    ref = Y.T @ Y
    np.testing.assert_allclose(np.tril(G), np.tril(ref), rtol=1e-11, atol=1e-13 * np.abs(ref).max())


@pytest.mark.parametrize("threads", [1, 2])
def test_not_positive_definite(threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dense_parallel, "MIN_SPLIT", 64)
    S = _spd(300, 1)
    S[250, 250] = -1.0  # a minor in the second half fails
    assert dense_parallel.potrf(S.copy(), threads) != 0
    S[10, 10] = -1.0  # and one in the first
    assert dense_parallel.potrf(S.copy(), threads) != 0
