"""Errors that name the culprit: predictor columns of unusable types, unicode names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.errors import DataError


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    n = 40
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "y": rng.normal(size=n), "g": np.repeat(list("abcd"), 10), "x": rng.normal(size=n),
        "t": pd.date_range("2020-01-01", periods=n),
        "tz": pd.date_range("2020-01-01", periods=n, tz="UTC"),
        "dt": pd.to_timedelta(np.arange(n), unit="D"),
        "per": pd.period_range("2020-01", periods=n, freq="M"),
        "mixed": pd.Series([1, "a", 2.5, "b"] * 10, dtype=object),
        "objnum": pd.Series([1.0, 2, 3.5, 4] * 10, dtype=object),
    })


@pytest.mark.parametrize("column, dtype, advice", [
    ("t", "datetime64", "numbers"),
    ("tz", "datetime64", "numbers"),
    ("dt", "timedelta64", "numbers"),
    ("per", "period", "numbers"),
    ("mixed", "object", "one type"),
    ("objnum", "object", "pd.to_numeric"),
])
@pytest.mark.parametrize("where", ["y ~ {c} + (1 | g)", "y ~ x + np.log({c}) + (1 | g)",
                                   "y ~ x + (1 + {c} | g)", "y ~ x:{c} + (1 | g)"])
def test_unusable_predictor_names_column_dtype_and_fix(data: pd.DataFrame, column: str,
                                                       dtype: str, advice: str,
                                                       where: str) -> None:
    before = data.copy()
    with pytest.raises(DataError) as err:
        hierlm.fit(where.format(c=column), data)
    msg = str(err.value)
    assert f"'{column}'" in msg and dtype in msg and advice in msg, msg
    assert "unrecognized type" not in msg
    pd.testing.assert_frame_equal(data, before)


def test_the_advice_works(data: pd.DataFrame) -> None:
    """Days since the start as a number, or the dates as a category, fit."""
    days = data.assign(days=(data["t"] - data["t"].min()).dt.days)
    res = hierlm.fit("y ~ days + (1 | g)", days)
    assert "days" in res.fixef.index
    res = hierlm.fit("y ~ objnum + (1 | g)", data.assign(objnum=pd.to_numeric(data["objnum"])))
    assert "objnum" in res.fixef.index


def test_object_column_of_one_other_type(data: pd.DataFrame) -> None:
    d = data.assign(ob=pd.Series([True, False] * 20, dtype=object))
    with pytest.raises(DataError, match="'ob' has dtype object.*of type bool.*astype"):
        hierlm.fit("y ~ ob + (1 | g)", d)


def test_unicode_grouping_name_needs_no_backquotes(data: pd.DataFrame) -> None:
    d = data.rename(columns={"g": "gruppé", "x": "größe"})
    a = hierlm.build_design("y ~ größe + (1 + größe | gruppé)", d)
    b = hierlm.build_design("y ~ größe + (1 + größe | `gruppé`)", d)
    assert a.terms[0].group == b.terms[0].group == "gruppé"
    np.testing.assert_array_equal(a.terms[0].codes, b.terms[0].codes)
    nested = hierlm.build_design("y ~ 1 + (1 | gruppé/ñ)", d.assign(ñ=np.tile([1, 2], 20)))
    assert [t.group for t in nested.terms] == ["ñ:gruppé", "gruppé"]
