"""Formulas as an R user writes them: scale(), log/exp/sqrt, '^', commas, term order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm
from tests.conftest import dataset


def test_scale_uses_the_sample_sd_and_matches_lme4() -> None:
    # lme4 1.1-31: lmer(Reaction ~ scale(Days) + (1 | Subject), sleepstudy)
    # (Rscript; REMLcrit, fixef, sqrt(diag(vcov)), theta, sigma, printed to 15 digits).
    res = hierlm.fit("Reaction ~ scale(Days) + (1 | Subject)", dataset("sleepstudy"))
    assert res.objective == pytest.approx(1784.34930114952, rel=1e-9)
    np.testing.assert_allclose(res.fixef, [298.5078916666673, 30.1488534213672], rtol=1e-7)
    np.testing.assert_allclose(res.fixef_se, [9.04993606995575, 2.31639357835299], rtol=1e-5)
    np.testing.assert_allclose(res.theta, [1.19788153282899], rtol=1e-5)
    assert res.sigma == pytest.approx(30.991233898644, rel=1e-6)
    assert list(res.fixef.index) == ["(Intercept)", "scale(Days)"]


def test_scale_column_is_centred_with_unit_sample_sd() -> None:
    d = hierlm.build_design("Reaction ~ scale(Days) + (1 | Subject)", dataset("sleepstudy"))
    days = dataset("sleepstudy")["Days"].to_numpy(dtype=float)
    np.testing.assert_allclose(d.X[:, 1], (days - days.mean()) / days.std(ddof=1))


@pytest.mark.parametrize("fn", ["log", "exp", "sqrt"])
def test_math_functions_without_prefix(fn: str) -> None:
    data = dataset("sleepstudy").assign(x=lambda f: f["Days"] / 10 + 1)
    d = hierlm.build_design(f"Reaction ~ {fn}(x) + (1 | Subject)", data)
    np.testing.assert_allclose(d.X[:, 1], getattr(np, fn)(data["x"].to_numpy()))
    assert d.fixef_names[1] == f"{fn}(x)"


def test_caret_inside_i_is_r_power_and_named_as_r() -> None:
    # R: colnames(model.matrix(~ I(Days^2), sleepstudy)) is (Intercept), I(Days^2)
    for power in ("I(Days^2)", "I(Days**2)"):
        formula = f"Reaction ~ {power} + (1 | Subject)"
        d = hierlm.build_design(formula, dataset("sleepstudy"))
        np.testing.assert_allclose(d.X[:, 1], dataset("sleepstudy")["Days"] ** 2)
        assert d.fixef_names == ("(Intercept)", "I(Days^2)")


def test_caret_on_one_variable_outside_i_says_to_write_i() -> None:
    # R reads Days^2 as the interaction power of one variable, which is Days itself
    with pytest.raises(hierlm.FormulaError, match=r"I\(Days\^2\)"):
        hierlm.build_design("Reaction ~ Days^2 + (1 | Subject)", dataset("sleepstudy"))


def test_misplaced_comma_is_pointed_at() -> None:
    with pytest.raises(hierlm.FormulaError, match=r"unexpected ',' at ', \(1 \| Subject\)'"):
        hierlm.build_design("Reaction ~ Days, (1 | Subject)", dataset("sleepstudy"))


def test_fixed_effects_ordered_by_degree_as_in_r() -> None:
    # R: colnames(model.matrix(~ a * b + c)) is (Intercept), a, bo, c, a:bo.
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"y": rng.normal(size=60), "a": rng.normal(size=60),
                         "b": np.tile(["e", "o"], 30), "c": rng.normal(size=60),
                         "g": np.repeat([f"g{i}" for i in range(6)], 10)})
    d = hierlm.build_design("y ~ a * b + c + (1 | g)", data)
    assert d.fixef_names == ("(Intercept)", "a", "bo", "c", "a:bo")
    np.testing.assert_allclose(d.X[:, 3], data["c"])
    np.testing.assert_allclose(d.X[:, 4], data["a"] * (data["b"] == "o"))
