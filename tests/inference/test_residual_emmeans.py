"""emmeans and its contrasts on fits with residual structures, against R's emmeans.

``tests/data/reference/nlme_residual_emmeans.json`` (make_residual_emmeans.R): emmeans
1.8.4-1 on nlme::lme fits with corAR1, corAR1 + varIdent and corCAR1.  Means and
pairwise differences and their SEs are checked against emmeans; the df of every mean
and contrast are those of hierlm's own Satterthwaite / Kenward-Roger test of the same
linear combination (checked against a dense brute force in
test_residual_satterthwaite.py / test_residual_kenward_roger.py), and emmeans' own
Satterthwaite df for lme, which differentiate nlme's finite-difference ``apVar``, agree
to 2%.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

import hierlm
from tests.conftest import reference_file
from tests.residual_data import residual_data

CASES = {c["name"]: c for c in reference_file("nlme_residual_emmeans.json")["cases"]}


def _fit(case: dict[str, Any]) -> Any:
    d = residual_data(case["name"])
    if "agef" in case["hierlm_formula"]:
        d["agef"] = pd.Categorical(d["age"].astype(int).astype(str), ["8", "10", "12", "14"])
    return hierlm.fit(case["hierlm_formula"], d, residual=case["residual"],
                      sigma=case["sigma_formula"])


@pytest.mark.parametrize("name", sorted(CASES))
def test_means_and_pairs_match_emmeans(name: str) -> None:
    case = CASES[name]
    res = _fit(case)
    assert res.objective == pytest.approx(case["criterion"], rel=1e-6)
    em = res.emmeans(case["specs"], by=case["by"], ddf="asymptotic")
    ref = pd.DataFrame(case["emmeans_asymptotic"])
    np.testing.assert_allclose(em.table["emmean"], ref["emmean"], rtol=1e-4)
    np.testing.assert_allclose(em.table["se"], ref["SE"], rtol=2e-3)
    pairs = em.pairs(adjust="none")
    rp = pd.DataFrame(case["pairs_asymptotic"])
    assert len(pairs) == len(rp)
    np.testing.assert_allclose(pairs["estimate"], rp["estimate"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(pairs["se"], rp["SE"], rtol=2e-3)
    np.testing.assert_allclose(pairs["p"], rp["p.value"], rtol=2e-2, atol=1e-12)


@pytest.mark.parametrize("ddf", ["satterthwaite", "kenward-roger"])
@pytest.mark.parametrize("name", ["orthodont_ar1", "orthodont_ar1_varident"])
def test_df_are_those_of_the_same_contrast(name: str, ddf: str) -> None:
    res = _fit(CASES[name])
    case = CASES[name]
    em = res.emmeans(case["specs"], by=case["by"], ddf=ddf)
    pairs = em.pairs(adjust="none")
    g = em.grid
    for row, L in zip(em.table.itertuples(), g.L, strict=True):
        one = res.contrast(L[None, :], ddf=ddf, joint=False).iloc[0]
        assert row.df == pytest.approx(one["df"], rel=1e-8)
        assert row.se == pytest.approx(one["se"], rel=1e-8)
        assert np.isfinite(row.df) and row.df > 1
    # first pair of the first group: mean 0 - mean 1
    c = g.L[0] - g.L[1]
    one = res.contrast(c[None, :], ddf=ddf, joint=False).iloc[0]
    assert pairs["df"].iloc[0] == pytest.approx(one["df"], rel=1e-8)
    assert pairs["se"].iloc[0] == pytest.approx(one["se"], rel=1e-8)


def test_satterthwaite_df_near_emmeans_appx_satterthwaite() -> None:
    case = CASES["orthodont_ar1"]
    em = _fit(case).emmeans(case["specs"], by=case["by"], ddf="satterthwaite")
    ref = pd.DataFrame(case["emmeans_satterthwaite"])
    np.testing.assert_allclose(em.table["se"], ref["SE"], rtol=2e-3)
    np.testing.assert_allclose(em.table["df"], ref["df"], rtol=0.02)
    rp = pd.DataFrame(case["pairs_satterthwaite"])
    pairs = em.pairs(adjust="none")
    np.testing.assert_allclose(pairs["df"], rp["df"], rtol=0.02)
    np.testing.assert_allclose(pairs["p"], rp["p.value"], rtol=2e-2)
