"""ranova with ``||`` and the row order of anova and ranova, against lmerTest
(``lme4_numerics.json``, made by ``make_numerics.R``)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from tests.conftest import dataset, reference_file


def _case(name: str) -> dict:
    return reference_file("lme4_numerics.json")[name]


def _fit(case: dict) -> hierlm.FitResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hierlm.SingularFitWarning)
        return hierlm.fit(case["formula"], dataset(case["data"]))


def _ranova_matches(case: dict) -> None:
    ref = pd.DataFrame(case["ranova"]).set_index("term")
    got = _fit(case).ranova()
    assert got.index.tolist() == ref.index.tolist()  # lmerTest's rows, in its order
    assert got["npar"].tolist() == ref["npar"].tolist()
    np.testing.assert_allclose(got["loglik"], ref["loglik"], rtol=1e-7)
    rows = ref.index[1:]
    assert got.loc[rows, "df"].astype(int).tolist() == ref.loc[rows, "df"].astype(int).tolist()
    np.testing.assert_allclose(got.loc[rows, "lrt"], ref.loc[rows, "lrt"].astype(float),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.loc[rows, "p"], ref.loc[rows, "p"].astype(float),
                               rtol=1e-3)


def test_ranova_of_an_uncorrelated_slope_removes_the_slope_term() -> None:
    """``(1 + cses || school)``: the slope's row drops ``(0 + cses | school)`` (df 1),
    not replaces it by a second ``(1 | school)`` (df 0, p NA)."""
    _ranova_matches(_case("hsb82_ranova_uncorrelated"))


@pytest.mark.parametrize("name", ["penicillin_ranova_order", "hsb82_ranova_order"])
def test_ranova_rows_follow_the_formula(name: str) -> None:
    _ranova_matches(_case(name))


@pytest.mark.parametrize("kind", ["anova", "anova_type1"])
def test_anova_rows_by_degree_as_lmertest(kind: str) -> None:
    case = _case("hsb82_anova_order")
    ref = pd.DataFrame(case[kind]).set_index("term")
    got = _fit(case).anova(type=1 if kind == "anova_type1" else 3)
    assert got.index.tolist() == ref.index.tolist()
    np.testing.assert_allclose(got["F"], ref["F"], rtol=1e-4)
    np.testing.assert_allclose(got["den_df"], ref["den_df"], rtol=2e-3)
