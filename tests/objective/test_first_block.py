"""FirstBlock against NumPy's Cholesky and inverse, and central finite differences."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from hierlm.objective.first_block import first_block
from tests.objective.op_helpers import link_modes


def _reference(T: np.ndarray, A: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    M = np.einsum("ai,kab,bj->kij", T, A, T) + np.eye(T.shape[0])
    W = np.stack([T @ np.linalg.inv(Mk) @ T.T for Mk in M])
    return np.linalg.cholesky(M), float(np.linalg.slogdet(M)[1].sum()), W


def _problem(p: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(5, 4, p))
    A = np.einsum("kia,kib->kab", Z, Z)  # (5 levels, p, p), positive semi-definite
    A[2] = 0.0  # a level with no observations
    T = np.tril(rng.normal(size=(p, p))) + np.eye(p)
    return T, A, rng.normal(size=(5, p, p)), float(rng.normal())


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("mode", link_modes())
def test_first_block_values_and_gradient(p: int, mode: object) -> None:
    T0, A0, R0, c0 = _problem(p, p)
    T, A = pt.matrix(), pt.tensor3()
    L, logdet, W = first_block(T, A)
    f = c0 * logdet + (W * R0).sum()
    fn = pytensor.function([T, A], [L, logdet, W, f, pytensor.grad(f, T)], mode=mode)
    L1, ld1, W1, val, grad = fn(T0, A0)
    L_ref, ld_ref, W_ref = _reference(T0, A0)
    np.testing.assert_allclose(L1, L_ref, rtol=1e-12, atol=1e-14)
    assert float(ld1) == pytest.approx(ld_ref, rel=1e-12)
    np.testing.assert_allclose(W1, W_ref, rtol=1e-10, atol=1e-14)

    def ref(Tx: np.ndarray) -> float:
        _, ld, Wx = _reference(Tx, A0)
        return c0 * ld + float((Wx * R0).sum())

    assert float(val) == pytest.approx(ref(T0), rel=1e-12)
    h = 1e-6
    fd = np.zeros((p, p))
    for i in range(p):
        for j in range(p):
            e = np.zeros((p, p))
            e[i, j] = h
            fd[i, j] = (ref(T0 + e) - ref(T0 - e)) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", link_modes())
def test_first_block_gradient_of_logdet_alone(mode: object) -> None:
    T0, A0, _, _ = _problem(2, 7)
    T, A = pt.matrix(), pt.tensor3()
    _, logdet, _ = first_block(T, A)
    grad = pytensor.function([T, A], pytensor.grad(logdet, T), mode=mode)(T0, A0)
    M = np.einsum("ai,kab,bj->kij", T0, A0, T0) + np.eye(2)
    expected = sum(2 * Ak @ T0 @ np.linalg.inv(Mk) for Ak, Mk in zip(A0, M, strict=True))
    np.testing.assert_allclose(grad, expected, rtol=1e-12)


def test_factors_have_no_gradient() -> None:
    T, A = pt.matrix(), pt.tensor3()
    L, _, _ = first_block(T, A)
    with pytest.raises(NotImplementedError, match="no gradient"):
        pytensor.grad(L.sum(), T)
