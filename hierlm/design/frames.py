"""Data frames other than pandas: polars, pyarrow and the rest of what narwhals reads.

hierlm works on pandas internally.  A pandas DataFrame is used as it is (no copy, no
import of anything else).  Any other eager data frame that ``narwhals`` supports (a
polars DataFrame, a pyarrow Table, modin, cuDF, ...) is converted once, at the entry
(``fit``, ``Model``, ``predict``, ``simulate``, ``marginal_moments``, new data), with
narwhals' ``to_pandas``: a new frame, so the caller's data are never modified.  Its
rows get the labels 0..n-1, which results (fitted values, predictions) are indexed by.
A lazy frame (a polars LazyFrame, a DuckDB relation, ...) is refused with a message
saying to collect it.  An unordered categorical (a polars Categorical, a pyarrow
dictionary column) gets its categories sorted, as R's ``factor()`` sorts its levels:
their order is the order values were stored in, not a choice of the user's.  An
ordered one (a polars Enum arrives as an ordered categorical) keeps its order.
narwhals is a well-kept, dependency-free layer over these libraries, so hierlm needs
no code of its own for each.
"""

from __future__ import annotations

import pandas as pd

from hierlm.errors import DataError

__all__ = ["as_pandas"]


def as_pandas(data: object, name: str = "data") -> pd.DataFrame:
    """``data`` as a pandas DataFrame; DataError if it is not a data frame.

    Parameters
    ----------
    data : pandas.DataFrame, polars.DataFrame, pyarrow.Table or any eager frame narwhals reads
        The frame.  A pandas DataFrame is returned as it is.
    name : str
        How messages call the frame (``"data"``, ``"newdata"``).

    Returns
    -------
    pandas.DataFrame

    Examples
    --------
    >>> import pyarrow as pa
    >>> as_pandas(pa.table({"y": [1.0, 2.0], "g": ["a", "b"]})).to_dict("list")
    {'y': [1.0, 2.0], 'g': ['a', 'b']}
    >>> as_pandas({"y": [1.0]})
    Traceback (most recent call last):
    ...
    hierlm.errors.DataError: data must be a pandas DataFrame or a data frame that narwhals \
reads (polars, pyarrow, ...), got dict
    """
    if isinstance(data, pd.DataFrame):
        return data
    import narwhals as nw  # imported only for frames that are not pandas

    try:
        frame = nw.from_native(data)  # type: ignore[call-overload]
    except TypeError:  # not a data frame narwhals knows
        frame = None
    if isinstance(frame, nw.DataFrame):
        return _sorted_categories(frame.to_pandas())
    if isinstance(frame, nw.LazyFrame):
        raise DataError(f"{name} is a lazy frame ({type(data).__name__}); collect() it "
                        f"into a data frame first")
    raise DataError(f"{name} must be a pandas DataFrame or a data frame that narwhals reads "
                    f"(polars, pyarrow, ...), got {type(data).__name__}")


def _sorted_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the categories of each unordered categorical column sorted."""
    for c in frame.columns:
        dtype = frame[c].dtype
        if isinstance(dtype, pd.CategoricalDtype) and not dtype.ordered:
            try:
                cats = sorted(dtype.categories)
            except TypeError:  # categories of mixed types: keep them as stored
                continue
            frame[c] = frame[c].cat.reorder_categories(cats)
    return frame
