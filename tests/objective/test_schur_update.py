"""SchurUpdate against the dense product and central finite differences."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from hierlm.objective.schur_update import schur_update
from tests.objective.op_helpers import link_modes, sym_fd


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
@pytest.mark.parametrize("mode", link_modes())
def test_schur_update_matches_dense_product_and_differences(p1: int, mode: object) -> None:
    rng = np.random.default_rng(3 + p1)
    l1, m, nnz = 6, 9, 25
    pattern = random_pattern(rng, l1, m, nnz)
    row, level = pattern[0], pattern[1]
    val = rng.normal(size=(len(row), p1))
    W, C = pt.tensor3(), pt.matrix()
    U = schur_update(W, pt.as_tensor(val), *[pt.as_tensor(x.astype(np.int64)) for x in pattern])
    fn = pytensor.function([W, C], [U, pytensor.grad((U * C).sum(), W)], mode=mode)
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
