"""CholLogDiag against NumPy's Cholesky and central finite differences."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from hierlm.objective.chol_logdiag import chol_logdiag
from tests.objective.op_helpers import link_modes, spd, sym_fd


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("mode", link_modes())
def test_chol_logdiag_value_and_gradient(signed: bool, mode: object) -> None:
    rng = np.random.default_rng(1)
    m = 7
    S0, w0 = spd(rng, m), rng.normal(size=m) if signed else rng.uniform(0.5, 2.0, m)
    S, w = pt.matrix(), pt.vector()
    L, g = chol_logdiag(S)
    f = (g * w).sum() + (g**2).sum()
    fn = pytensor.function([S, w], [f, pytensor.grad(f, S), L], mode=mode)
    val, grad, L0 = fn(S0, w0)
    np.testing.assert_allclose(L0, np.linalg.cholesky(S0), rtol=1e-12)

    def ref(Sx: np.ndarray) -> float:
        d = np.log(np.diag(np.linalg.cholesky(Sx)))
        return float((d * w0).sum() + (d**2).sum())

    assert val == pytest.approx(ref(S0), rel=1e-12)
    np.testing.assert_allclose(grad, grad.T, atol=1e-12)
    np.testing.assert_allclose(grad, sym_fd(ref, S0), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("mode", link_modes())
def test_chol_logdiag_not_positive_definite_gives_nan(mode: object) -> None:
    S = pt.matrix()
    fn = pytensor.function([S], chol_logdiag(S)[1], mode=mode)
    assert np.all(np.isnan(fn(-spd(np.random.default_rng(2), 4))))
