"""Stage 1: formula + data -> :class:`ModelDesign`.

The response ``y``, the fixed-effects matrix ``X`` and each term's raw model matrix
come from the ``formulae`` package (so the fixed part may use anything it supports:
interactions, ``C()``, transforms).  hierlm itself keeps the covariance-block
structure: formulae splits a bar term into separate terms and knows no ``||``.

Rows with a missing value in any used column are dropped (and counted), and
categories that no longer occur afterwards are dropped from categorical columns;
rank-deficient ``X`` loses the columns that are linear combinations of earlier
ones, with a warning naming them, as lme4 does.  Every other problem with the data is a
:class:`~hierlm.errors.DataError` whose one-line message names the column or term at
fault (see ``docs/robustness.md``).  The caller's DataFrame is never modified.
"""

from __future__ import annotations

import re
import warnings

import formulae as fm
import numpy as np
import pandas as pd
import scipy.linalg

from hierlm.design.formula import parse_formula
from hierlm.design.terms import FormulaSpec, ModelDesign, RandomTerm, RandomTermSpec
from hierlm.errors import DataError, FormulaError

# A column is linearly dependent on the columns before it when projecting it off them
# leaves less than this fraction of its norm (R's ``qr(X, tol = 1e-7)``, used by lme4).
RANK_TOL = 1e-7


class RScale:
    """R's ``scale(x)``: centre by the mean and divide by the *sample* SD (``ddof=1``).

    A formulae stateful transform (the mean and SD of the fitting data are kept for new
    data).  formulae's own ``scale`` divides by the population SD, so hierlm rewrites
    ``scale(`` to this transform (see :func:`to_formulae`).

    Examples
    --------
    >>> RScale()(np.array([1.0, 2.0, 3.0])).tolist()
    [-1.0, 0.0, 1.0]
    """

    __stateful_transform__ = True

    def __init__(self) -> None:
        self.params: tuple[float, float] | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.params is None:
            self.params = (float(np.mean(x)), float(np.std(x, ddof=1)))
        mean, sd = self.params
        return (np.asarray(x, dtype=float) - mean) / sd


# Functions an R user writes without a prefix (``log(x)``), and R's ``scale``.
R_NAMESPACE: dict[str, object] = {
    "log": np.log, "exp": np.exp, "sqrt": np.sqrt, "log10": np.log10, "log2": np.log2,
    "log1p": np.log1p, "abs": np.abs, "r_scale_": RScale,
}
_SCALE_CALL = re.compile(r"(?<![\w.])scale\(")


def to_formulae(expr: str) -> str:
    """An expression in formulae's dialect: R's ``scale(`` -> ``r_scale_(``.

    ``^`` raises FormulaError: formulae writes powers and interaction powers as ``**``.

    Examples
    --------
    >>> to_formulae("scale(x) + np.scale(z)")
    'r_scale_(x) + np.scale(z)'
    """
    if "^" in expr:
        raise FormulaError(f"'^' in {expr!r}: write powers as '**', e.g. I(x**2), and "
                           f"(a + b)**2 for all interactions up to degree 2")
    return _SCALE_CALL.sub("r_scale_(", expr)


def _label(name: str) -> str:
    """formulae's column names in lme4's spelling: ``Intercept`` and ``f[b]`` -> ``fb``."""
    if name == "Intercept":
        return "(Intercept)"
    name = name.replace("r_scale_(", "scale(")
    return name.replace("[", "").replace("]", "").replace("T.", "")


def _first_line(exc: Exception) -> str:
    """A one-line account of an exception raised inside ``formulae`` or numpy."""
    if isinstance(exc, KeyError) and exc.args:
        return f"unknown function or variable {exc.args[0]!r}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _variables(expr: str, what: str) -> set[str]:
    expr = to_formulae(expr)
    try:
        names = set(fm.model_description(expr).var_names)
    except Exception as exc:  # formulae raises many types; report one clear error
        raise FormulaError(f"cannot parse {what} '{expr}': {_first_line(exc)}") from None
    names.discard("")  # keyword arguments of a call, as in C(x, levels=...)
    return names


