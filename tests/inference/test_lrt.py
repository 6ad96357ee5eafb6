"""Likelihood-ratio tests against lme4's anova and lmerTest's ranova."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import hierlm
from hierlm.errors import MethodError
from hierlm.inference.lrt import mixture_p
from tests.conftest import dataset, inference_reference

REF = inference_reference()


def fit(formula, data, method="reml"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hierlm.fit(formula, dataset(data), method=method)


@pytest.mark.parametrize("case", [c for c in REF if "lrt" in REF[c]])
def test_lrt_matches_lme4(case):
    c = REF[case]
    big, small = fit(c["formula"], c["data"]), fit(c["lrt"]["small"], c["data"])
    tab = hierlm.anova(big, small)  # any order: rows by increasing npar
    ref = pd.DataFrame(c["lrt"]["table"])
    assert list(tab.index) == [small.formula, big.formula]
    assert "refitted by ML" in tab.attrs["note"]
    for col in ["npar", "aic", "bic", "loglik", "deviance"]:
        np.testing.assert_allclose(tab[col].to_numpy(float), ref[col], rtol=1e-6)
    assert tab["chisq"].iloc[1] == pytest.approx(ref["chisq"].iloc[1], rel=1e-4)
    assert int(tab["df"].iloc[1]) == ref["df"].iloc[1]
    assert tab["p"].iloc[1] == pytest.approx(ref["p"].iloc[1], rel=2e-3)


def test_boundary_mixture_p():
    c = REF["sleepstudy_slopes"]
    tab = hierlm.anova(fit(c["lrt"]["small"], c["data"]), fit(c["formula"], c["data"]))
    x = tab["chisq"].iloc[1]
    # (1 + Days | Subject) against (1 | Subject): 1/2 chi2_1 + 1/2 chi2_2
    expect = 0.5 * scipy.stats.chi2.sf(x, 1) + 0.5 * scipy.stats.chi2.sf(x, 2)
    assert tab["p_boundary"].iloc[1] == pytest.approx(expect, rel=1e-12)
    assert np.isnan(tab["p_boundary"].iloc[0])
    # one variance dropped: 1/2 chi2_0 + 1/2 chi2_1, half the naive p-value
    c = REF["pastes_nested"]
    tab = hierlm.anova(fit(c["lrt"]["small"], c["data"]), fit(c["formula"], c["data"]))
    assert tab["p_boundary"].iloc[1] == pytest.approx(0.5 * tab["p"].iloc[1], rel=1e-12)
    # a fixed-effect comparison has no boundary column
    c = REF["chickweight_diet"]
    tab = hierlm.anova(fit(c["lrt"]["small"], c["data"]), fit(c["formula"], c["data"]))
    assert "p_boundary" not in tab.columns


def test_mixture_p_against_simulation():
    # 1/2 chi2_1 + 1/2 chi2_2 by Monte Carlo (2e5 draws; SE of a tail 0.05 ~ 5e-4)
    rng = np.random.default_rng(0)
    n = 200_000
    draws = np.where(rng.random(n) < 0.5, rng.chisquare(1, n), rng.chisquare(2, n))
    assert mixture_p(4.0, 2) == pytest.approx(np.mean(draws > 4.0), abs=3e-3)


@pytest.mark.parametrize("case", [c for c in REF if "ranova" in REF[c]])
def test_ranova_matches_lmertest(case):
    c = REF[case]
    tab = fit(c["formula"], c["data"]).ranova()
    ref = pd.DataFrame(c["ranova"]).set_index("term")
    assert list(tab.columns) == ["npar", "loglik", "aic", "lrt", "df", "p"]
    assert sorted(tab.index) == sorted(ref.index)
    tab = tab.loc[ref.index]
    np.testing.assert_array_equal(tab["npar"], ref["npar"])
    np.testing.assert_allclose(tab["loglik"], ref["loglik"], rtol=1e-6)
    np.testing.assert_allclose(tab["lrt"].iloc[1:], ref["lrt"].iloc[1:], rtol=1e-4)
    np.testing.assert_allclose(tab["p"].iloc[1:], ref["p"].iloc[1:], rtol=2e-3)


def test_anova_errors():
    d = "sleepstudy"
    a = fit("Reaction ~ Days + (1 | Subject)", d)
    b = fit("Reaction ~ Days + (Days | Subject)", d)
    with pytest.raises(MethodError, match="at least two"):
        hierlm.anova(a)
    other = dataset(d)
    other["Reaction"] = other["Reaction"] * 2
    with pytest.raises(MethodError, match="different responses"):
        hierlm.anova(a, hierlm.fit("Reaction ~ Days + (1 | Subject)", other))
    with pytest.raises(MethodError, match="different data"):
        hierlm.anova(a, hierlm.fit("Reaction ~ Days + (1 | Subject)", dataset(d).iloc[:170]))
    # (1 | Subject) with Days fixed vs (Days | Subject) without: not nested
    c = fit("Reaction ~ 1 + (Days | Subject)", d)
    with pytest.raises(MethodError, match="not nested"):
        hierlm.anova(a, c)
    with pytest.raises(MethodError, match="same number"):
        hierlm.anova(a, fit("Reaction ~ Days + (1 | Subject)", d, "ml"))
    with pytest.raises(MethodError, match="REML or ML"):
        hierlm.anova(a, "not a fit")
    assert hierlm.anova(a.model.fit("ml"), b.model.fit("ml")).attrs["note"] == "ML fits compared"
