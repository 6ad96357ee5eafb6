"""Stage 1: formula + data -> :class:`ModelDesign`.

The response ``y``, the fixed-effects matrix ``X`` and each term's raw model matrix
come from the ``formulae`` package (so the fixed part may use anything it supports:
interactions, ``C()``, transforms).  hierlm itself keeps the covariance-block
structure: formulae splits a bar term into separate terms and knows no ``||``.

Rows with a missing value in any used column are dropped (and counted); rank-
deficient ``X`` loses the columns that a pivoted QR finds redundant, with a
warning naming them, as lme4 does.  The caller's DataFrame is never modified.
"""

from __future__ import annotations

import warnings

import formulae as fm
import numpy as np
import pandas as pd
import scipy.linalg

from hierlm.design.formula import parse_formula
from hierlm.design.terms import FormulaSpec, ModelDesign, RandomTerm, RandomTermSpec
from hierlm.errors import DataError, FormulaError


def _label(name: str) -> str:
    """formulae's column names in lme4's spelling: ``Intercept`` and ``f[b]`` -> ``fb``."""
    if name == "Intercept":
        return "(Intercept)"
    return name.replace("[", "").replace("]", "").replace("T.", "")


def _variables(expr: str, what: str) -> set[str]:
    try:
        return set(fm.model_description(expr).var_names)
    except Exception as exc:  # formulae raises many types; report one clear error
        raise FormulaError(f"cannot parse {what} '{expr}': {exc}".splitlines()[0]) from None


def _model_matrix(expr: str, data: pd.DataFrame, what: str) -> tuple[np.ndarray, tuple[str, ...]]:
    try:
        dm = fm.design_matrices(expr, data, na_action="error")
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FormulaError(f"cannot evaluate {what} '{expr}': {msg}") from None
    if dm.common is None:
        return np.zeros((len(data), 0)), ()
    frame = dm.common.as_dataframe()
    names = tuple(_label(str(c)) for c in frame.columns)
    return np.asarray(frame, dtype=np.float64), names


def _response(spec: FormulaSpec, data: pd.DataFrame) -> np.ndarray:
    name = spec.response
    if name in data.columns:
        col = data[name]
        if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)):
            raise DataError(f"response '{name}' must be numeric, got dtype {col.dtype}")
        y = col.to_numpy(dtype=np.float64)
    else:
        y_mat, _ = _model_matrix(f"0 + {name}", data, "response")
        if y_mat.shape[1] != 1:
            raise DataError(f"response '{name}' must be a single numeric column")
        y = y_mat[:, 0]
    if not np.all(np.isfinite(y)):
        raise DataError(f"response '{name}' has infinite values")
    return y


def _drop_rank_deficient(X: np.ndarray, names: tuple[str, ...]
                         ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Keep a full-rank subset of columns (pivoted QR, lme4's default ``"message+drop.cols"``)."""
    if X.shape[1] == 0:
        return X, names
    _, R, piv = scipy.linalg.qr(X, mode="economic", pivoting=True)
    diag = np.abs(np.diag(R))
    tol = diag.max() * max(X.shape) * np.finfo(float).eps * 1e3 if diag.size else 0.0
    rank = int((diag > tol).sum())
    if rank == X.shape[1]:
        return X, names
    keep = np.sort(piv[:rank])
    dropped = [names[i] for i in sorted(piv[rank:])]
    warnings.warn(f"fixed-effect model matrix is rank deficient; dropping column(s) "
                  f"{', '.join(dropped)}", UserWarning, stacklevel=4)
    return X[:, keep], tuple(names[i] for i in keep)


def _grouping(spec: RandomTermSpec, data: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...]]:
    """Level codes of a (possibly interacted) grouping factor, levels sorted as R sorts them."""
    labels = None
    for f in spec.factors:
        col = data[f]
        if isinstance(col.dtype, pd.CategoricalDtype):
            s = col.astype(str)
        elif pd.api.types.is_float_dtype(col):
            s = col.map(lambda v: str(int(v)) if float(v).is_integer() else str(v))
        else:
            s = col.astype(str)
        labels = s if labels is None else labels + ":" + s
    assert labels is not None
    codes, uniques = pd.factorize(labels, sort=True)
    return codes.astype(np.int64), tuple(str(u) for u in uniques)


def build_design(formula: str, data: pd.DataFrame) -> ModelDesign:
    """Evaluate an lme4-style formula on data.

    Parameters
    ----------
    formula : str
        For example ``"Reaction ~ 1 + Days + (1 + Days | Subject)"``.
    data : pandas.DataFrame
        One row per observation.  Grouping columns may be int, str or categorical.

    Returns
    -------
    ModelDesign
        Response, fixed-effects matrix and random-effects terms in lme4's order.

    Examples
    --------
    >>> import hierlm
    >>> d = build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> d.nobs, d.fixef_names, d.terms[0].group, d.terms[0].coef_names
    (180, ('(Intercept)', 'Days'), 'Subject', ('(Intercept)', 'Days'))
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    spec = parse_formula(formula)
    if len(data) == 0:
        raise DataError("data has no rows")
    used = _variables(f"{spec.response} ~ {spec.fixed}", "fixed part")
    for term in spec.random:
        used |= _variables(term.expr, f"random term ({term.expr} | {term.group})")
    used |= set(spec.columns)
    missing = sorted(c for c in used if c not in data.columns)
    if missing:
        raise DataError(f"column(s) not found in data: {', '.join(missing)}")
    cols = [c for c in data.columns if c in used]
    keep = data[cols].notna().all(axis=1).to_numpy()
    n_dropped = int((~keep).sum())
    if n_dropped == len(data):
        raise DataError("no complete rows: every row has a missing value in a used column")
    if n_dropped:
        warnings.warn(f"dropped {n_dropped} of {len(data)} rows with missing values in "
                      f"used columns", UserWarning, stacklevel=3)
    frame = data.loc[keep, cols].reset_index(drop=True).copy()
    for c in frame.columns:
        if isinstance(frame[c].dtype, pd.CategoricalDtype):
            frame[c] = frame[c].cat.remove_unused_categories()

    y = _response(spec, frame)
    X, names = _model_matrix(spec.fixed, frame, "fixed part")
    if X.shape[1] and not np.all(np.isfinite(X)):
        raise DataError("fixed-effects predictors have infinite values")
    X, names = _drop_rank_deficient(X, names)

    terms = []
    for ts in spec.random:
        codes, levels = _grouping(ts, frame)
        Xi, cnames = _model_matrix(ts.expr, frame, f"random term ({ts.expr} | {ts.group})")
        if Xi.shape[1] == 0:
            raise FormulaError(f"random term ({ts.expr} | {ts.group}) has no columns")
        if not np.all(np.isfinite(Xi)):
            raise DataError(f"random term ({ts.expr} | {ts.group}) has infinite values")
        if len(levels) >= len(y):
            raise DataError(f"grouping factor '{ts.group}' has {len(levels)} levels for "
                            f"{len(y)} observations; it must have fewer levels than "
                            f"observations")
        terms.append(RandomTerm(group=ts.group, coef_names=cnames, levels=levels,
                                codes=codes, X=Xi))
    order = sorted(range(len(terms)), key=lambda i: -terms[i].n_levels)
    terms = [terms[i] for i in order]
    q = sum(t.q for t in terms)
    if q >= len(y):
        raise DataError(f"the model has {q} random effects for {len(y)} observations; "
                        f"it must have fewer random effects than observations")
    return ModelDesign(formula=spec.formula, response=spec.response, y=y, X=X,
                       fixef_names=names, terms=tuple(terms), n_dropped=n_dropped)
