"""REML / ML fits with residual structures against nlme 3.1-162
(``tests/data/reference/make_residual.R``): Ovary (corAR1), BodyWeight (corCAR1),
Orthodont (varIdent by Sex; varIdent + corAR1) and Oats (corCompSymm)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import hierlm
from tests.conftest import reference_file
from tests.residual_data import fit_args, nlme_models, residual_data

CASES = sorted(nlme_models())


@pytest.fixture(scope="module")
def fits() -> dict[str, hierlm.FitResult]:
    out = {}
    for name in CASES:
        case = nlme_models()[name]
        out[name] = hierlm.fit(case["hierlm_formula"], residual_data(name),
                               case["method"].lower(), **fit_args(case))
    return out


@pytest.mark.parametrize("name", CASES)
def test_criterion_fixef_se_sigma_match_nlme(fits: dict, name: str) -> None:
    case, res = nlme_models()[name], fits[name]
    # not worse than nlme's optimum by more than 1e-6 relative
    assert res.objective <= case["criterion"] * (1 + 1e-6)
    assert res.objective == pytest.approx(case["criterion"], rel=1e-6)
    assert res.loglik == pytest.approx(case["loglik"], rel=1e-6)
    names = list(case["fixef"])
    np.testing.assert_allclose(res.fixef[names].to_numpy(), list(case["fixef"].values()),
                               rtol=1e-4, atol=1e-4 * max(map(abs, case["fixef"].values())))
    np.testing.assert_allclose(res.fixef_se[names].to_numpy(), list(case["se"].values()),
                               rtol=2e-3)
    assert res.sigma == pytest.approx(case["sigma"], rel=2e-3)
    assert res.converged and res.method == case["method"]


@pytest.mark.parametrize("name", [c for c in CASES if "rho" in nlme_models()[c]])
def test_correlation_matches_nlme(fits: dict, name: str) -> None:
    case, res = nlme_models()[name], fits[name]
    assert res.residual_parameters.index[0] == "rho"
    assert res.residual_parameters["rho"] == pytest.approx(case["rho"], abs=2e-3)


@pytest.mark.parametrize("name", [c for c in CASES if "sd_ratio" in nlme_models()[c]])
def test_sd_ratio_matches_nlme(fits: dict, name: str) -> None:
    case, res = nlme_models()[name], fits[name]
    ratio = math.exp(res.residual_parameters["log_sd_ratio:SexFemale"])
    assert ratio == pytest.approx(case["sd_ratio"]["Female"], rel=2e-3)


@pytest.mark.parametrize("name", CASES)
def test_residual_sd_per_row_matches_nlme(fits: dict, name: str) -> None:
    case, res = nlme_models()[name], fits[name]
    sd = res.residual_sd()
    assert sd.index.equals(res.fitted().index)
    # the CSVs are in nlme's grouped order, so its per-row SDs line up with the rows
    np.testing.assert_allclose(sd.to_numpy(), case["residual_sd"], rtol=2e-3)


def test_parameter_count_in_aic_and_bic(fits: dict) -> None:
    res = fits["orthodont_varident_ar1_ml"]
    k = len(res.fixef) + len(res.theta) + 1 + 2  # rho and one log SD ratio
    assert res.aic == pytest.approx(-2 * res.loglik + 2 * k)
    assert res.bic == pytest.approx(-2 * res.loglik + k * math.log(res.nobs))
    assert list(res.residual_parameters.index) == ["rho", "log_sd_ratio:SexFemale"]


def test_nlme_agrees_with_lme4_without_residual_structure() -> None:
    """The reference's scale is lme4's: nlme's -2 logLik and SEs equal lme4's, and so
    do hierlm's."""
    check = reference_file("nlme_residual.json")["nlme_vs_lme4"]
    data = residual_data("orthodont")
    for method in ("reml", "ml"):
        c = check[method]
        assert c["nlme"] == pytest.approx(c["lme4"], rel=1e-9)
        res = hierlm.fit("distance ~ age + Sex + (1 | Subject)", data, method)
        assert res.objective == pytest.approx(c["lme4"], rel=1e-8)
        np.testing.assert_allclose(list(c["nlme_se"].values()), list(c["lme4_se"].values()),
                                   rtol=1e-7)
        np.testing.assert_allclose(res.fixef_se.to_numpy(), list(c["lme4_se"].values()),
                                   rtol=1e-6)


