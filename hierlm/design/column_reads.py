"""Reading a frame's used columns with few pandas objects (for :mod:`hierlm.design.matrices`).

Each pandas call costs 0.005-0.03 ms, which adds up in a small model's design: these
helpers read what the design needs off the columns' arrays.  Every result is the same as
the plain pandas expression it replaces (named in each docstring):

* the rows without a missing value, column by column (``notna().all(axis=1)``);
* the level codes and sorted levels of a text column held by Arrow, from its dictionary
  encoding (``np.unique(..., return_inverse=True)``);
* the labels of the rows used and dropped (``index[keep]``, ``index[~keep]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from hierlm.design.lazy import deferred

__all__ = ["PANDAS_3", "arrow_text_codes", "complete_rows", "interaction_codes",
           "row_labels"]


def arrow_text_codes(col: pd.Series) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """Level codes and sorted levels of a text column held by Arrow (pandas' ``str``
    dtype), or None for any other column.

    The same codes and levels as ``np.unique(col.to_numpy(), return_inverse=True)`` (text
    sorted by code point, as Python sorts ``str``): Arrow's dictionary encoding gives each
    row the index of its value among the distinct values in order of appearance, and only
    those few values are sorted (0.02 ms against 0.06 ms for penicillin's 144 rows; the
    column is not turned into Python strings).  A column of at most
    :data:`PYTHON_ROWS` rows is coded by dicts instead (its distinct values, sorted,
    and each row's level looked up): between fits, when the processor's caches hold the
    optimizer's work, sleepstudy's ``Subject`` (180 rows) took 0.08-0.12 ms through
    Arrow's kernels and 0.04 ms so.

    Examples
    --------
    >>> codes, levels = arrow_text_codes(pd.Series(["b", "a", "b", "c"], dtype="str"))
    >>> codes.tolist(), levels
    ([1, 0, 1, 2], ('a', 'b', 'c'))
    >>> arrow_text_codes(pd.Series([1, 2])) is None
    True
    """
    dtype = col.dtype
    if not (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"):
        return None
    chunked = col.array.__arrow_array__()
    if chunked.null_count:  # (the rows kept have no missing value)
        return None
    if len(chunked) <= PYTHON_ROWS:
        # a few rows: the distinct values by a dict (Arrow's compute kernels cost
        # 0.05-0.1 ms a call when the processor's caches hold other work, as between
        # fits), sorted, and each row's level looked up in C (``map`` over a dict's
        # lookup: 21 against 26 us for sleepstudy's Subject, median of 5,000, than a
        # Python loop giving codes in order of appearance, ranked afterwards)
        values = chunked.to_pylist()
        levels = sorted(dict.fromkeys(values))
        index = {v: i for i, v in enumerate(levels)}
        return (np.fromiter(map(index.__getitem__, values), dtype=np.int64,
                            count=len(values)), tuple(levels))
    encoded = (chunked.combine_chunks() if chunked.num_chunks != 1
               else chunked.chunk(0)).dictionary_encode()
    distinct = encoded.dictionary.to_pylist()
    appearance = encoded.indices.to_numpy(zero_copy_only=False)
    order = sorted(range(len(distinct)), key=distinct.__getitem__)
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[order] = np.arange(len(distinct), dtype=np.int64)
    return rank[appearance], tuple(distinct[i] for i in order)


#: Columns of at most this many rows are coded by a dict in Python, longer ones by Arrow.
PYTHON_ROWS = 512

#: pandas 3 or later (whose RangeIndex selections :func:`row_labels` reproduces)
PANDAS_3 = int(pd.__version__.split(".")[0]) >= 3


def complete_rows(columns: Sequence[pd.Series], dtypes: Sequence[object]) -> np.ndarray:
    """Rows without a missing value in any of ``columns``: ``frame.notna().all(axis=1)``
    of their frame, read column by column off the arrays (``dtypes``: the columns'
    dtypes; int and bool columns hold none), 0.02 ms against 0.065 ms.

    Examples
    --------
    >>> d = pd.DataFrame({"x": [1.0, np.nan, 3.0], "n": [1, 2, 3], "g": ["a", "b", None]})
    >>> complete_rows([d[c] for c in d.columns], list(d.dtypes)).tolist()
    [True, False, False]
    """
    keep = np.ones(len(columns[0]) if columns else 0, dtype=bool)
    for col, dtype in zip(columns, dtypes, strict=True):
        if isinstance(dtype, np.dtype) and dtype.kind in "iub":
            continue
        values = col.array
        if (isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"
                and not values.__arrow_array__().null_count):
            continue  # text held by Arrow knows its count of missing values
        missing = (np.isnan(np.asarray(values)) if isinstance(dtype, np.dtype)
                   and dtype.kind == "f" else np.asarray(values.isna(), dtype=bool))
        if missing.any():
            keep &= ~missing
    return keep


def _factor_codes(col: pd.Series) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """Codes and labels of a text (Arrow) or integer grouping column, else None."""
    dt = col.dtype
    if isinstance(dt, np.dtype):
        if dt.kind not in "iu":
            return None
        uniques, codes = np.unique(col.to_numpy(), return_inverse=True)
        return np.asarray(codes, dtype=np.int64), tuple(str(v) for v in uniques)
    return arrow_text_codes(col)


def interaction_codes(columns: list[pd.Series],
                      text: list[tuple[np.ndarray, tuple[str, ...]] | None] | None = None
                      ) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """Level codes and sorted labels of the interaction of grouping columns that hold
    text (Arrow) or integers; None for any other columns.

    The same as ``np.unique(labels, return_inverse=True)`` of the rows' labels ``a:b``
    (each column's values as text, joined by ``:``), without building a label per
    row: each column's codes are combined into one integer per row, and only the
    distinct combinations are written as text and sorted (0.09 ms against 0.25 ms for
    pastes' ``cask:batch``, 60 rows, thread CPU time, best of 500).  Where two
    combinations would write the same label (text holding ``:``), None: the caller
    joins the rows' labels.  ``text``: each column's
    :func:`arrow_text_codes` where the caller has them (None: found here).

    Examples
    --------
    >>> codes, labels = interaction_codes([pd.Series(["b", "a", "b"], dtype="str"),
    ...                                    pd.Series([10, 2, 2])])
    >>> codes.tolist(), labels
    ([1, 0, 2], ('a:2', 'b:10', 'b:2'))
    """
    known = text or [None] * len(columns)
    parts = [_factor_codes(c) if t is None else t for c, t in zip(columns, known, strict=True)]
    if any(p is None for p in parts):
        return None
    size = 1
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for p in parts:
        assert p is not None
        codes, labels = p
        size *= max(len(labels), 1)
        if size >= 2**62:  # (the combined code would overflow)
            return None
        key = key * len(labels) + codes
    combos, inverse = np.unique(key, return_inverse=True)
    digits = []
    rest = combos
    for p in reversed(parts):
        assert p is not None
        digits.append(rest % len(p[1]))
        rest = rest // len(p[1])
    digits.reverse()
    pieces = [[p[1][d] for d in ds.tolist()] for p, ds in zip(parts, digits, strict=True)
              if p is not None]
    joined = [":".join(t) for t in zip(*pieces, strict=True)]
    if len(set(joined)) != len(joined):
        return None
    order = sorted(range(len(joined)), key=joined.__getitem__)
    rank = np.empty(len(joined), dtype=np.int64)
    rank[order] = np.arange(len(joined), dtype=np.int64)
    return rank[np.asarray(inverse, dtype=np.int64).ravel()], tuple(joined[i] for i in order)


def row_labels(index: pd.Index, keep: np.ndarray, n_dropped: int) -> dict[str, pd.Index]:
    """The caller's labels of the rows used and dropped: ``index[keep]``, ``index[~keep]``.

    A RangeIndex with every row used gives the same RangeIndexes from ``copy`` and an empty
    one (pandas 3), without the boolean selections (0.01 ms each), built when first read
    (:func:`hierlm.design.lazy.deferred`: values for a :func:`~hierlm.design.lazy.lazy_fields`
    record such as :class:`~hierlm.design.terms.ModelDesign`).

    Examples
    --------
    >>> out = row_labels(pd.Index([10, 11, 12]), np.array([True, False, True]), 1)
    >>> out["row_labels"].tolist(), out["dropped_rows"].tolist()
    ([10, 12], [11])
    """
    if not n_dropped and type(index) is pd.RangeIndex and PANDAS_3:
        # built when first read (hierlm.design.lazy; a fit's result passes them on
        # unread): a RangeIndex is its start, stop, step and name, read now
        start, stop, step, name = index.start, index.stop, index.step, index.name
        return {"row_labels": deferred(lambda: pd.RangeIndex(start, stop, step, name=name)),
                "dropped_rows": deferred(lambda: pd.RangeIndex(0, 0, 1, name=name))}
    return {"row_labels": index[keep], "dropped_rows": index[~keep]}
