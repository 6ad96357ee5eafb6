"""Prior weights and offsets: checking them and the weighted working problem.

With prior weights ``w`` and an offset ``o`` the model is::

    y = o + X beta + Z b + eps,   eps ~ N(0, sigma^2 W^{-1}),   W = diag(w)

Multiplying row ``i`` by ``sqrt(w_i)`` after subtracting the offset gives the
unweighted model ``y~ = X~ beta + Z~ b + eps~``, ``eps~ ~ N(0, sigma^2 I)``, with
``y~ = W^{1/2} (y - o)``, ``X~ = W^{1/2} X``, ``Z~ = W^{1/2} Z``: its Gram matrix is
``[Z X y-o]' W [Z X y-o]``.  Its densities differ from the original ones by the
Jacobian ``|W|^{1/2}``::

    -2 log p(y) = -2 log p(y~) - sum_i log w_i

so lme4's deviance and REML criterion are the working problem's minus
``sum(log w)`` (lme4's ``ldW``).  Rows with weight 0 carry no information and are
dropped (with a warning), as are rows with missing values.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from hierlm.design.terms import ModelDesign
from hierlm.errors import DataError

__all__ = ["column_or_array", "working_design"]


def column_or_array(value: object, data: pd.DataFrame, what: str) -> tuple[np.ndarray, str | None]:
    """``value`` (a column name or an array of ``len(data)`` numbers) as floats.

    Returns the values and the column name (None for an array).  NaN, infinities, a
    wrong length or a non-numeric column raise :class:`~hierlm.errors.DataError`.

    Examples
    --------
    >>> column_or_array([1, 2], pd.DataFrame({"x": [0, 0]}), "weights")[0]
    array([1., 2.])
    >>> column_or_array("w", pd.DataFrame({"x": [0, 0]}), "weights")
    Traceback (most recent call last):
    ...
    hierlm.errors.DataError: weights column 'w' not found in data
    """
    name = None
    if isinstance(value, str):
        if value not in data.columns:
            raise DataError(f"{what} column '{value}' not found in data")
        name = value
        col = data[value]
        if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise DataError(f"{what} column '{value}' must be numeric, got dtype {col.dtype}")
        arr = col.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{what} must be a column name or an array of numbers") from None
        if arr.ndim != 1 or arr.shape[0] != len(data):
            raise DataError(f"{what} must have one value per row of data ({len(data)}), "
                            f"got shape {arr.shape}")
        arr = arr.copy()
    if np.any(np.isnan(arr)):
        raise DataError(f"{what} have {int(np.isnan(arr).sum())} missing (NaN) value(s)")
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{what} have infinite value(s)")
    return arr, name


def check_weights(w: np.ndarray) -> None:
    """DataError for negative prior weights."""
    if np.any(w < 0):
        raise DataError(f"weights must be non-negative; {int((w < 0).sum())} are negative "
                        f"(first: {w[w < 0][0]!r})")


def sum_log_weights(design: ModelDesign) -> float:
    """``sum(log w)`` over the rows used (0 without weights)."""
    return 0.0 if design.weights is None else float(np.log(design.weights).sum())


def working_design(design: ModelDesign) -> ModelDesign:
    """The unweighted, offset-free working design (the design itself if it has neither).

    Examples
    --------
    >>> import hierlm
    >>> data = hierlm.load_sleepstudy()
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", data,
    ...                         weights=np.full(len(data), 4.0))
    >>> bool(np.allclose(working_design(d).y, 2 * d.y))
    True
    """
    if design.weights is None and design.offset is None:
        return design
    y = design.y if design.offset is None else design.y - design.offset
    if design.weights is None:
        return dataclasses.replace(design, y=y, offset=None)
    sw = np.sqrt(design.weights)
    terms = tuple(dataclasses.replace(t, X=t.X * sw[:, None]) for t in design.terms)
    return dataclasses.replace(design, y=y * sw, X=design.X * sw[:, None], terms=terms,
                               weights=None, offset=None)
