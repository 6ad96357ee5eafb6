"""One rule for grouping columns that hold Python objects of several types.

A grouping column of dtype ``object`` may hold text, numbers or booleans, but not a mix
of them: ``1`` and ``"1"`` are different values to pandas and R but print the same, so
a mix is a :class:`~hierlm.errors.DataError` naming the column and the types found.
Numbers follow pandas' (Python's) equality: ``1``, ``1.0`` and ``np.int64(1)`` are one
level, as they are when the column is int or float; an object column of numbers is
read as a float column when that is exact (every value equals its float), so its levels
are ordered by value.  When a float cannot hold every value exactly (integers beyond
2**53), the values become exact text labels, integral values written as integers.
Missing values (None, NaN) are not a type.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from hierlm.errors import DataError

__all__ = ["grouping_column"]


def _kind(value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return "booleans"
    if isinstance(value, numbers.Real):
        return "numbers"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


def grouping_column(col: pd.Series, name: str) -> pd.Series:
    """``col`` with the rule above applied; a non-object column is returned unchanged.

    Examples
    --------
    >>> grouping_column(pd.Series([1, 1.0, 2], dtype=object), "g").tolist()
    [1.0, 1.0, 2.0]
    >>> grouping_column(pd.Series([1, "1"], dtype=object), "g")
    Traceback (most recent call last):
    ...
    hierlm.errors.DataError: grouping column 'g' mixes numbers and text (Python types \
int, str); convert it to one type first, e.g. data['g'].astype(str)
    """
    if not pd.api.types.is_object_dtype(col.dtype):
        return col
    values = col[col.notna()]
    kinds = {_kind(v) for v in values}
    if len(kinds) > 1:
        types = ", ".join(sorted({type(v).__name__ for v in values}))
        raise DataError(f"grouping column '{name}' mixes {' and '.join(sorted(kinds))} "
                        f"(Python types {types}); convert it to one type first, "
                        f"e.g. data['{name}'].astype(str)")
    if kinds == {"numbers"}:
        if all(float(v) == v for v in values):  # False for integers beyond 2**53
            return col.astype(np.float64)
        # exact labels, integral values written as integers: 1 and 1.0 are both "1"
        return col.map(lambda v: v if pd.isna(v) else
                       str(int(v)) if np.isfinite(float(v)) and v == int(v) else str(v))
    return col