def _simple_matrix(expr: str, data: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """``1``, ``0`` and plain numeric columns joined by ``+``, built without formulae.

    formulae costs milliseconds per call, which dominates small fits; anything else
    (factors, transformations, interactions, ``-``) returns None and goes to formulae.
    """
    tokens = [t.strip() for t in expr.split("+")]
    intercept = "0" not in tokens
    cols = [t for t in tokens if t not in ("0", "1")]
    if (len(set(cols)) != len(cols) or any(not t.isidentifier() or t not in data.columns
                                           for t in cols)):
        return None
    for t in cols:
        dt = data[t].dtype
        if not (pd.api.types.is_integer_dtype(dt) or pd.api.types.is_float_dtype(dt)):
            return None
    parts = [np.ones(len(data))] if intercept else []
    parts += [data[t].to_numpy(dtype=np.float64) for t in cols]
    names = (("(Intercept)",) if intercept else ()) + tuple(cols)
    if not parts:
        return np.zeros((len(data), 0)), ()
    return np.column_stack(parts), names


def _model_matrix(expr: str, data: pd.DataFrame, what: str) -> tuple[np.ndarray, tuple[str, ...]]:
    simple = _simple_matrix(expr, data)
    if simple is not None:
        return simple
    try:
        dm = fm.design_matrices(to_formulae(expr), data, na_action="error",
                                extra_namespace=R_NAMESPACE)
    except FormulaError:
        raise
    except Exception as exc:
        raise FormulaError(f"cannot evaluate {what} '{expr}': {_first_line(exc)}") from None
    if dm.common is None:
        return np.zeros((len(data), 0)), ()
    frame = dm.common.as_dataframe()
    # R orders model terms by degree (main effects, then two-way interactions, ...),
    # keeping the written order within a degree: (Intercept), a, b, c, a:b for a*b + c.
    terms = dm.common.terms
    order = sorted(terms, key=lambda t: len(getattr(terms[t], "components", ())))
    cols = np.concatenate([np.arange(frame.shape[1])[dm.common.slices[t]] for t in order])
    frame = frame.iloc[:, cols]
    names = tuple(_label(str(c)) for c in frame.columns)
    values = frame.to_numpy()
    if np.iscomplexobj(values):
        raise DataError(f"{what} '{expr}' has complex values")
    return np.asarray(values, dtype=np.float64), names


def _check_finite(M: np.ndarray, names: tuple[str, ...], what: str) -> None:
    bad = [name for name, ok in zip(names, np.isfinite(M).all(axis=0), strict=True) if not ok]
    if bad:
        raise DataError(f"{what} column(s) {', '.join(map(repr, bad))} have non-finite "
                        f"values (inf, or NaN from a transformation)")


def _response(spec: FormulaSpec, data: pd.DataFrame) -> np.ndarray:
    name = spec.response
    if name in data.columns:
        col = data[name]
        if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
                and not pd.api.types.is_complex_dtype(col)):
            raise DataError(f"response '{name}' must be real numbers, got dtype {col.dtype}")
        y = col.to_numpy(dtype=np.float64)
    else:
        y_mat, _ = _model_matrix(f"0 + {name}", data, "response")
        if y_mat.shape[1] != 1:
            raise DataError(f"response '{name}' must be a single numeric column, "
                            f"got {y_mat.shape[1]} columns")
        y = y_mat[:, 0]
    if not np.all(np.isfinite(y)):
        raise DataError(f"response '{name}' has non-finite values (inf, or NaN from a "
                        f"transformation)")
    return y


def _dependent_columns(X: np.ndarray) -> list[int]:
    """Columns of ``X`` that are linear combinations of the columns before them.

    As R's ``qr`` (LINPACK ``dqrdc2``) and so lme4: a column is dependent when its
    residual after projection on the earlier independent columns is at most
    ``RANK_TOL`` times its norm; the projections are done on the triangular factor
    of ``X``, which has the same column relations.
    """
    if X.shape[1] == 0:
        return []
    R = scipy.linalg.qr(X, mode="r")[0][: X.shape[1]]
    norms = np.linalg.norm(R, axis=0)
    kept: list[int] = []
    dependent = []
    for j in range(X.shape[1]):
        col = R[:, j]
        if kept:
            coef = np.linalg.lstsq(R[:, kept], col, rcond=None)[0]
            col = col - R[:, kept] @ coef
        if np.linalg.norm(col) > RANK_TOL * norms[j]:
            kept.append(j)
        else:
            dependent.append(j)
    return dependent


