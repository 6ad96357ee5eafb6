"""The LAPACK bindings against NumPy."""

from __future__ import annotations

import numpy as np

from hierlm.objective.jit import lapack
from tests.objective.op_helpers import spd


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
