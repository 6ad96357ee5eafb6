"""Kenward-Roger t and F tests against pbkrtest (through lmerTest; lme4_inference.json)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.errors import MethodError
from hierlm.inference import kenward_roger
from tests.conftest import dataset, inference_reference

REF = inference_reference()


@pytest.fixture(scope="module")
def fits():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {k: hierlm.fit(c["formula"], dataset(c["data"])) for k, c in REF.items()}


def rel(a, b):
    return np.abs(np.asarray(a, float) / np.asarray(b, float) - 1)


@pytest.mark.parametrize("case", list(REF))
def test_coef_table_matches_pbkrtest(fits, case):
    ref = pd.DataFrame(REF[case]["coef_kenward_roger"]).set_index("term")
    tab = fits[case].coef_table(ddf="kenward-roger").loc[ref.index]
    assert rel(tab["se"], ref["se"]).max() < 1e-3
    assert rel(tab["df"], ref["df"]).max() < 1e-3
    assert rel(tab["t"], ref["t"]).max() < 1e-3
    assert rel(tab["p"], ref["p"]).max() < 2e-3


@pytest.mark.parametrize("case", [c for c in REF if "anova_kenward_roger" in REF[c]])
def test_type3_anova_matches_pbkrtest(fits, case):
    ref = pd.DataFrame(REF[case]["anova_kenward_roger"]).set_index("term")
    tab = fits[case].anova(ddf="kenward-roger").loc[ref.index]
    assert (tab["num_df"] == ref["num_df"]).all()
    assert rel(tab["den_df"], ref["den_df"]).max() < 1e-3
    assert rel(tab["F"], ref["F"]).max() < 1e-3
    assert rel(tab["p"], ref["p"]).max() < 2e-3


def test_adjusted_covariance_is_larger(fits):
    # Phi_A - Phi = 2 Phi U Phi: the adjustment for the estimated variance parameters
    # inflates vcov(beta) (positive semi-definite difference) for this unbalanced design
    kr = kenward_roger.kr_info(fits["chickweight_diet"])
    assert np.linalg.eigvalsh(kr.phi_adj - kr.phi).min() > -1e-12


def test_n_10000_without_n_by_n(fits):
    # 10,000 rows, 500 groups (q = 1000): the dense n x n route of pbkrtest would need
    # 800 MB per matrix; here the blocks are q x q.  Large samples: KR and Satterthwaite
    # df agree closely (both near the number of groups)
    rng = np.random.default_rng(1)
    n, G = 10_000, 500
    g = rng.integers(0, G, n)
    x = rng.standard_normal(n)
    b = rng.standard_normal((G, 2)) * [1.0, 0.5]
    y = 1 + 0.3 * x + b[g, 0] + b[g, 1] * x + rng.standard_normal(n)
    res = hierlm.fit("y ~ x + (1 + x | g)", pd.DataFrame({"y": y, "x": x, "g": g.astype(str)}))
    kr, sat = res.coef_table(ddf="kenward-roger"), res.coef_table()
    assert rel(kr["df"], sat["df"]).max() < 0.02
    assert rel(kr["se"], sat["se"]).max() < 1e-3


def test_weights_scaled_by_a_constant_change_nothing():
    # weights 4 w are the model with sigma halved: the same Kenward-Roger table
    data = dataset("sleepstudy")
    w = 1.0 + (data["Days"] % 3)
    f = "Reaction ~ Days + (Days | Subject)"
    a = hierlm.fit(f, data, weights=w).coef_table(ddf="kenward-roger")
    b = hierlm.fit(f, data, weights=4 * w).coef_table(ddf="kenward-roger")
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-5)
    plain = hierlm.fit(f, data).coef_table(ddf="kenward-roger")
    assert rel(a["se"], plain["se"]).max() > 1e-3  # the weights do matter


def test_errors(fits, monkeypatch):
    res = fits["sleepstudy_slopes"]
    with pytest.raises(MethodError, match="REML fit"):
        res.model.fit("ml").coef_table(ddf="kenward-roger")
    monkeypatch.setattr(kenward_roger, "MAX_Q", 10)
    fresh = res.model.fit("reml")
    with pytest.raises(MethodError, match="more than 10 random effects"):
        fresh.coef_table(ddf="kenward-roger")
