"""The used columns of the fitting rows, each read once (for :mod:`hierlm.design.matrices`).

A design reads a handful of columns several times (missing values, the response, the
fixed and random model matrices, the grouping factors).  Each pandas lookup
(``frame[name]``) costs 0.01 ms and a new frame of the used columns with fresh row
labels (``take`` + ``reset_index``) 0.03-0.05 ms, a good part of a small model's design.
:class:`FittingRows` holds each used column as a Series, read once, and builds the
DataFrame of the fitting rows only when something needs one (a formula call such as
``log(x)`` evaluated by ``formulae``, the new-data coder's frame), which the plain
columns, factors and grouping columns of most models do not.

When every row is kept (and pandas copies on write, pandas 3), the Series are the
caller's own columns as read: pandas 3 keeps them unchanged whatever the caller does
to the frame afterwards, so the frame built later from them holds the values at the
time of the fit.  Otherwise (rows dropped, or pandas 2) the frame of the kept rows is
built at once, as a copy, and the columns are read from it.  Either way a column is the
same Series values and dtype as ``frame[name]`` (a categorical's unused categories
dropped), and :attr:`FittingRows.frame` the same DataFrame (the used columns in the
data's order, rows labelled ``0..n-1``).

The times before and after (``python -m benchmarks.fit_parts``) are in
:mod:`hierlm.design.matrices`.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pandas as pd

from hierlm.design.column_reads import arrow_text_codes

__all__ = ["FittingRows", "text_codes"]


class FittingRows:
    """Columns of the fitting rows, looked up like a DataFrame's (``rows[name]``).

    ``series`` holds the used columns read off ``data`` (every row kept, pandas copying
    on write); ``frame``, when given, is the DataFrame of the fitting rows, read
    instead.  ``categorical`` names the categorical columns, whose unused categories
    are dropped.

    Examples
    --------
    >>> data = pd.DataFrame({"y": [1.0, 2.0], "g": ["a", "b"], "unused": [0, 0]},
    ...                     index=[10, 11])
    >>> rows = FittingRows(data, ["y", "g"], [data["y"], data["g"]], [])
    >>> len(rows), "g" in rows.columns, rows["y"].tolist()
    (2, True, [1.0, 2.0])
    >>> rows.frame.to_dict("list"), rows.frame.index.tolist()
    ({'y': [1.0, 2.0], 'g': ['a', 'b']}, [0, 1])
    """

    __slots__ = ("_codes", "_frame", "_labels", "_lock", "_n", "_series", "columns")

    def __init__(self, data: pd.DataFrame, names: list[str], series: list[pd.Series],
                 categorical: list[str], frame: pd.DataFrame | None = None) -> None:
        self._lock = threading.Lock()
        self._frame = frame
        self._codes: dict[str, tuple[np.ndarray, tuple[str, ...]] | None] = {}
        #: the used columns' labels (``name in rows.columns``), in the data's order
        self.columns: dict[str, int] = {c: i for i, c in enumerate(names)}
        if frame is not None:
            self._series: dict[str, pd.Series] = {}
            self._n = len(frame)
            self._labels = frame.columns
            return
        self._series = dict(zip(names, series, strict=True))
        for c in categorical:
            self._series[c] = self._series[c].cat.remove_unused_categories()
        self._n = len(data)
        # the column labels as the data hold them (their Index's dtype), read when the
        # frame is built; an Index is immutable, so later renames of ``data`` miss it
        self._labels = data.columns

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, name: str) -> pd.Series:
        try:
            return self._series[name]
        except KeyError:
            if self._frame is None or name not in self.columns:
                raise
        col = self._frame[name]
        self._series[name] = col
        return col

    def text_codes(self, name: str) -> tuple[np.ndarray, tuple[str, ...]] | None:
        """:func:`~hierlm.design.column_reads.arrow_text_codes` of a column, found once
        (a column can be a fixed-effects factor and a grouping factor)."""
        if name not in self._codes:
            self._codes[name] = arrow_text_codes(self[name])
        return self._codes[name]

    @property
    def frame(self) -> pd.DataFrame:
        """The fitting rows' used columns as a DataFrame (built on first read, once)."""
        if self._frame is None:
            with self._lock:
                if self._frame is None:
                    self._frame = self._build()
        return self._frame

    def _build(self) -> pd.DataFrame:
        names = list(self.columns)
        # copies of the columns' arrays (the caller's memory is not shared), rows 0..n-1
        out = pd.DataFrame({i: self._series[c].array for i, c in enumerate(names)},
                           index=pd.RangeIndex(self._n))
        labels = self._labels
        at = [labels.get_loc(c) for c in names]
        out.columns = labels[np.asarray(at, dtype=np.int64)]
        return out


def text_codes(data: Any, name: str) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """:meth:`FittingRows.text_codes` of ``data`` (a DataFrame: found afresh)."""
    if isinstance(data, FittingRows):
        return data.text_codes(name)
    return arrow_text_codes(data[name])
