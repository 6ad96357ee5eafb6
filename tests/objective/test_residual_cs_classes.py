"""Compound-symmetry class Gram matrices against a dense R0^-1 and log|R0|."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import hierlm
from hierlm.design.residual_design import build_residual
from hierlm.objective.gram import compute_gram, term_matrix
from hierlm.objective.residual_cs_classes import cs_class_gram
from hierlm.objective.residual_gram import whitened_design
from tests.estimate.test_nuts_residual import _data


def _dense_r0(rd, plot: np.ndarray, rho: float, delta: np.ndarray) -> np.ndarray:
    s = np.exp(rd.V @ delta) if rd.V.shape[1] else np.ones(len(plot))
    C = np.where(plot[:, None] == plot[None, :], rho, 0.0) + (1 - rho) * np.eye(len(plot))
    return s[:, None] * C * s[None, :]


@pytest.mark.parametrize("formula,sig", [("y ~ x + (1 | subject)", "~ grp"),
                                         ("y ~ x + (x | subject)", None)])
@pytest.mark.parametrize("rho", [-0.3, 0.0, 0.45, 0.9])
def test_gram_and_logdet_match_dense(formula: str, sig: str | None, rho: float) -> None:
    d = _data(n_sub=10)
    d["plot"] = d["subject"] + "_" + (d["visit"] % 2).astype(str)
    design = hierlm.build_design(formula, d)
    rd = build_residual("cs(1 | plot)", sig, d, design)
    cg = cs_class_gram(design, rd)
    assert cg is not None and cg.k_max == 3
    delta = np.full(rd.V.shape[1], 0.35)
    gram, logdet = cg.gram(rho, delta)
    R0 = _dense_r0(rd, d["plot"].to_numpy(), rho, delta)
    assert logdet == pytest.approx(np.linalg.slogdet(R0)[1], rel=1e-12, abs=1e-10)
    # the Gram blocks of the whitened rows (B with B'B = R0^-1, row by row), which the
    # dense R0^-1 gives too: the REML criterion at a theta agrees
    wd, logdet_rows = whitened_design(design, rd, rho, delta)
    assert logdet == pytest.approx(logdet_rows, abs=1e-10)
    M = sp.hstack([term_matrix(t) for t in design.terms]).toarray()
    M = np.column_stack([M, design.X, design.y])
    dense = M.T @ np.linalg.solve(R0, M)
    W = sp.hstack([term_matrix(t) for t in wd.terms]).toarray()
    W = np.column_stack([W, wd.X, wd.y])
    np.testing.assert_allclose(W.T @ W, dense, rtol=1e-9, atol=1e-9 * np.abs(dense).max())
    from hierlm.objective.profiled import compile_objective

    theta = np.array([0.7, 0.2, 0.4])[:design.n_theta]
    a = compile_objective(design, gram)(theta, True)
    b = compile_objective(wd, compute_gram(wd))(theta, True)
    assert a == pytest.approx(b, rel=1e-10)


def test_too_many_classes_and_other_structures_give_none() -> None:
    d = _data(n_sub=10)
    d["u"] = np.random.default_rng(0).uniform(size=len(d))  # a level per row
    design = hierlm.build_design("y ~ x + (1 | subject)", d)
    assert cs_class_gram(design, build_residual("cs(1 | subject)", "~ u", d, design)) is None
    assert cs_class_gram(design, build_residual("ar1(visit | subject)", None, d, design)) is None
