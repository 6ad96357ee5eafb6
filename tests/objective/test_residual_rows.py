"""The rows' combinations give the whitened Gram matrix: against a dense Cholesky of
``R0`` (``n x n``), against the row-by-row whitened criterion (itself checked against a
dense brute force in test_residual_gram.py), and the Numba kernel against its
``np.bincount`` form."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.linalg

from hierlm.design.residual_design import design_with_residual
from hierlm.objective import compile_objective
from hierlm.objective.residual_classes import _columns
from hierlm.objective.residual_gram import relative_sd, whitened_design
from hierlm.objective.residual_rows import kernel, numpy_values, row_gram
from tests.objective.test_residual_classes import _many_classes_data
from tests.test_imports import _loaded_after

CASES = [
    ("car1(time | id)", "~ z", 0.7, None),   # every gap and SD distinct
    ("ar1(visit | id)", "~ grp", -0.4, "w"),  # prior weights
    ("cs(1 | id)", "~ z", 0.3, None),
    ("cs(1 | id)", None, -0.1, "w"),
    (None, "~ z", 0.0, "w"),
]


def _design(residual: str | None, sigma: str | None, weights: str | None) -> tuple:
    d = _many_classes_data()
    d["w"] = np.linspace(1.0, 2.0, len(d))
    return design_with_residual("y ~ x + (1 + x | id)", d, residual, sigma, weights=weights)


def _dense_r0(rd: object, s: np.ndarray, rho: float) -> np.ndarray:
    g, t = rd.group, rd.time  # type: ignore[attr-defined]
    same = g[:, None] == g[None, :]
    kind = rd.spec.kind if rd.spec is not None else None  # type: ignore[attr-defined]
    if kind == "cs":
        C = np.where(same, rho, 0.0) + (1 - rho) * np.eye(len(g))
    elif kind is not None:
        C = np.where(same, rho ** np.abs(t[:, None] - t[None, :]), 0.0)
    else:
        C = np.eye(len(g))
    return s[:, None] * C * s[None, :]


@pytest.mark.parametrize("residual, sigma, rho, weights", CASES)
@pytest.mark.parametrize("use_kernel", [False, True])
def test_values_equal_dense_cholesky_of_r0(residual: str | None, sigma: str | None,
                                           rho: float, weights: str | None,
                                           use_kernel: bool) -> None:
    des, rd = _design(residual, sigma, weights)
    delta = np.linspace(-0.5, 0.4, rd.V.shape[1])
    rg = row_gram(des, rd, use_kernel=use_kernel)
    values, logdet = rg.values(rho, delta)
    M = _columns(des)[0].toarray()
    R0 = _dense_r0(rd, relative_sd(rd, delta, des.weights), rho)
    L = np.linalg.cholesky(R0)
    W = scipy.linalg.solve_triangular(L, M, lower=True)
    G = W.T @ W
    row, col = rg.layout.entries
    np.testing.assert_allclose(values, G[row, col], rtol=1e-10, atol=1e-10 * np.abs(G).max())
    assert logdet == pytest.approx(2 * np.log(np.diag(L)).sum(), rel=1e-12)
    outside = np.ones_like(G, dtype=bool)
    outside[row, col] = False
    assert np.abs(G[outside]).max(initial=0.0) < 1e-10 * np.abs(G).max()  # pattern complete


@pytest.mark.parametrize("residual, sigma, rho, weights", CASES)
@pytest.mark.parametrize("reml", [True, False])
def test_criterion_equals_row_whitening(residual: str | None, sigma: str | None, rho: float,
                                        weights: str | None, reml: bool) -> None:
    des, rd = _design(residual, sigma, weights)
    delta = np.linspace(-0.5, 0.4, rd.V.shape[1])
    theta = np.array([0.8, 0.2, 0.5])
    gram, logdet = row_gram(des, rd).gram(rho, delta)
    wd, logdet_rows = whitened_design(des, rd, rho, delta)
    got = compile_objective(des, gram)(theta, reml) + logdet
    want = compile_objective(wd)(theta, reml) + logdet_rows
    assert got == pytest.approx(want, rel=1e-11)


@pytest.mark.parametrize("residual, sigma, rho, weights", CASES)
def test_kernel_equals_numpy_form(residual: str | None, sigma: str | None, rho: float,
                                  weights: str | None) -> None:
    des, rd = _design(residual, sigma, weights)
    rg = row_gram(des, rd, use_kernel=True)
    fn = kernel()
    assert fn is not None
    for r in (rho, rho / 2 + 0.1):
        w, coef, _ = rg.weights(r, np.full(rd.V.shape[1], 0.3))
        want = numpy_values(rg, w, coef)
        x, got = np.empty(rg.slot_combo.size), np.empty(rg.n_entries)
        fn(rg.ent_slot, rg.ent_l, rg.ent_val, w, rg.slot_combo, rg.pair_a, rg.pair_b,
           rg.pair_entry, coef, x, got)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * np.abs(want).max())


def test_fits_use_the_combinations_where_classes_do_not_apply() -> None:
    from hierlm.estimate.residual_fit import ResidualProfile
    from hierlm.objective.residual_rows import RowGram

    for residual, sigma, _, weights in CASES:
        des, rd = _design(residual, sigma, weights)
        assert isinstance(ResidualProfile(des, rd, True).classes, RowGram)


def test_small_residual_fit_loads_no_numba() -> None:
    code = ("import hierlm, numpy as np, pandas as pd\n"
            "d = hierlm.load_sleepstudy()\n"
            "d['t'] = d['Days'] + np.tile(np.linspace(0, 0.4, 10), 18)\n"
            "hierlm.fit('Reaction ~ Days + (1 | Subject)', d, residual='car1(t | Subject)')\n"
            "hierlm.fit('Reaction ~ Days + (1 | Subject)', d, residual='cs(1 | Subject)')")
    assert "numba" not in _loaded_after(code)


def test_caller_data_unchanged() -> None:
    d = _many_classes_data()
    before = d.copy()
    des, rd = design_with_residual("y ~ x + (1 + x | id)", d, "car1(time | id)", "~ z")
    row_gram(des, rd).gram(0.5, np.array([0.2]))
    pd.testing.assert_frame_equal(d, before)
