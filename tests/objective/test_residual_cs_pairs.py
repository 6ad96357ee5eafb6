"""The rows' and row pairs' matrices of a cs design give the whitened Gram matrix:
against a dense Cholesky of ``R0`` and the row-by-row whitened criterion."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from hierlm.design.residual_design import design_with_residual
from hierlm.objective import compile_objective
from hierlm.objective.residual_classes import _columns
from hierlm.objective.residual_cs_pairs import cs_pair_gram
from hierlm.objective.residual_gram import relative_sd, whitened_design
from tests.objective.test_residual_classes import _many_classes_data


@pytest.mark.parametrize("sigma, rho", [("~ z", 0.3), ("~ z + grp", -0.15), (None, 0.6)])
def test_pairs_equal_dense_cholesky_and_row_whitening(sigma: str | None, rho: float) -> None:
    des, rd = design_with_residual("y ~ x + (1 + x | id)", _many_classes_data(),
                                   "cs(1 | id)", sigma)
    cg = cs_pair_gram(des, rd)
    assert cg is not None
    delta = np.linspace(-0.4, 0.5, rd.V.shape[1])
    w, logdet = cg.weights(rho, delta)
    values = cg.D.T @ w
    M = _columns(des)[0].toarray()
    s = relative_sd(rd, delta)
    same = rd.group[:, None] == rd.group[None, :]
    R0 = s[:, None] * (np.where(same, rho, 0.0) + (1 - rho) * np.eye(len(s))) * s[None, :]
    L = np.linalg.cholesky(R0)
    W = scipy.linalg.solve_triangular(L, M, lower=True)
    G = W.T @ W
    row, col = cg.layout.entries
    np.testing.assert_allclose(values, G[row, col], rtol=1e-10, atol=1e-10 * np.abs(G).max())
    assert logdet == pytest.approx(2 * np.log(np.diag(L)).sum(), rel=1e-12)
    theta = np.array([0.8, 0.2, 0.5])
    gram, _ = cg.gram(rho, delta)
    wd, logdet_rows = whitened_design(des, rd, rho, delta)
    for reml in (True, False):
        assert (compile_objective(des, gram)(theta, reml) + logdet == pytest.approx(
            compile_objective(wd)(theta, reml) + logdet_rows, rel=1e-11))


def test_not_taken() -> None:
    d = _many_classes_data()
    des, rd = design_with_residual("y ~ x + (1 | id)", d, "ar1(visit | id)", None)
    assert cs_pair_gram(des, rd) is None
    d["w"] = np.linspace(1.0, 2.0, len(d))
    des, rd = design_with_residual("y ~ x + (1 | id)", d, "cs(1 | id)", None, weights="w")
    assert cs_pair_gram(des, rd) is None
