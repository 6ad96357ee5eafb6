"""Predictor columns whose type a formula cannot use, named before formulae sees them.

A predictor (a column in the fixed part or a random term's left side) must be numbers
(int, float), booleans, text or a categorical.  Dates, time spans, periods, intervals
and object columns holding anything but text (numbers stored as objects, a mix of text
and numbers) have no meaning as a model column; formulae would stop with "unrecognized
type (<class 'pandas.Series'>)".  Instead one :class:`~hierlm.errors.DataError` names
the column and its dtype and says how to convert it.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import pandas as pd

from hierlm.errors import DataError

__all__ = ["check_predictor_types"]

_TIME = ("numbers (e.g. days since the start: (d['{c}'] - d['{c}'].min()).dt.days) or to "
         "a category (d['{c}'].astype(str))")


def _advice(col: pd.Series, c: str) -> str | None:
    """What to do with column ``c``, or None if a formula can use it."""
    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return None
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return "convert it to " + _TIME.format(c=c)
    is_object = pd.api.types.is_object_dtype(dtype)
    if pd.api.types.is_numeric_dtype(dtype) or (pd.api.types.is_string_dtype(dtype)
                                                and not is_object):
        return None
    if not is_object:
        return f"convert it to numbers or to a category (d['{c}'].astype(str))"
    values = col[col.notna()]
    kinds = {str if isinstance(v, str) else
             numbers.Real if isinstance(v, numbers.Real) and not isinstance(v, bool) else
             type(v) for v in values}
    if kinds <= {str}:
        return None
    types = ", ".join(sorted({type(v).__name__ for v in values}))
    if kinds == {numbers.Real}:
        return (f"it holds numbers as Python objects ({types}); convert it with "
                f"pd.to_numeric(d['{c}'])")
    if len(kinds) == 1:
        return (f"it holds Python objects of type {types}; convert it to numbers, booleans "
                f"or a category (d['{c}'].astype(str))")
    return (f"it mixes Python types ({types}); convert it to one type: d['{c}'].astype(str) "
            f"for a category, pd.to_numeric(d['{c}']) for numbers")


def check_predictor_types(data: pd.DataFrame, columns: Iterable[str]) -> None:
    """DataError naming the first of ``columns`` that a formula cannot use.

    Examples
    --------
    >>> d = pd.DataFrame({"x": [1.0, 2.0], "t": pd.to_datetime(["2020-01-01", "2020-01-03"])})
    >>> d["t"] = d["t"].astype("datetime64[us]")
    >>> check_predictor_types(d, ["x"])
    >>> check_predictor_types(d, ["x", "t"])
    Traceback (most recent call last):
    ...
    hierlm.errors.DataError: predictor column 't' has dtype datetime64[us], which a formula \
cannot use; convert it to numbers (e.g. days since the start: (d['t'] - \
d['t'].min()).dt.days) or to a category (d['t'].astype(str))
    """
    for c in sorted(set(columns), key=str):
        if c not in data.columns:
            continue
        advice = _advice(data[c], str(c))
        if advice is not None:
            raise DataError(f"predictor column '{c}' has dtype {data[c].dtype}, which a "
                            f"formula cannot use; {advice}")
