"""hierlm.design.triangular: SciPy's triangular factor, to the bit."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from hierlm.design.triangular import DIRECT_MAX_P, triangular_factor


def _scipy_r(X: np.ndarray) -> np.ndarray:
    return scipy.linalg.qr(X, mode="r")[0][: X.shape[1]]


@pytest.mark.parametrize("seed", range(40))
def test_same_r_as_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, p = int(rng.integers(1, 120)), int(rng.integers(1, DIRECT_MAX_P + 6))
    X = rng.normal(size=(n, p)) * rng.lognormal(size=p) * 10.0 ** int(rng.integers(-4, 5))
    if p > 2 and seed % 3 == 0:
        X[:, 2] = X[:, 0] - 2 * X[:, 1]  # a dependent column
    if seed % 2:
        X = np.asfortranarray(X)
    want, got = _scipy_r(X), triangular_factor(X)
    assert got.shape == want.shape
    assert np.array_equal(got, want)
    assert got.flags.c_contiguous == want.flags.c_contiguous


def test_non_finite_is_scipys_error() -> None:
    X = np.array([[1.0, np.nan], [1.0, 2.0], [1.0, 3.0]])
    with pytest.raises(ValueError):
        triangular_factor(X)