def test_nlme_ml_summary_se_is_larger_by_sqrt_n_over_n_minus_p() -> None:
    """nlme's summary() t table under ML divides by N - p; hierlm follows vcov()."""
    for name in (c for c in CASES if c.endswith("_ml")):
        case = nlme_models()[name]
        n, p = case["nobs"], len(case["fixef"])
        ratio = np.array(list(case["se_summary"].values())) / np.array(list(case["se"].values()))
        np.testing.assert_allclose(ratio, math.sqrt(n / (n - p)), rtol=1e-8)


def test_ar1_with_gaps_equals_car1_on_that_index() -> None:
    """nlme: corAR1 on an integer index with gaps fits as corCAR1 on it; so does hierlm."""
    gap = reference_file("nlme_residual.json")["ar1_gaps_equal_car1"]
    assert gap["ar1_loglik"] == pytest.approx(gap["car1_loglik"], rel=1e-8)
    d = residual_data("bodyweight")
    rat = d["Rat"].astype(int)
    d = d[(d["Time"] != 44) & ~((d["Time"] == 22) & (rat % 2 == 1))
          & ~((d["Time"] == 50) & (rat % 3 == 0))].copy()
    d["week"] = ((d["Time"] - 1) // 7 + 1).astype(int)
    assert (d.groupby("Rat")["week"].diff() > 1).sum() > 0  # gaps
    a = hierlm.fit("weight ~ Time + (1 | Rat)", d, residual="ar1(week | Rat)")
    c = hierlm.fit("weight ~ Time + (1 | Rat)", d, residual="car1(week | Rat)")
    assert a.loglik == pytest.approx(c.loglik, rel=1e-8)
    # not worse than nlme's
    assert a.loglik >= gap["ar1_loglik"] * (1 + 1e-6)
    assert a.loglik == pytest.approx(gap["ar1_loglik"], rel=1e-6)


def test_model_fits_as_fit_does_and_data_are_not_modified() -> None:
    case = nlme_models()["orthodont_varident_ar1_reml"]
    data = residual_data("orthodont").set_index(pd.Index(range(500, 608)))
    before = data.copy()
    m = hierlm.Model(case["hierlm_formula"], data, **fit_args(case))
    res, ml = m.fit("reml"), m.fit("ml")
    assert res.objective == pytest.approx(case["criterion"], rel=1e-6)
    assert ml.objective == pytest.approx(nlme_models()["orthodont_varident_ar1_ml"]["criterion"],
                                         rel=1e-6)
    assert res.fitted().index.equals(data.index)
    pd.testing.assert_frame_equal(data, before)


def test_nuts_with_a_residual_model_of_many_classes() -> None:
    """ar1 with a numeric sigma= column: sparse class matrices for NUTS (fits:
    tests/estimate/test_nuts_residual_fit.py; cs with one samples pair sums instead:
    tests/objective/test_residual_cs_pairs.py)."""
    from hierlm.design.residual_design import build_residual
    from hierlm.estimate.nuts_residual import residual_classes

    d = residual_data("ovary")
    design = hierlm.build_design("follicles ~ s + c + (1 | Mare)", d)
    cg = residual_classes(design, build_residual("ar1(visit | Mare)", "~ Time", d, design))
    assert cg.sparse


def test_unidentifiable_structure_warns_at_the_boundary() -> None:
    """cs() on the group of a random intercept with a varIdent: the CS correlation runs
    to its lower edge; the fit says so instead of returning a silent optimum."""
    d = residual_data("orthodont")
    iid = hierlm.fit("distance ~ age + Sex + (1 | Subject)", d, sigma="~ Sex")
    with pytest.warns(hierlm.SingularFitWarning, match="edge of its range"):
        res = hierlm.fit("distance ~ age + Sex + (1 | Subject)", d, residual="cs(1 | Subject)",
                         sigma="~ Sex")
    assert res.residual_parameters["rho"] < -0.33
    assert res.objective <= iid.objective + 1e-6  # contains the model without cs()


def test_supported_post_fit_tools(fits: dict) -> None:
    res = fits["ovary_ar1_reml"]
    wald = res.confint("wald")
    assert np.isfinite(wald.loc["s"]).all()
    assert res.predict().index.equals(res.fitted().index)
    assert "ar1(visit | Mare)" in res.summary()
    kr = res.coef_table(ddf="kenward-roger")
    assert np.isfinite(kr["se"]).all() and (kr["df"] > 0).all()
    assert res.anova(ddf="kenward-roger")["den_df"].gt(0).all()
    ci = res.predict(interval="prediction")
    assert (ci["lower"] < ci["fit"]).all() and (ci["fit"] < ci["upper"]).all()
