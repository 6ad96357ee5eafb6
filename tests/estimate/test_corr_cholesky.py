"""CorrCholesky against PyMC's CholeskyCorrTransform and central finite differences."""

from __future__ import annotations

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pymc.distributions.transforms import CholeskyCorrTransform

from hierlm.estimate.corr_cholesky import corr_cholesky, fused_cholesky_corr


@pytest.mark.parametrize("n", [2, 3, 4])
def test_matches_pymc_transform_and_jacobian(n: int) -> None:
    rng = np.random.default_rng(n)
    z0 = rng.normal(size=n * (n - 1) // 2)
    z = pt.vector()
    ref = CholeskyCorrTransform(n)
    fused = fused_cholesky_corr(n)
    fn = pytensor.function([z], [fused.backward(z), ref.backward(z),
                                 fused.log_jac_det(z), ref.log_jac_det(z)])
    L, L_ref, jac, jac_ref = fn(z0)
    np.testing.assert_allclose(L, L_ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(L @ L.T, L_ref @ L_ref.T, rtol=1e-13)
    np.testing.assert_allclose(np.diag(L @ L.T), 1.0, rtol=1e-13)
    assert float(jac) == pytest.approx(float(jac_ref), rel=1e-12)
    # the forward map (PyMC's) inverts the fused backward map
    back = pytensor.function([z], fused.forward(fused.backward(z)))(z0)
    np.testing.assert_allclose(back, z0, rtol=1e-10)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_gradient_matches_finite_differences(n: int) -> None:
    rng = np.random.default_rng(10 + n)
    k = n * (n - 1) // 2
    z0, W = rng.normal(size=k), rng.normal(size=(n, n))
    z = pt.vector()
    f = (corr_cholesky(z, n) * W).sum() + fused_cholesky_corr(n).log_jac_det(z)
    fn = pytensor.function([z], [f, pytensor.grad(f, z)])
    _, grad = fn(z0)
    h = 1e-6
    fd = np.array([(fn(z0 + h * e)[0] - fn(z0 - h * e)[0]) / (2 * h) for e in np.eye(k)])
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)
