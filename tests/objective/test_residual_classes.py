"""The class Gram matrices give the row-by-row whitened criterion (itself checked
against a dense brute force in test_residual_gram.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from hierlm.design.residual_design import design_with_residual
from hierlm.objective import compile_objective
from hierlm.objective.gram import term_matrix
from hierlm.objective.residual_classes import MAX_CLASSES, class_gram
from hierlm.objective.residual_gram import relative_sd, whiten, whitened_design
from tests.objective.test_residual_gram import _data


@pytest.mark.parametrize("residual, sigma, rho", [
    ("ar1(visit | id)", None, 0.6),
    ("ar1(visit | id)", "~ grp", -0.4),      # gaps and a factor varying between subjects
    ("ar1(visit | id)", "~ tri", 0.3),       # a factor varying within subjects
    (None, "~ grp * tri", 0.0),
    ("car1(time | id)", "~ grp", 0.7),       # real times: one class per distinct gap
])
@pytest.mark.parametrize("reml", [True, False])
def test_class_gram_equals_row_whitening(residual: str | None, sigma: str | None, rho: float,
                                         reml: bool) -> None:
    d = _data()
    des, rd = design_with_residual("y ~ x + (1 + x | id)", d, residual, sigma)
    cg = class_gram(des, rd)
    assert cg is not None
    delta = np.linspace(-0.5, 0.4, rd.V.shape[1])
    theta = np.array([0.8, 0.2, 0.5])
    gram, logdet = cg.gram(rho, delta)
    wd, logdet_rows = whitened_design(des, rd, rho, delta)
    assert logdet == pytest.approx(logdet_rows, rel=1e-12, abs=1e-12)
    got = compile_objective(des, gram)(theta, reml) + logdet
    want = compile_objective(wd)(theta, reml) + logdet_rows
    assert got == pytest.approx(want, rel=1e-11)


def test_row_path_where_classes_do_not_apply() -> None:
    d = _data()
    des, rd = design_with_residual("y ~ x + (1 | id)", d, "cs(1 | id)", None)
    assert class_gram(des, rd) is None
    w = pd.Series(np.linspace(1, 2, len(d)), index=d.index)
    des, rd = design_with_residual("y ~ x + (1 | id)", d.assign(w=w), "ar1(visit | id)",
                                   None, weights="w")
    assert class_gram(des, rd) is None


def _many_classes_data(seed: int = 5) -> pd.DataFrame:
    """Real-valued times (one class per distinct gap) and a numeric SD covariate."""
    rng = np.random.default_rng(seed)
    d = pd.concat([_data(seed), _data(seed + 1).assign(id=lambda f: f["id"] + 100)])
    d["time"] = d["visit"] + rng.uniform(-0.45, 0.45, len(d))
    d["z"] = rng.uniform(-1.0, 1.0, len(d))
    return d


@pytest.mark.parametrize("residual, sigma", [("car1(time | id)", None),
                                             ("car1(time | id)", "~ z + grp"),
                                             (None, "~ z")])
def test_sparse_storage_equals_dense_and_row_whitening(residual: str | None,
                                                       sigma: str | None) -> None:
    """Sparse class matrices (> MAX_CLASSES classes) against the dense ones and the
    Gram matrix of the row-by-row whitened ``[Z X y]``, at random ``(phi, delta)``."""
    d = _many_classes_data()
    des, rd = design_with_residual("y ~ x + (1 + x | id)", d, residual, sigma)
    assert class_gram(des, rd) is None  # REML/ML: row by row, as before
    sparse = class_gram(des, rd, storage="any")
    dense = class_gram(des, rd, storage="dense")
    assert sparse is not None and dense is not None
    assert sparse.sparse and not dense.sparse and len(sparse.first) > MAX_CLASSES
    np.testing.assert_array_equal(sparse.layout.entries[0], dense.layout.entries[0])
    np.testing.assert_array_equal(sparse.layout.entries[1], dense.layout.entries[1])
    Z = sp.hstack([term_matrix(t) for t in des.terms]).toarray()
    offset = sparse.layout.template.beta_offset
    M = np.column_stack([Z, des.X, des.y - des.X @ offset])
    rng = np.random.default_rng(7)
    for _ in range(3):
        rho = rng.uniform(0.05, 0.95) if residual else 0.0
        delta = rng.normal(0.0, 0.5, rd.V.shape[1])
        W, logdet_rows = whiten(rd, rho, relative_sd(rd, delta), M)
        full = W.T @ W
        got, logdet = sparse.values(rho, delta)
        want, logdet_dense = dense.values(rho, delta)
        scale = np.abs(full).max()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * scale)
        r, c = sparse.layout.entries
        np.testing.assert_allclose(got, full[r, c], rtol=0, atol=1e-10 * scale)
        off = full.copy()
        off[r, c] = 0.0
        assert np.abs(off).max() <= 1e-10 * scale  # the pattern holds every entry
        assert logdet == pytest.approx(logdet_rows, rel=1e-10)
        assert logdet_dense == pytest.approx(logdet_rows, rel=1e-10)
        gs, gd = sparse.gram(rho, delta)[0], dense.gram(rho, delta)[0]
        for name in ("A11", "nz_val", "A_R1_dense", "A_RR"):
            np.testing.assert_allclose(getattr(gs, name), getattr(gd, name), rtol=0,
                                       atol=1e-10 * scale)
        wd, _ = whitened_design(des, rd, rho, delta)
        theta = np.array([0.8, 0.2, 0.5])
        crit = compile_objective(des, gs)(theta, True) + logdet
        assert crit == pytest.approx(compile_objective(wd)(theta, True) + logdet_rows,
                                     rel=1e-10)


def test_sparse_storage_on_few_classes_equals_dense() -> None:
    d = _data()
    des, rd = design_with_residual("y ~ x + (1 + x | id)", d, "ar1(visit | id)", "~ grp")
    sparse = class_gram(des, rd, storage="sparse")
    dense = class_gram(des, rd)
    assert sparse is not None and dense is not None and sparse.sparse
    got, want = sparse.values(0.4, np.array([0.3])), dense.values(0.4, np.array([0.3]))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12, atol=1e-12)
    assert got[1] == pytest.approx(want[1], rel=1e-13)
