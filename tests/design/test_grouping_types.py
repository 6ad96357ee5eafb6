"""Grouping columns of mixed Python types: one stated rule (docs/robustness.md).

An object grouping column may not mix text with numbers (``1`` and ``"1"``): that is a
DataError naming the column and the types.  Numbers follow pandas' (Python's) equality:
``1`` and ``1.0`` are one level, in an object column as in int and float columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.errors import DataError


def _frame(groups: list[object]) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = len(groups)
    return pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n),
                         "g": pd.Series(groups, dtype=object)})


def test_text_mixed_with_numbers_is_refused() -> None:
    data = _frame([1, "1", 1.0, 2, "2", 2.0] * 5)
    before = data.copy()
    with pytest.raises(DataError) as err:
        hierlm.build_design("y ~ x + (1 | g)", data)
    msg = str(err.value)
    assert "'g'" in msg and "float" in msg and "int" in msg and "str" in msg, msg
    pd.testing.assert_frame_equal(data, before)


def test_numbers_follow_pandas_equality() -> None:
    """1 and 1.0 are one level (1 == 1.0), as they are in int and float columns."""
    groups = [1, 1.0, 2, 2.0, 3, 3.0] * 5
    obj = hierlm.build_design("y ~ x + (1 | g)", _frame(groups))
    assert obj.terms[0].levels == ("1", "2", "3")
    # the same grouping as a float column, and as pandas groups the object column
    flt = _frame(groups).assign(g=lambda d: d["g"].astype(float))
    ref = hierlm.build_design("y ~ x + (1 | g)", flt).terms[0]
    np.testing.assert_array_equal(obj.terms[0].codes, ref.codes)
    assert _frame(groups).groupby("g").ngroups == 3


def test_numbers_order_by_value_in_an_object_column() -> None:
    groups = [10, 2, 1.0, 2.0, 10.0, 1] * 5
    d = hierlm.build_design("y ~ x + (1 | g)", _frame(groups))
    assert d.terms[0].levels == ("1", "2", "10")


def test_large_integers_stay_exact() -> None:
    """Integers beyond 2**53 are not merged by a float conversion."""
    big = 2**53
    groups = [big, big + 1, big + 2] * 10
    d = hierlm.build_design("y ~ x + (1 | g)", _frame(groups))
    assert d.terms[0].levels == (str(big), str(big + 1), str(big + 2))
    d = hierlm.build_design("y ~ x + (1 | g)", _frame([big + 1, 1, 1.0, big] * 10))
    assert sorted(d.terms[0].levels) == sorted(["1", str(big), str(big + 1)])


def test_new_data_follow_the_same_rule() -> None:
    data = _frame([1, 2, 3, 1.0, 2.0, 3.0] * 5)
    res = hierlm.fit("y ~ x + (1 | g)", data)
    same = res.predict(pd.DataFrame({"x": [0.0, 0.0], "g": pd.Series([1.0, 2], dtype=object)}))
    ref = res.predict(pd.DataFrame({"x": [0.0, 0.0], "g": [1, 2]}))
    np.testing.assert_array_equal(same.to_numpy(), ref.to_numpy())
    with pytest.raises(DataError, match="'g'"):
        res.predict(pd.DataFrame({"x": [0.0, 0.0], "g": pd.Series([1, "2"], dtype=object)}))


def test_text_and_bool_groupings_are_unchanged() -> None:
    d = hierlm.build_design("y ~ x + (1 | g)", _frame(["b", "a", "c"] * 10))
    assert d.terms[0].levels == ("a", "b", "c")
    with pytest.raises(DataError, match="'g'"):
        hierlm.build_design("y ~ x + (1 | g)", _frame([True, "a", 1] * 10))
