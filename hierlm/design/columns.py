"""Which data columns a formula part reads, checking a frame holds them, and the
plain-column fast path for model matrices.

Shared by the fitting data (:mod:`hierlm.design.matrices`) and new data
(:mod:`hierlm.design.newdata`): a formula part's variables are its ``+``-joined
identifiers when it has no other syntax, else R's term parser and ``formulae`` name
them; ``1``, ``0`` and numeric columns joined by ``+`` become a matrix without
``formulae``.  Every problem is a one-line :class:`~hierlm.errors.DataError` or
:class:`~hierlm.errors.FormulaError` naming the column or part at fault.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet

import numpy as np
import pandas as pd

from hierlm.design.fitting_rows import FittingRows
from hierlm.design.formula_safety import check_expression, safe_environment
from hierlm.design.frames import as_pandas
from hierlm.design.grouping_types import grouping_column
from hierlm.design.names import is_r_name, python_power
from hierlm.design.r_dialect import to_formulae
from hierlm.design.rterms import parse_terms
from hierlm.design.variables import parse_c_call
from hierlm.errors import DataError, FormulaError

__all__ = ["_first_line", "_simple_matrix", "_source_columns", "_variables",
           "check_columns", "formulae_common", "group_labels"]


def _first_line(exc: Exception) -> str:
    """A one-line account of an exception raised inside ``formulae`` or numpy."""
    if isinstance(exc, KeyError) and exc.args:
        return f"unknown function or variable {exc.args[0]!r}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _variables(expr: str, what: str) -> set[str]:
    tokens = [t.strip() for part in expr.split("~") for t in part.split("+")]
    if all(t.isidentifier() or t in ("0", "1") for t in tokens):  # no parsing needed
        return {t for t in tokens if t.isidentifier()}
    names: set[str] = set()
    for part in expr.split("~"):
        terms = parse_terms(part)
        for label in terms.variables:
            names |= _source_columns(terms.source[label], what)
    return names


def _source_columns(source: str, what: str) -> set[str]:
    """Data columns one variable of a formula reads."""
    if source.startswith("`"):
        return {source[1:-1]}
    if is_r_name(source) or source.isidentifier():
        return {source}
    c = parse_c_call(source)
    if c is not None:
        return {c[0]}
    import formulae as fm  # imported on first use: it costs ~0.4 s (scipy.interpolate)

    expr = to_formulae(python_power(source))
    check_expression(expr, what)  # parsed, nothing evaluated: only whitelisted calls
    try:
        names = set(fm.model_description(f"0 + {expr}").var_names)
    except Exception as exc:  # formulae raises many types; report one clear error
        raise FormulaError(f"cannot parse {what} '{source}': {_first_line(exc)}") from None
    names.discard("")  # keyword arguments of a call
    return names


def _simple_matrix(expr: str, data: pd.DataFrame | FittingRows,
                   column: Callable[[str], pd.Series] | None = None
                   ) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """``1``, ``0`` and plain numeric columns joined by ``+``, built without formulae.

    formulae costs milliseconds per call, which dominates small fits; anything else
    (factors, transformations, interactions, ``-``) returns None and goes to formulae.
    ``column(name)``, when given, is ``data[name]`` (kept by the caller across calls).
    """
    tokens = [t.strip() for t in expr.split("+")]
    intercept = "0" not in tokens
    cols = [t for t in tokens if t not in ("0", "1")]
    if (len(set(cols)) != len(cols) or any(not (t.isidentifier() and is_r_name(t))
                                           or t not in data.columns for t in cols)):
        return None
    # each column looked up once (0.015 ms a lookup)
    series = [data[t] if column is None else column(t) for t in cols]
    for col in series:
        dt = col.dtype
        if isinstance(dt, np.dtype) and dt.kind in "iuf":
            continue  # (NumPy's numbers, without pandas' dtype checks: 3-4 us each)
        if not (pd.api.types.is_integer_dtype(dt) or pd.api.types.is_float_dtype(dt)):
            return None
    names = (("(Intercept)",) if intercept else ()) + tuple(cols)
    # filled in place: the same matrix as ``np.column_stack`` of the columns
    out = np.empty((len(data), len(names)))
    if intercept:
        out[:, 0] = 1.0
    for j, col in enumerate(series, start=int(intercept)):
        out[:, j] = col.to_numpy(dtype=np.float64)
    return out, names


def formulae_common(expr: str, data: pd.DataFrame | FittingRows, what: str) -> object | None:
    """formulae's common-effects matrix of ``expr`` on ``data`` (None when it has no column).

    Its ``evaluate_new_data`` codes new rows with the same levels and transformations
    (:mod:`hierlm.design.newdata`).
    """
    import formulae as fm

    if isinstance(data, FittingRows):
        data = data.frame  # formulae reads a DataFrame

    expr_fm = to_formulae(expr)
    check_expression(expr_fm, what)  # before formulae evaluates anything
    try:
        dm = fm.design_matrices(expr_fm, data, na_action="error", env=safe_environment())
    except FormulaError:
        raise
    except Exception as exc:
        raise FormulaError(f"cannot evaluate {what} '{expr}': {_first_line(exc)}") from None
    return dm.common


#: What ``astype(str)`` gives: pandas' text dtype from pandas 3 (object before, which
#: the fast path below does not take).
_STR = pd.Series([], dtype=str).dtype


def group_labels(factors: tuple[str, ...], data: pd.DataFrame | FittingRows) -> pd.Series:
    """Each row's level label of a (possibly interacted) grouping factor, as strings."""
    labels = None
    for f in factors:
        col = grouping_column(data[f], f)
        if isinstance(col.dtype, pd.CategoricalDtype):
            s = col.astype(str)
        elif pd.api.types.is_float_dtype(col):
            if not np.all(np.isfinite(col.to_numpy(dtype=np.float64))):
                raise DataError(f"grouping column '{f}' has infinite values")
            s = col.map(lambda v: str(int(v)) if float(v).is_integer() else str(v))
        elif pd.api.types.is_complex_dtype(col):
            raise DataError(f"grouping column '{f}' has complex values")
        elif isinstance(col.dtype, pd.StringDtype) and col.dtype == _STR:
            s = col  # already pandas' text dtype: astype(str) would copy it (0.08 ms)
        else:
            s = col.astype(str)
        labels = s if labels is None else labels + ":" + s
    assert labels is not None
    return labels


def check_columns(data: object, used: AbstractSet[str], name: str = "data",
                  require_rows: bool = True) -> pd.DataFrame:
    """``data`` as a DataFrame holding each of ``used`` once; DataError naming the fault.

    Shared by fitting data and new data (``name`` is how messages call the frame).
    """
    data = as_pandas(data, name)  # polars, pyarrow, ... through narwhals
    if isinstance(data.columns, pd.MultiIndex):
        raise DataError(f"{name} has MultiIndex columns; flatten them to single string names")
    if require_rows and len(data) == 0:
        raise DataError(f"{name} has no rows")
    missing = sorted(c for c in used if c not in data.columns)
    if missing:
        raise DataError(f"column(s) not found in {name}: {', '.join(missing)}")
    dup = ([] if data.columns.is_unique  # kept by pandas: no scan after the first call
           else sorted({str(c) for c in data.columns[data.columns.duplicated()]} & used))
    if dup:
        raise DataError(f"column name(s) appear more than once in {name}: {', '.join(dup)}")
    return data
