"""The first term's conditional variances level by level (large designs) equal the
whole-matrix computation, and a dense inverse of the full system."""

from __future__ import annotations

import numpy as np
import pytest

import hierlm
from hierlm.estimate import cond_var
from tests.scale.data import CROSSED, NESTED, crossed_frame, nested_frame


@pytest.mark.parametrize(("formula", "frame"), [(CROSSED, crossed_frame),
                                               (NESTED, nested_frame)])
def test_level_by_level_equals_whole(monkeypatch, formula, frame) -> None:
    df = frame().dropna()
    whole = hierlm.fit(formula, df).ranef()
    monkeypatch.setattr(cond_var, "DENSE_G_BYTES", 0)  # every design level by level
    by_level = hierlm.fit(formula, df).ranef()
    assert by_level[["group", "level", "term"]].equals(whole[["group", "level", "term"]])
    np.testing.assert_allclose(by_level["cond_sd"], whole["cond_sd"], rtol=1e-10)
    np.testing.assert_allclose(by_level["value"], whole["value"], rtol=1e-10, atol=1e-12)


def test_level_by_level_equals_dense_inverse(monkeypatch) -> None:
    """lme4's ``condVar``: ``Var(b | y, beta) = sigma^2 Lambda (Lambda'Z'Z Lambda + I)^{-1}
    Lambda'``, inverted densely."""
    df = crossed_frame().dropna()
    monkeypatch.setattr(cond_var, "DENSE_G_BYTES", 0)
    m = hierlm.Model(CROSSED, df)
    res = m.fit()
    d = m.design
    Z = np.hstack([np.kron(np.eye(t.n_levels), np.ones((1, t.p)))[t.codes]
                   * np.tile(t.X, (1, t.n_levels)) for t in d.terms])
    blocks = []
    off = 0
    for t in d.terms:
        T = np.zeros((t.p, t.p))
        T[np.tril_indices(t.p)] = res.theta[off:off + t.p * (t.p + 1) // 2]
        off += t.p * (t.p + 1) // 2
        blocks.append(np.kron(np.eye(t.n_levels), T))
    from scipy.linalg import block_diag

    Lam = block_diag(*blocks)
    ZL = Z @ Lam
    V = res.sigma**2 * Lam @ np.linalg.inv(ZL.T @ ZL + np.eye(ZL.shape[1])) @ Lam.T
    # ranef() lists each term's levels per coefficient: term-major, coefficient, level
    sds, off = [], 0
    for t in d.terms:
        diag = np.diag(V)[off:off + t.q].reshape(t.n_levels, t.p)
        sds.extend(np.sqrt(diag.T).ravel())
        off += t.q
    np.testing.assert_allclose(res.ranef()["cond_sd"], sds, rtol=1e-8)