def _drop_rank_deficient(X: np.ndarray, names: tuple[str, ...]
                         ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Drop the columns that depend on earlier ones (lme4's ``"message+drop.cols"``)."""
    dropped = _dependent_columns(X)
    if not dropped:
        return X, names
    keep = [j for j in range(X.shape[1]) if j not in dropped]
    warnings.warn(f"fixed-effect model matrix is rank deficient; dropping column(s) "
                  f"{', '.join(names[j] for j in dropped)}", UserWarning, stacklevel=4)
    return X[:, keep], tuple(names[j] for j in keep)


def _check_not_exact(y: np.ndarray, X: np.ndarray, name: str) -> None:
    """DataError if ``X`` reproduces ``y`` exactly (zero residual variance for every theta)."""
    scale = float(np.max(np.abs(y)))
    if X.shape[1]:
        coef = np.linalg.lstsq(X, y, rcond=None)[0]
        resid = y - X @ coef
    else:
        resid = y
    if float(np.max(np.abs(resid), initial=0.0)) <= 1e-13 * scale or scale == 0.0:
        what = "constant" if np.ptp(y) == 0.0 else "an exact linear function of the fixed effects"
        raise DataError(f"response '{name}' is {what}; its residual variance is zero and the "
                        f"model cannot be fitted")


def _grouping(spec: RandomTermSpec, data: pd.DataFrame) -> tuple[np.ndarray, tuple[str, ...]]:
    """Level codes of a (possibly interacted) grouping factor, levels sorted as R sorts them."""
    labels = None
    for f in spec.factors:
        col = data[f]
        if isinstance(col.dtype, pd.CategoricalDtype):
            s = col.astype(str)
        elif pd.api.types.is_float_dtype(col):
            if not np.all(np.isfinite(col.to_numpy(dtype=np.float64))):
                raise DataError(f"grouping column '{f}' has infinite values")
            s = col.map(lambda v: str(int(v)) if float(v).is_integer() else str(v))
        elif pd.api.types.is_complex_dtype(col):
            raise DataError(f"grouping column '{f}' has complex values")
        else:
            s = col.astype(str)
        labels = s if labels is None else labels + ":" + s
    assert labels is not None
    codes, uniques = pd.factorize(labels, sort=True)
    return codes.astype(np.int64), tuple(str(u) for u in uniques)


def _check_term(ts: RandomTermSpec, Xi: np.ndarray, cnames: tuple[str, ...],
                levels: tuple[str, ...], n: int) -> None:
    """lme4's checks on one random-effects term, plus a full-rank term matrix."""
    term = f"({ts.expr} | {ts.group})"
    if Xi.shape[1] == 0:
        raise FormulaError(f"random term {term} has no columns")
    _check_finite(Xi, cnames, f"random term {term}:")
    if len(levels) < 2:
        raise DataError(f"grouping factor '{ts.group}' of random term {term} has a single "
                        f"level ({levels[0]!r}); it needs at least 2 levels")
    if len(levels) >= n:
        raise DataError(f"grouping factor '{ts.group}' has {len(levels)} levels for "
                        f"{n} observations; it must have fewer levels than observations")
    if len(levels) * Xi.shape[1] >= n:
        raise DataError(f"random term {term} has {len(levels) * Xi.shape[1]} random effects "
                        f"for {n} observations; it must have fewer random effects than "
                        f"observations (the variance components are not identifiable)")
    dependent = _dependent_columns(Xi)
    if dependent:
        raise DataError(f"random term {term} has a rank-deficient model matrix: column(s) "
                        f"{', '.join(cnames[j] for j in dependent)} are linear combinations "
                        f"of the others (a slope on a constant?); remove them from the term")


def _lme4_order(terms: list[RandomTerm]) -> list[RandomTerm]:
    """Terms in lme4's order (``mkReTrms``): unchanged if the numbers of levels never
    increase, else by decreasing number of levels with ties in reverse formula order
    (``rev(order(nl))``)."""
    nl = [t.n_levels for t in terms]
    if all(b <= a for a, b in zip(nl, nl[1:], strict=False)):
        return terms
    return [terms[i] for i in sorted(range(len(terms)), key=lambda i: nl[i])[::-1]]


def _check_frame(data: object, used: set[str]) -> pd.DataFrame:
    """The used columns of ``data``, validated; raise DataError naming the fault."""
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    if isinstance(data.columns, pd.MultiIndex):
        raise DataError("data has MultiIndex columns; flatten them to single string names")
    if len(data) == 0:
        raise DataError("data has no rows")
    missing = sorted(c for c in used if c not in data.columns)
    if missing:
        raise DataError(f"column(s) not found in data: {', '.join(missing)}")
    dup = sorted({str(c) for c in data.columns[data.columns.duplicated()]} & used)
    if dup:
        raise DataError(f"column name(s) appear more than once in data: {', '.join(dup)}")
    cols = [c for c in data.columns if c in used]
    for c in cols:
        if pd.api.types.is_complex_dtype(data[c]):
            raise DataError(f"column '{c}' has complex values")
    return data[cols]


def build_design(formula: str, data: pd.DataFrame) -> ModelDesign:
    """Evaluate an lme4-style formula on data.

    Parameters
    ----------
    formula : str
        For example ``"Reaction ~ 1 + Days + (1 + Days | Subject)"``.
    data : pandas.DataFrame
        One row per observation.  Grouping columns may be int, str, float or
        categorical.  Never modified.

    Returns
    -------
    ModelDesign
        Response, fixed-effects matrix and random-effects terms in lme4's order.

    Raises
    ------
    FormulaError
        If the formula is malformed or cannot be evaluated on the data.
    DataError
        If the data cannot support the model: a missing or duplicated column, a
        non-numeric or non-finite response, too few rows or levels, or a random term
        whose model matrix is rank deficient.

    Examples
    --------
    >>> import hierlm
    >>> d = build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> d.nobs, d.fixef_names, d.terms[0].group, d.terms[0].coef_names
    (180, ('(Intercept)', 'Days'), 'Subject', ('(Intercept)', 'Days'))
    >>> build_design("Reaction ~ Days + (Days | Subjet)", hierlm.load_sleepstudy())
    Traceback (most recent call last):
    ...
    hierlm.errors.DataError: column(s) not found in data: Subjet
    """
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    spec = parse_formula(formula)
    used = _variables(f"{spec.response} ~ {spec.fixed}", "fixed part")
    for term in spec.random:
        used |= _variables(term.expr, f"random term ({term.expr} | {term.group})")
    used |= set(spec.columns)
    sub = _check_frame(data, used)
    keep = sub.notna().all(axis=1).to_numpy()
    n_dropped = int((~keep).sum())
    if n_dropped == len(data):
        empty = [str(c) for c in sub.columns if sub[c].isna().all()]
        where = (f"column(s) {', '.join(empty)} are entirely missing" if empty else
                 f"every row has a missing value in one of {', '.join(map(str, sub.columns))}")
        raise DataError(f"no complete rows: {where}")
    if len(data) - n_dropped < 2:
        raise DataError(f"only {len(data) - n_dropped} complete row; a mixed model needs "
                        f"more observations than grouping levels")
    if n_dropped:
        warnings.warn(f"dropped {n_dropped} of {len(data)} rows with missing values in "
                      f"used columns", UserWarning, stacklevel=3)
    frame = sub.loc[keep].reset_index(drop=True).copy()
    for c in frame.columns:
        if isinstance(frame[c].dtype, pd.CategoricalDtype):
            frame[c] = frame[c].cat.remove_unused_categories()

    y = _response(spec, frame)
    X, names = _model_matrix(spec.fixed, frame, "fixed part")
    _check_finite(X, names, "fixed-effects")
    X, names = _drop_rank_deficient(X, names)
    _check_not_exact(y, X, spec.response)

    terms = []
    for ts in spec.random:
        codes, levels = _grouping(ts, frame)
        Xi, cnames = _model_matrix(ts.expr, frame, f"random term ({ts.expr} | {ts.group})")
        _check_term(ts, Xi, cnames, levels, len(y))
        terms.append(RandomTerm(group=ts.group, coef_names=cnames, levels=levels,
                                codes=codes, X=Xi))
    terms = _lme4_order(terms)
    return ModelDesign(formula=spec.formula, response=spec.response, y=y, X=X,
                       fixef_names=names, terms=tuple(terms), n_dropped=n_dropped)
