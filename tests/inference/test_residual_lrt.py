"""``hierlm.anova(iid_fit, ar1_fit)``: the likelihood-ratio test of a residual
structure, with nlme's ML log-likelihoods (tests/data/reference/nlme_residual.json)."""

from __future__ import annotations

import math

import pytest
import scipy.stats

import hierlm
from tests.residual_data import nlme_models, residual_data


def test_anova_iid_against_ar1_matches_nlme() -> None:
    d = residual_data("ovary")
    iid = hierlm.fit("follicles ~ s + c + (1 | Mare)", d)
    ar1 = hierlm.fit("follicles ~ s + c + (1 | Mare)", d, residual="ar1(visit | Mare)")
    table = hierlm.anova(iid, ar1)
    ref = nlme_models()
    ll_iid, ll_ar1 = ref["ovary_iid_ml"]["loglik"], ref["ovary_ar1_ml"]["loglik"]
    assert table["npar"].tolist() == [5, 6]  # 3 fixef + theta + sigma (+ rho)
    assert int(table["df"].iloc[1]) == 1
    assert table["loglik"].tolist() == pytest.approx([ll_iid, ll_ar1], rel=1e-7)
    chisq = 2 * (ll_ar1 - ll_iid)
    assert table["chisq"].iloc[1] == pytest.approx(chisq, rel=1e-6)
    assert table["p"].iloc[1] == pytest.approx(scipy.stats.chi2.sf(chisq, 1), rel=1e-5)
    assert table["aic"].tolist() == pytest.approx([-2 * ll_iid + 10, -2 * ll_ar1 + 12],
                                                  rel=1e-7)
    assert table["bic"].iloc[1] == pytest.approx(-2 * ll_ar1 + 6 * math.log(308), rel=1e-7)
    assert "residual=ar1(visit | Mare)" in table.index[1]
    assert "REML fits were refitted" in table.attrs["note"]


def test_anova_varident_plus_ar1_against_varident() -> None:
    d = residual_data("orthodont")
    ref = nlme_models()
    vi = hierlm.fit("distance ~ age + Sex + (1 | Subject)", d, "ml", sigma="~ Sex")
    both = hierlm.fit("distance ~ age + Sex + (1 | Subject)", d, "ml", sigma="~ Sex",
                      residual="ar1(visit | Subject)")
    table = hierlm.anova(vi, both)
    assert table["npar"].tolist() == [6, 7]
    assert table["loglik"].iloc[1] == pytest.approx(
        ref["orthodont_varident_ar1_ml"]["loglik"], rel=1e-7)


def test_structures_with_equal_parameter_counts_are_not_nested() -> None:
    d = residual_data("ovary")
    a = hierlm.fit("follicles ~ s + c + (1 | Mare)", d, "ml", residual="ar1(visit | Mare)")
    b = hierlm.fit("follicles ~ s + c + (1 | Mare)", d, "ml", residual="cs(1 | Mare)")
    with pytest.raises(hierlm.MethodError, match="same number of parameters"):
        hierlm.anova(a, b)
