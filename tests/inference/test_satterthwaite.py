"""Satterthwaite t and F tests against lmerTest (lme4_inference.json)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import hierlm
from hierlm.errors import MethodError
from hierlm.inference.satterthwaite import fstat_ddf
from tests.conftest import dataset, inference_reference

CASES = list(inference_reference())


@pytest.fixture(scope="module")
def fits():
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, case in inference_reference().items():
            out[k] = hierlm.fit(case["formula"], dataset(case["data"]))
    return out


def rel(a, b):
    return np.abs(np.asarray(a, float) / np.asarray(b, float) - 1)


@pytest.mark.parametrize("case", CASES)
def test_coef_table_matches_lmertest(fits, case):
    ref = pd.DataFrame(inference_reference()[case]["coef_satterthwaite"]).set_index("term")
    tab = fits[case].coef_table().loc[ref.index]
    assert list(tab.columns) == ["estimate", "se", "df", "t", "p"]
    assert rel(tab["se"], ref["se"]).max() < 1e-3
    assert rel(tab["df"], ref["df"]).max() < 1e-3
    assert rel(tab["t"], ref["t"]).max() < 1e-3
    assert rel(tab["p"], ref["p"]).max() < 2e-3


@pytest.mark.parametrize("case", [c for c in CASES if "anova_satterthwaite" in
                                  inference_reference()[c]])
def test_type3_anova_matches_lmertest(fits, case):
    ref = pd.DataFrame(inference_reference()[case]["anova_satterthwaite"]).set_index("term")
    tab = fits[case].anova()
    assert list(tab.index) == list(ref.index)
    assert (tab["num_df"] == ref["num_df"]).all()
    assert rel(tab["den_df"], ref["den_df"]).max() < 1e-3
    assert rel(tab["F"], ref["F"]).max() < 1e-3
    assert rel(tab["p"], ref["p"]).max() < 2e-3


def test_type1_equals_type3_in_a_balanced_design(fits):
    # alfalfa is balanced (3 varieties x 4 dates in each of 6 blocks): the sequential
    # and the type III hypotheses coincide (Searle 1987, ch. 4), so do the F tests
    res = fits["alfalfa_splitplot"]
    assert res.nobs == 72
    t1, t3 = res.anova(type=1), res.anova(type=3)
    assert list(t1.index) == ["Variety", "Date", "Variety:Date"]
    np.testing.assert_allclose(t1["F"], t3["F"], rtol=1e-8)
    np.testing.assert_allclose(t1["den_df"], t3["den_df"], rtol=1e-6)


def test_type1_differs_from_type3_when_unbalanced(fits):
    # chickweight is unbalanced (chicks dropped out): Diet after Time (type I) is not
    # Diet at Time = 0 adjusted for Time:Diet (type III)
    res = fits["chickweight_diet"]
    assert abs(res.anova(type=1).loc["Diet", "F"] / res.anova(type=3).loc["Diet", "F"] - 1) > 0.01


def test_contrast_single_row_is_the_coefficient_t_test(fits):
    res = fits["alfalfa_splitplot"]
    ct = res.coef_table()
    L = np.zeros(len(res.fixef))
    L[1] = 1.0
    one = res.contrast(L)
    assert one["num_df"].iloc[0] == 1
    assert one["den_df"].iloc[0] == pytest.approx(ct["df"].iloc[1], rel=1e-10)
    assert one["F"].iloc[0] == pytest.approx(ct["t"].iloc[1] ** 2, rel=1e-10)
    rows = res.contrast(np.eye(len(res.fixef))[:3], joint=False)
    np.testing.assert_allclose(rows["df"], ct["df"].iloc[:3], rtol=1e-10)
    # a joint test of the Variety columns is the type III test of Variety's columns'
    # span at Date = reference: F from the Wald statistic
    Lv = np.eye(len(res.fixef))[[1, 2]]
    F = float(res.fixef @ Lv.T @ np.linalg.solve(Lv @ res.vcov.to_numpy() @ Lv.T,
                                                  Lv @ res.fixef) / 2)
    assert res.contrast(Lv)["F"].iloc[0] == pytest.approx(F, rel=1e-10)


def test_ddf_none_is_z_test(fits):
    res = fits["sleepstudy_slopes"]
    tab = res.coef_table(ddf="none")
    assert np.isinf(tab["df"]).all()
    z = res.fixef / res.fixef_se
    np.testing.assert_allclose(tab["p"], 2 * scipy.stats.norm.sf(np.abs(z)), rtol=1e-12)


def test_fstat_ddf_rules():
    # lmerTest's get_Fstat_ddf: equal -> mean; any <= 2 -> 2; else 2E/(E - q)
    assert fstat_ddf(np.array([7.0])) == 7.0
    assert fstat_ddf(np.array([5.0, 5.0 + 1e-9])) == pytest.approx(5.0)
    assert fstat_ddf(np.array([1.5, 30.0])) == 2.0
    E = 10 / 8 + 20 / 18
    assert fstat_ddf(np.array([10.0, 20.0])) == pytest.approx(2 * E / (E - 2))


def test_summary_shows_satterthwaite_df_and_p(fits):
    text = fits["sleepstudy_slopes"].summary()
    assert "Satterthwaite" in text
    assert "Pr(>|t|)" in text and " df " in text


def test_bad_arguments(fits):
    res = fits["sleepstudy_slopes"]
    with pytest.raises(MethodError, match="unknown ddf"):
        res.coef_table(ddf="betwithin")
    with pytest.raises(MethodError, match="2 columns"):
        res.contrast([[1.0, 0.0, 0.0]])
    with pytest.raises(MethodError, match="unknown anova type"):
        res.anova(type=2)
    ml = res.model.fit("ml")
    with pytest.raises(MethodError, match="REML fit"):
        ml.anova(ddf="kenward-roger")


def test_loaded_result_needs_model_for_satterthwaite(fits, tmp_path):
    res = fits["dyestuff"]
    res.save(str(tmp_path / "fit"))
    back = hierlm.load(str(tmp_path / "fit"))
    assert back.coef_table(ddf="none")["df"].iloc[0] == np.inf
    with pytest.raises(MethodError, match="FitResult.model"):
        back.coef_table()
    assert "Satterthwaite" not in back.summary()
