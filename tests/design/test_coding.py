"""Factor coding as R's: level order, contrasts, coefficient names and column order.

References: ``tests/data/reference/make_coding.R`` (lme4 1.1-31, mlmRev's Exam data and
simulated data with awkward level names), written to ``lme4_coding.json``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

import hierlm
from tests.conftest import REFERENCE, reference_file

LEVELS = ["mixed", "boys", "girls"]


def coding() -> dict[str, Any]:
    return reference_file("lme4_coding.json")


def exam(ordered: bool = False) -> pd.DataFrame:
    d = pd.read_csv(REFERENCE / "data" / "exam.csv", dtype={"school": str})
    d["schgend"] = pd.Categorical(d["schgend"], categories=LEVELS, ordered=ordered)
    return d


def synth() -> pd.DataFrame:
    return pd.read_csv(REFERENCE / "data" / "coding_synth.csv", dtype=str,
                       keep_default_na=False).astype(
        {"x": float, "PCT.x": float, "Intercept": float, "y": float})


def _check_fit(res: hierlm.FitResult, ref: dict[str, Any]) -> None:
    assert tuple(res.fixef.index) == tuple(ref["fixef_names"])
    assert res.objective == pytest.approx(ref["reml_criterion"], rel=1e-8)
    np.testing.assert_allclose(res.fixef.to_numpy(), ref["fixef"], rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(res.fixef_se.to_numpy(), ref["se"], rtol=2e-4)
    np.testing.assert_allclose(res.fitted().to_numpy()[:10], ref["fitted_head"], atol=1e-5)


EXAM_FORMULA = "normexam ~ standLRT + schgend + (1 | school)"

# R's deparse of a C() term where it differs from the text written
C_LABELS = {"C(schgend, levels=['girls', 'mixed', 'boys'])":
            'C(schgend, levels = c("girls", "mixed", "boys"))'}

# (reference fit, formula, ordered categorical?, contrasts=)
EXAM_CASES = [
    ("exam_default", EXAM_FORMULA, False, None),
    ("exam_relevel_girls", "normexam ~ standLRT + C(schgend, levels=['girls', 'mixed', 'boys'])"
     " + (1 | school)", False, None),
    ("exam_sum", EXAM_FORMULA, False, {"schgend": "contr.sum"}),
    ("exam_sum", EXAM_FORMULA, False, {"schgend": "sum"}),
    ("exam_sum", "normexam ~ standLRT + C(schgend, Sum) + (1 | school)", False, None),
    ("exam_sum", "normexam ~ standLRT + C(schgend, contr.sum) + (1 | school)", False, None),
    ("exam_helmert", EXAM_FORMULA, False, {"schgend": "contr.helmert"}),
    ("exam_helmert", "normexam ~ standLRT + C(schgend, Helmert) + (1 | school)", False, None),
    ("exam_poly", EXAM_FORMULA, False, {"schgend": "contr.poly"}),
    ("exam_poly", "normexam ~ standLRT + C(schgend, Poly) + (1 | school)", False, None),
    ("exam_ordered", EXAM_FORMULA, True, None),
    ("exam_ordered_treatment", EXAM_FORMULA, True, {"schgend": "contr.treatment"}),
    ("exam_factor_by_factor", "normexam ~ vr * intake + (1 | school)", False, None),
    ("exam_numeric_by_factor", "normexam ~ standLRT * sex + (1 | school)", False, None),
    ("exam_factor_by_numeric", "normexam ~ sex * standLRT + (1 | school)", False, None),
    ("exam_power", "normexam ~ standLRT + I(standLRT^2) + sex + (1 | school)", False, None),
    ("exam_power", "normexam ~ standLRT + I(standLRT**2) + sex + (1 | school)", False, None),
    ("exam_mixed_contrasts", "normexam ~ schgend * sex + vr + (1 | school)", False,
     {"schgend": "contr.sum", "vr": "contr.helmert"}),
]


@pytest.mark.parametrize(("key", "formula", "ordered", "contrasts"), EXAM_CASES)
def test_exam_fit_matches_lme4(key: str, formula: str, ordered: bool,
                               contrasts: dict[str, str] | None) -> None:
    ref = coding()["fits"][key]
    ref_names = list(ref["fixef_names"])
    if "C(schgend" in formula:  # the term is named as R deparses it, the levels as R's
        term = formula.split(" + ")[1]
        ref_names = [n.replace("schgend", C_LABELS.get(term, term)) for n in ref_names]
        ref = {**ref, "fixef_names": ref_names}
    kwargs = {} if contrasts is None else {"contrasts": contrasts}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rank-deficient interaction columns
        res = hierlm.fit(formula, exam(ordered), **kwargs)
    _check_fit(res, ref)


def test_categorical_order_sets_the_reference_level() -> None:
    # lme4: the intercept is for schgend "mixed" (the first category), not "boys".
    res = hierlm.fit(EXAM_FORMULA, exam())
    assert res.fixef["(Intercept)"] == pytest.approx(coding()["fits"]["exam_default"]["fixef"][0],
                                                      abs=1e-5)


def test_treatment_reference_level_by_argument_and_formula() -> None:
    ref = coding()["fits"]["exam_relevel_girls"]
    by_arg = hierlm.fit(EXAM_FORMULA, exam(), contrasts={"schgend": ("treatment", "girls")})
    assert by_arg.objective == pytest.approx(ref["reml_criterion"], rel=1e-8)
    assert by_arg.fixef["(Intercept)"] == pytest.approx(ref["fixef"][0], abs=1e-5)
    # contr.treatment(base = "girls") keeps the level order: mixed, boys
    assert list(by_arg.fixef.index) == ["(Intercept)", "standLRT", "schgendmixed", "schgendboys"]
    by_formula = hierlm.fit("normexam ~ standLRT + C(schgend, Treatment('girls')) + (1 | school)",
                            exam())
    np.testing.assert_allclose(by_formula.fixef.to_numpy(), by_arg.fixef.to_numpy(), atol=1e-7)


def test_model_takes_contrasts_too() -> None:
    m = hierlm.Model(EXAM_FORMULA, exam(), contrasts={"schgend": "helmert"})
    assert m.design.fixef_names[2:] == ("schgend1", "schgend2")


def test_coefficient_names_as_r_with_dots_and_an_intercept_column() -> None:
    ref = coding()["fits"]["synth_names"]
    res = hierlm.fit("y ~ city + PCT.x + Intercept + (1 | g)", synth())
    _check_fit(res, ref)


def test_predict_on_the_fitting_data_equals_fitted_with_dotted_levels() -> None:
    d = synth()
    res = hierlm.fit("y ~ city + x + (1 | g)", d)
    np.testing.assert_allclose(res.predict(d).to_numpy(), res.fitted().to_numpy(),
                               rtol=0, atol=1e-10)
    assert {"cityST.LOUIS", "citySLOUIS", "cityT.A"} <= set(res.fixef.index)


@pytest.mark.parametrize("key", ["synth_three_way", "synth_poly5"])
def test_synthetic_fit_matches_lme4(key: str) -> None:
    ref = coding()["fits"][key]
    contrasts = ref["contrasts"]
    res = hierlm.fit(ref["formula"], synth(), contrasts=contrasts)
    _check_fit(res, ref)


@pytest.mark.parametrize("case", range(20))
def test_model_matrix_names_and_values_as_r(case: int) -> None:
    from hierlm.design.columns import formulae_common
    from hierlm.design.model_matrix import build_model_matrix

    ref = coding()["model_matrices"][case]
    mm = build_model_matrix(ref["formula"].removeprefix("~").strip(), synth(),
                            evaluate=formulae_common)
    assert mm.names == tuple(ref["names"])
    np.testing.assert_allclose(mm.values[:12], np.asarray(ref["values"], dtype=float),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", range(2, 7))
@pytest.mark.parametrize("kind", ["poly", "helmert", "sum"])
def test_contrast_matrices_as_r(kind: str, k: int) -> None:
    from hierlm.design.contrasts import contrast_matrix, parse_contrast

    ref = coding()["contrasts"][f"{kind}{k}"]
    M, names = contrast_matrix(parse_contrast(kind, "f"), [f"l{i}" for i in range(k)])
    np.testing.assert_allclose(M, np.asarray(ref["matrix"], dtype=float).reshape(k, k - 1),
                               atol=1e-14)
    if kind == "poly":
        ref_names = ref["names"] if isinstance(ref["names"], list) else [ref["names"]]
        assert list(names) == ref_names  # jsonlite writes a single name unboxed
    else:
        assert list(names) == [str(i) for i in range(1, k)]


def test_names_that_cannot_be_told_apart_are_an_error() -> None:
    # factor 'a' with level 'b1' and factor 'ab' with level '1' are both named 'ab1' in R
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"y": rng.normal(size=40), "a": np.tile(["b0", "b1"], 20),
                      "ab": np.repeat(["0", "1"], 20), "g": np.tile(list("pqrst"), 8)})
    with pytest.raises(hierlm.DataError, match="ab1"):
        hierlm.build_design("y ~ a + ab + (1 | g)", d)


@pytest.mark.parametrize(("contrasts", "match"), [
    ({"schgend": "contr.nonesuch"}, "contr.nonesuch"),
    ({"nonesuch": "sum"}, "nonesuch"),
    ({"standLRT": "sum"}, "standLRT"),
    ({"schgend": ("treatment", "coed")}, "coed"),
    ("sum", "dict"),
])
def test_bad_contrasts_are_one_clear_error(contrasts: Any, match: str) -> None:
    with pytest.raises((hierlm.FormulaError, hierlm.DataError), match=match):
        hierlm.build_design(EXAM_FORMULA, exam(), contrasts=contrasts)


@pytest.mark.parametrize(("term", "match"), [
    ("C(schgend, Nonesuch)", "Nonesuch"),
    ("C(schgend, levels=['mixed', 'boys'])", "girls"),
    ("C(schgend, Sum('boys'))", "Sum"),
])
def test_bad_c_calls_are_one_clear_error(term: str, match: str) -> None:
    with pytest.raises((hierlm.FormulaError, hierlm.DataError), match=match):
        hierlm.build_design(f"normexam ~ {term} + (1 | school)", exam())


def test_contrasts_survive_save_and_load(tmp_path: Any) -> None:
    d = exam(ordered=True)
    res = hierlm.fit(EXAM_FORMULA, d, contrasts={"schgend": "sum"})
    res.save(tmp_path / "r")
    back = hierlm.load(tmp_path / "r")
    np.testing.assert_allclose(back.predict(d.iloc[:50]).to_numpy(),
                               res.fitted().to_numpy()[:50], atol=1e-10)


def test_caller_data_is_not_modified() -> None:
    d = exam()
    before = d.copy()
    hierlm.fit(EXAM_FORMULA, d, contrasts={"schgend": "poly"})
    pd.testing.assert_frame_equal(d, before)


@pytest.mark.parametrize("contrasts", [None, {"schgend": "sum", "vr": "poly"},
                                       {"schgend": "helmert", "vr": "sum"}])
def test_type3_anova_does_not_depend_on_the_contrasts(contrasts: dict[str, str] | None) -> None:
    # lmerTest 3.1-3: anova(lmer(normexam ~ standLRT * vr + schgend + (1 | school), Exam,
    #   contrasts = list(schgend = "contr.sum", vr = "contr.poly")), type = 3), printed to 15
    # digits; lmerTest gives the same table for every choice of contrasts.
    res = hierlm.fit("normexam ~ standLRT * vr + schgend + (1 | school)", exam(),
                     contrasts=contrasts)
    a = res.anova(type=3)
    np.testing.assert_allclose(a.loc[["standLRT", "vr", "schgend", "standLRT:vr"], "F"],
                               [1553.92333713143603, 3.83046686522816, 3.59610181566975,
                                10.84076392594507], rtol=2e-4)
    np.testing.assert_allclose(a.loc[["standLRT", "vr", "schgend", "standLRT:vr"], "den_df"],
                               [4005.1379983030515, 59.3544177568692, 56.0532132479574,
                                4004.6447773340133], rtol=2e-3)


def test_boolean_unicode_and_backquoted_names_as_r() -> None:
    # R 4.2.2 (UTF-8): colnames(model.matrix(~ b + größe + `my x` + log(`my x`), d)) is
    # (Intercept), bTRUE, größeklein, `my x`, log(`my x`)
    from hierlm.design.columns import formulae_common
    from hierlm.design.model_matrix import build_model_matrix

    d = pd.DataFrame({"b": [True, False, True], "größe": ["klein", "groß", "klein"],
                      "my x": [1.0, 2.0, 4.0]})
    mm = build_model_matrix("b + größe + `my x` + log(`my x`)", d, evaluate=formulae_common)
    assert mm.names == ("(Intercept)", "bTRUE", "größeklein", "`my x`", "log(`my x`)")
    np.testing.assert_allclose(mm.values[:, 1:3], [[1, 1], [0, 0], [1, 1]])
    np.testing.assert_allclose(mm.values[:, 4], np.log([1.0, 2.0, 4.0]))


def test_a_coder_whose_names_the_formula_no_longer_gives_is_a_clear_error() -> None:
    # a result saved by a version that mangled names ('citySLOUIS' for 'cityST.LOUIS')
    import dataclasses

    d = synth()
    design = hierlm.build_design("y ~ city + (1 | g)", d)
    old = dataclasses.replace(design.coder, fixef_names=("(Intercept)", "citySLOUIS",
                                                         "cityTA"))
    with pytest.raises(hierlm.DataError, match="refit"):
        old.code(d.iloc[:5])


@pytest.mark.parametrize("key", ["sex_sum", "vr_ordered"])
def test_random_terms_use_the_default_contrasts_as_lme4(key: str) -> None:
    ref = coding()["random_names"][key]
    d = exam()
    if key == "vr_ordered":
        d["vr"] = pd.Categorical(d["vr"], ordered=True)
    design = hierlm.build_design(ref["formula"], d, contrasts=ref["contrasts"])
    fixef_names = ref["fixef_names"] if isinstance(ref["fixef_names"], list) else [
        ref["fixef_names"]]
    assert list(design.fixef_names) == fixef_names
    assert list(design.terms[0].coef_names) == ref["ranef_names"]


def test_anova_maps_columns_of_levels_with_colons_to_their_terms() -> None:
    # renaming the levels ('10:30' -> '10-30') must not change the tables
    rng = np.random.default_rng(3)
    d = pd.DataFrame({"f": np.tile(["10:30", "11:00", "a:b"], 40), "x": rng.normal(size=120),
                      "g": np.repeat([f"g{i}" for i in range(12)], 10)})
    d["y"] = rng.normal(size=120) + (d["f"] == "a:b") + d["x"]
    res = hierlm.fit("y ~ f * x + (1 | g)", d)
    assert list(res.fixef.index) == ["(Intercept)", "f11:00", "fa:b", "x", "f11:00:x", "fa:b:x"]
    plain = hierlm.fit("y ~ f * x + (1 | g)", d.assign(f=d["f"].str.replace(":", "-")))
    for t in (1, 3):
        pd.testing.assert_frame_equal(res.anova(type=t), plain.anova(type=t), rtol=1e-6)


def test_a_factor_with_one_level_is_an_error_not_a_vanished_term() -> None:
    # R: "contrasts can be applied only to factors with 2 or more levels"
    d = exam()
    d["one"] = "same"
    with pytest.raises(hierlm.DataError, match="one.*single level.*'same'"):
        hierlm.build_design("normexam ~ standLRT + one + (1 | school)", d)
