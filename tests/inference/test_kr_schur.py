"""Two or more random-effects terms blockwise (Kenward-Roger and Satterthwaite).

Kenward-Roger's ``P``, ``Q``, ``K`` of :mod:`hierlm.inference.kr_schur` against the
dense ``q x q`` path (``kenward_roger._kr_info(levels=False)``: one Cholesky factor of
``Lambda'Z'Z Lambda + I``, ``V^-2``, ``V^-3`` directly) to 1e-10 relative; and, with
every multi-term reference case forced onto the blockwise paths (Kenward-Roger and
Satterthwaite), the tables against pbkrtest and lmerTest (lme4_inference.json).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.inference import kenward_roger, varpar_dense
from tests.conftest import dataset, inference_reference

REF = inference_reference()
MULTI = [c for c in REF if c in ("sleepstudy_zerocorr", "penicillin_crossed", "pastes_nested",
                                 "alfalfa_splitplot")]


def frame(n=400, lg=30, lh=8, seed=2):
    rng = np.random.default_rng(seed)
    g, h, c = rng.integers(0, lg, n), rng.integers(0, lh, n), rng.integers(0, 3, n)
    x, z = rng.normal(size=n), rng.normal(size=n)
    y = (1 + x + rng.normal(size=lg)[g] + rng.normal(size=lh)[h]
         + 0.5 * rng.normal(size=lh)[h] * x + 0.6 * rng.normal(size=(lg, 3))[g, c]
         + 0.4 * rng.normal(size=lg)[g] * x + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": g.astype(str), "h": h.astype(str),
                         "c": np.array(["a", "b", "c"])[c], "w": rng.uniform(0.5, 2.0, n)})


@pytest.fixture
def blockwise(monkeypatch):
    """Every model with two or more terms on the blockwise paths, never the dense ones."""
    monkeypatch.setattr(varpar_dense, "SCHUR_MIN_Q", 0)

    def refuse(*args, **kwargs):
        raise AssertionError("the dense q x q path was used")

    monkeypatch.setattr(varpar_dense, "dense_gram", refuse)
    monkeypatch.setattr(kenward_roger, "v_products", refuse)


def rel(a, b):
    return np.abs(np.asarray(a, float) / np.asarray(b, float) - 1)


@pytest.mark.parametrize(("formula", "weighted"), [
    ("y ~ x + (1 | g) + (1 | h)", False),
    ("y ~ x + (1 | g) + (1 | h)", True),
    ("y ~ x + (1 | g) + (1 | g:c)", False),
    ("y ~ x + (x | g) + (1 | h)", False),
    ("y ~ x + z + (1 | g) + (1 + x | h)", False),
    ("y ~ x + (x | g) + (1 + z | h) + (1 | c)", False),
    ("y ~ x + (1 | h) + cs(0 + c | g)", False),
])
def test_kr_blockwise_matches_dense(monkeypatch, formula, weighted):
    data = frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit(formula, data, weights=data["w"] if weighted else None)
    assert len(res.model.design.terms) > 1
    dense = kenward_roger._kr_info(res, levels=False)
    monkeypatch.setattr(varpar_dense, "SCHUR_MIN_Q", 0)
    monkeypatch.setattr(kenward_roger, "v_products", None)  # must not be reached
    fast = kenward_roger._kr_info(res)
    np.testing.assert_allclose(fast.phi_adj, dense.phi_adj, rtol=1e-10, atol=0)
    np.testing.assert_allclose(fast.W, dense.W, rtol=1e-9, atol=1e-12 * np.abs(dense.W).max())
    L = np.eye(res.fixef.size)
    assert fast.ddf(L) == pytest.approx(dense.ddf(L), rel=1e-10)
    for j in range(res.fixef.size):
        assert fast.ddf(L[j:j + 1]) == pytest.approx(dense.ddf(L[j:j + 1]), rel=1e-10)


@pytest.mark.parametrize("case", MULTI)
def test_blockwise_tables_match_pbkrtest_and_lmertest(blockwise, case):
    c = REF[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit(c["formula"], dataset(c["data"]))
    assert len(res.model.design.terms) > 1
    for ddf, key in (("kenward-roger", "kenward_roger"), ("satterthwaite", "satterthwaite")):
        ref = pd.DataFrame(c[f"coef_{key}"]).set_index("term")
        tab = res.coef_table(ddf=ddf).loc[ref.index]
        assert rel(tab["se"], ref["se"]).max() < 1e-3
        assert rel(tab["df"], ref["df"]).max() < 1e-3
        assert rel(tab["p"], ref["p"]).max() < 2e-3
        if f"anova_{key}" in c:
            ref = pd.DataFrame(c[f"anova_{key}"]).set_index("term")
            tab = res.anova(ddf=ddf).loc[ref.index]
            assert rel(tab["den_df"], ref["den_df"]).max() < 1e-3
            assert rel(tab["F"], ref["F"]).max() < 1e-3
