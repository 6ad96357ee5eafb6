"""Stage 1: formula + data -> :class:`ModelDesign`.

The fixed-effects matrix ``X`` and each term's raw model matrix are R's model matrices
(:mod:`hierlm.design.model_matrix`: R's term expansion, factor levels, contrasts,
coefficient names and column order); transformations such as ``log(x)`` or
``scale(x)`` are evaluated by the ``formulae`` package.  hierlm itself keeps the
covariance-block structure (``||``, nesting) of the random terms.

Rows with a missing value in any used column are dropped (and counted), and
categories that no longer occur afterwards are dropped from categorical columns;
rank-deficient ``X`` loses the columns that are linear combinations of earlier
ones, with a warning naming them, as lme4 does.  Every other problem with the data is a
:class:`~hierlm.errors.DataError` whose one-line message names the column or term at
fault (see ``docs/robustness.md``).  The caller's DataFrame is never modified.

A small model's design is built in about 1.4 ms (penicillin: 144 rows, two grouping
columns of text; 2.9 ms before): the used columns are taken by position (pandas'
selection by a list of labels took 0.18 ms, by ``take`` 0.07 ms), a formula's parse
is kept per process (a frozen value of its text), and each grouping factor's codes come
from ``pd.factorize`` on the labels as a NumPy array (0.03 ms against 0.1 ms on pandas'
string dtype) with each level's label read at its first row (``np.unique``).
Later: text grouping columns are not copied to text again, their levels and codes come
from ``np.unique`` (the same sorted levels and codes as ``pd.factorize(sort=True)``,
in half the time) and the levels' labels are the levels themselves; the selected
columns and the coder's frame are copied once, not twice; and the rank check of ``X``
reads each column's residual off ``R``'s diagonal while no earlier column is dropped
(a least-squares solve per column before).  Median CPU time of the design, 150 fits
each, 2 cores at load 6-7, old and new code one after the other: sleepstudy 2.63 ->
2.35 ms, dyestuff 2.34 -> 1.91 ms, chickweight (``Time * Diet``) 4.82 -> 4.44 ms.
Later, the categorical columns found from the dtypes already read (instead of reading
each column of the selected frame): median over the 24 designs of ``python -m
benchmarks.peers`` (CPU, best of 30 each, collector paused, load about 3, old and new
code alternately twice) 1.10 / 1.09 -> 1.01 / 1.05 ms.
Later, fewer pandas objects: the missing values read column by column off the arrays
(not a Boolean frame), a text grouping column held by Arrow coded by dictionary encoding
(only its distinct values sorted), each column of the design's frame looked up once, no
deep copy of the frame on pandas 3 (``y`` is copied out of its column instead), the
predictor-type check skipped for numbers and text, a RangeIndex's row labels by copy, and
the coder's frame and each text term's level Index built when first read
(:mod:`hierlm.design.lazy`).  Median over the 24 designs of ``python -m
benchmarks.peers`` of the median CPU time (``time.thread_time``) of 200 builds after a
warm-up, collector paused, load 4.4-4.6, old and new code alternately twice: 1.047 /
1.041 -> 0.535 / 0.544 ms.  Whole fits, ``nice python -m benchmarks.peers --programs
hierlm,lme_python``, old and new code alternately three times at load 4.4-4.6, median
CPU: hierlm 4.30 / 4.51 / 4.47 -> 3.77 / 3.74 / 3.82 ms (lme-python 1.39-1.52 ms).
Later, the used columns read once each (their positions looked up by name) into
:class:`~hierlm.design.fitting_rows.FittingRows`, with no DataFrame of the fitting rows
unless ``formulae`` or the new-data coder reads one; text and integer grouping factors
and their interactions coded without a label per row
(:func:`~hierlm.design.column_reads.interaction_codes`); a text factor's codes taken from
the encoding that gave its levels; one pass of the rank test where no column is
dependent; the exact-fit check from the triangular factor of ``[X y]`` (the least squares
solve only near a zero residual); a random term's matrix that equals the fixed part's
(or another term's) copied and not factored again; and a RangeIndex's row labels built
when read.  ``nice python -m benchmarks.fit_parts`` (thread CPU time, best of 30 per case
after a warm-up, load 0.9-2.3, old and new code alternately twice): the design, median
over the 24 cases 0.531 / 0.540 -> 0.207 / 0.226 ms (sleepstudy slopes 0.525 / 0.504 ->
0.207 / 0.241, pastes 1.068 / 1.068 -> 0.259 / 0.270, alfalfa 1.926 / 2.035 -> 0.515 /
0.521 ms); a whole fit outside the optimizer (design, objective, estimates at the
optimum, result; :mod:`hierlm.inference.blas`, :mod:`hierlm.covariance.base` and
:func:`hierlm.estimate.frequentist.is_singular` have their parts) 1.553 / 1.632 ->
0.964 / 1.038 ms; whole fits 3.565 / 3.592 -> 2.960 / 2.972 ms.
Later, the rank and exact-fit tests' triangular factors by LAPACK directly, the same
``R`` (:mod:`hierlm.design.triangular`, where the times are).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import pandas as pd

from hierlm.design.column_reads import (
    PANDAS_3,
    arrow_text_codes,
    complete_rows,
    interaction_codes,
    row_labels,
)
from hierlm.design.columns import (
    _simple_matrix,
    _variables,
    check_columns,
    formulae_common,
    group_labels,
)
from hierlm.design.contrasts import ContrastSpec, parse_contrasts
from hierlm.design.fitting_rows import FittingRows, text_codes
from hierlm.design.formula import parse_formula
from hierlm.design.frames import as_pandas
from hierlm.design.grouping_types import grouping_column
from hierlm.design.lazy import deferred
from hierlm.design.model_matrix import build_model_matrix
from hierlm.design.predictor_types import check_predictor_types
from hierlm.design.terms import FormulaSpec, ModelDesign, RandomTerm, RandomTermSpec
from hierlm.design.triangular import triangular_factor
from hierlm.errors import DataError, FormulaError, warn

# A column is linearly dependent on the columns before it when projecting it off them
# leaves less than this fraction of its norm (R's ``qr(X, tol = 1e-7)``, used by lme4).
RANK_TOL = 1e-7
# A residual norm above this fraction of ``sqrt(n) max|y|`` is not exact-fit (the test
# in _check_not_exact calls residuals below 1e-13 max|y| zero): the fast pass skips
# the least squares solve.
_CLEARLY_INEXACT = 1e-6


#: A formula's parse is a frozen value of its text: parsed once per process.
_parsed = functools.lru_cache(maxsize=256)(parse_formula)


@functools.lru_cache(maxsize=256)
def _used_columns(formula: str) -> tuple[frozenset[str], frozenset[str]]:
    """The columns a formula reads and, of them, the predictors (a frozen value of the
    formula's text, as its parse)."""
    spec = _parsed(formula)
    used = _variables(f"{spec.response} ~ {spec.fixed}", "fixed part")
    for term in spec.random:
        used |= _variables(term.expr, f"random term ({term.expr} | {term.group})")
    predictors = used - {spec.response}
    return frozenset(used | set(spec.columns)), frozenset(predictors)


def _model_matrix(expr: str, data: pd.DataFrame | FittingRows, what: str,
                  contrasts: dict[str, ContrastSpec] | None = None,
                  column: Callable[[str], pd.Series] | None = None
                  ) -> tuple[np.ndarray, tuple[str, ...]]:
    simple = _simple_matrix(expr, data, column)
    if simple is not None and not contrasts:
        return simple
    mm = build_model_matrix(expr, data, contrasts, what, formulae_common)
    return mm.values, mm.names


def _check_finite(M: np.ndarray, names: tuple[str, ...], what: str) -> None:
    if np.isfinite(M).all():  # (one pass; the columns at fault are found only if any)
        return
    bad = [name for name, ok in zip(names, np.isfinite(M).all(axis=0), strict=True) if not ok]
    if bad:
        raise DataError(f"{what} column(s) {', '.join(map(repr, bad))} have non-finite "
                        f"values (inf, or NaN from a transformation)")


def _response(spec: FormulaSpec, data: pd.DataFrame | FittingRows,
              column: Callable[[str], pd.Series] | None = None) -> np.ndarray:
    name = spec.response
    if name in data.columns:
        col = data[name] if column is None else column(name)
        dt = col.dtype
        if not ((isinstance(dt, np.dtype) and dt.kind in "iuf") or (
                pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
                and not pd.api.types.is_complex_dtype(col))):
            raise DataError(f"response '{name}' must be real numbers, got dtype {col.dtype}")
        # a copy: a float column's ``to_numpy`` is a view of the caller's memory, which
        # pandas' copy-on-write stops guarding once the design's frame is gone
        y = col.to_numpy(dtype=np.float64, copy=True)
    else:
        y_mat, _ = _model_matrix(f"0 + {name}", data, "response")
        if y_mat.shape[1] != 1:
            raise DataError(f"response '{name}' must be a single numeric column, "
                            f"got {y_mat.shape[1]} columns")
        y = y_mat[:, 0]
    if not np.isfinite(y).all():
        raise DataError(f"response '{name}' has non-finite values (inf, or NaN from a "
                        f"transformation)")
    return y


def _dependent_columns(X: np.ndarray, finite: bool = False) -> list[int]:
    """Columns of ``X`` that are linear combinations of the columns before them.

    As R's ``qr`` (LINPACK ``dqrdc2``) and so lme4: a column is dependent when its
    residual after projection on the earlier independent columns is at most
    ``RANK_TOL`` times its norm; the projections are done on the triangular factor
    of ``X``, which has the same column relations.  ``finite=True``: the caller has
    checked that ``X`` is finite (not checked again).
    """
    if X.shape[1] == 0:
        return []
    R = triangular_factor(X, finite)
    # (np.linalg.norm's own steps along axis 0, and the arrays' own methods: the same
    # numbers without NumPy's function wrappers)
    norms = np.sqrt(np.add.reduce(R * R, axis=0))
    diagonal = R.diagonal()
    if (np.sqrt(diagonal * diagonal) > RANK_TOL * norms).all():
        # no column dependent: the loop below would keep each column by this same test
        # (``norm`` of a one-entry vector is ``sqrt`` of its square), 0.01 ms per call
        return []
    kept: list[int] = []
    dependent = []
    for j in range(X.shape[1]):
        col = R[:, j]
        if kept and len(kept) < j:
            coef = np.linalg.lstsq(R[:, kept], col, rcond=None)[0]
            col = col - R[:, kept] @ coef
        elif kept:
            # every earlier column kept: they span R's first j rows, and what is left of
            # column j is its diagonal entry (no least squares per column: 0.03 ms each)
            col = R[j:j + 1, j]
        if np.linalg.norm(col) > RANK_TOL * norms[j]:
            kept.append(j)
        else:
            dependent.append(j)
    return dependent


def _drop_rank_deficient(X: np.ndarray, names: tuple[str, ...], finite: bool = False
                         ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Drop the columns that depend on earlier ones (lme4's ``"message+drop.cols"``;
    ``finite``: as :func:`_dependent_columns`)."""
    dropped = _dependent_columns(X, finite)
    if not dropped:
        return X, names
    keep = [j for j in range(X.shape[1]) if j not in dropped]
    warn(f"fixed-effect model matrix is rank deficient; dropping column(s) "
         f"{', '.join(names[j] for j in dropped)}", UserWarning)
    return X[:, keep], tuple(names[j] for j in keep)


def _check_not_exact(y: np.ndarray, X: np.ndarray, name: str) -> None:
    """DataError if ``X`` reproduces ``y`` exactly (zero residual variance for every theta)."""
    scale = float(np.abs(y).max())
    n, p = X.shape
    if p and scale > 0.0 and n > p:
        # the last diagonal entry of the triangular factor of [X y] is the residual's
        # norm (X has full column rank here), accurate to far better than this margin:
        # far above the largest norm the test below could call zero, the least
        # squares solve (twice as long) is not needed
        Xy = np.empty((n, p + 1), order="F")
        Xy[:, :p] = X
        Xy[:, p] = y
        R = triangular_factor(Xy, finite=True)
        if abs(R[p, p]) > _CLEARLY_INEXACT * math.sqrt(n) * scale:
            return
    if X.shape[1]:
        coef = np.linalg.lstsq(X, y, rcond=None)[0]
        resid = y - X @ coef
    else:
        resid = y
    if float(np.max(np.abs(resid), initial=0.0)) <= 1e-13 * scale or scale == 0.0:
        what = "constant" if np.ptp(y) == 0.0 else "an exact linear function of the fixed effects"
        raise DataError(f"response '{name}' is {what}; its residual variance is zero and the "
                        f"model cannot be fitted")


def _grouping(spec: RandomTermSpec, data: pd.DataFrame | FittingRows,
              column: Callable[[str], pd.Series] | None = None
              ) -> tuple[np.ndarray, tuple[str, ...], pd.Index]:
    """Level codes, labels and values of a (possibly interacted) grouping factor.

    Levels are ordered as R orders a factor made from the column: a categorical's own
    category order, numbers by value, text (and interactions) sorted as text.  The
    values keep the column's dtype (int stays int, a categorical keeps its categories).
    """
    col = data[spec.factors[0]] if column is None else column(spec.factors[0])
    if len(spec.factors) == 1:
        arrow_found = (text_codes(data, spec.factors[0]) if column is None
                       else arrow_text_codes(col))
        if arrow_found is not None:
            arrow_codes, levels = arrow_found
            # the Index of the levels is built when first read (hierlm.design.lazy)
            return arrow_codes, levels, deferred(lambda: pd.Index(list(levels)))
        dt = col.dtype
        if isinstance(dt, np.dtype) and dt.kind in "iu":
            # integers: np.unique gives pd.factorize(sort=True)'s levels and codes, and
            # a level's label (``astype(str)`` of its rows) is ``str`` of the level
            uniques, int_codes = np.unique(col.to_numpy(), return_inverse=True)
            return (np.asarray(int_codes, dtype=np.int64), tuple(str(v) for v in uniques),
                    deferred(lambda: pd.Index(uniques)))
    else:
        # text and integer factors: codes of the combinations, only the distinct
        # combinations' labels joined and sorted (as the labels of every row would be)
        combined = interaction_codes(
            [data[f] if column is None else column(f) for f in spec.factors],
            [text_codes(data, f) if column is None else None for f in spec.factors])
        if combined is not None:
            combo_codes, combo_text = combined
            return combo_codes, combo_text, deferred(lambda: pd.Index(list(combo_text)))
    labels = group_labels(spec.factors, data)
    col = grouping_column(col, spec.factors[0])
    if len(spec.factors) == 1 and isinstance(col.dtype, pd.CategoricalDtype):
        codes = col.cat.codes.to_numpy()
        cats = col.cat.categories
        values: pd.Index = pd.CategoricalIndex(cats, categories=cats, ordered=col.cat.ordered)
    elif len(spec.factors) == 1 and pd.api.types.is_numeric_dtype(col):
        codes, values = pd.factorize(col, sort=True)
        values = pd.Index(values)
    else:
        # the labels as a NumPy array of str: the same codes, 3x faster than on pandas' str
        # (np.unique: the same sorted levels and codes as pd.factorize(sort=True) on text,
        # in half the time)
        uniques, codes = np.unique(labels.to_numpy(), return_inverse=True)
        text = [str(u) for u in uniques]
        # each level's label is the level itself here (its first row's label)
        return (np.asarray(codes, dtype=np.int64), tuple(text),
                deferred(lambda: pd.Index(text)))
    codes = np.asarray(codes, dtype=np.int64)
    # each level's label from its first row (levels in code order; a code -1, which the
    # rows kept cannot have, would have none)
    found, first = np.unique(codes, return_index=True)
    level_labels = tuple(str(v) for v in labels.to_numpy()[first[found >= 0]])
    return codes, level_labels, values


def _check_term(ts: RandomTermSpec, Xi: np.ndarray, cnames: tuple[str, ...],
                levels: tuple[str, ...], n: int,
                known: tuple[np.ndarray, list[int]] | None = None,
                checked: bool = False) -> None:
    """lme4's checks on one random-effects term, plus a full-rank term matrix.

    ``known``: a matrix and its :func:`_dependent_columns`, reused where ``Xi`` equals
    it (``(1 + x | g)`` beside the fixed part ``1 + x``); ``checked``: ``Xi`` is a copy
    of a matrix found finite and of full column rank before (not tested again)."""
    term = f"({ts.expr} | {ts.group})"
    if Xi.shape[1] == 0:
        raise FormulaError(f"random term {term} has no columns")
    if not checked:
        _check_finite(Xi, cnames, f"random term {term}:")
    if len(levels) < 2:
        raise DataError(f"grouping factor '{ts.group}' of random term {term} has a single "
                        f"level ({levels[0]!r}); it needs at least 2 levels")
    if len(levels) >= n:
        raise DataError(f"grouping factor '{ts.group}' has {len(levels)} levels for "
                        f"{n} observations; it must have fewer levels than observations")
    if len(levels) * Xi.shape[1] >= n and ts.structure == "us":
        # lme4's check.nobs.vs.nRE, for unstructured terms; a structured term has fewer
        # parameters (hierlm.covariance.identifiability warns where they are confounded)
        raise DataError(f"random term {term} has {len(levels) * Xi.shape[1]} random effects "
                        f"for {n} observations; it must have fewer random effects than "
                        f"observations (the variance components are not identifiable)")
    dependent: list[int]
    if checked:
        dependent = []  # a copy of a matrix that passed
    elif Xi.shape[1] == 1 and (Xi == 1.0).all():
        dependent = []  # an intercept: a column of ones is never dependent
    elif known is not None and known[0].shape == Xi.shape and np.array_equal(known[0], Xi):
        dependent = known[1]  # the same matrix: the same columns
    else:
        dependent = _dependent_columns(Xi, finite=True)
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


def build_design(formula: str, data: pd.DataFrame, weights: object = None,
                 offset: object = None, contrasts: object = None) -> ModelDesign:
    """Evaluate an lme4-style formula on data.

    Parameters
    ----------
    formula : str
        For example ``"Reaction ~ 1 + Days + (1 + Days | Subject)"``.
    data : pandas.DataFrame
        One row per observation.  Grouping columns may be int, str, float or
        categorical.  Never modified.
    weights : str or array-like, optional
        Prior weights (a column name or one number per row): residual variance
        ``sigma^2 / w``.  Rows with weight 0 are dropped, with a warning.
    offset : str or array-like, optional
        A known term added to the linear predictor (a column name or one number per row).
    contrasts : dict, optional
        Contrasts of factor columns of the fixed part, as R's ``contrasts =
        list(x = "contr.sum")``: column name -> ``"contr.treatment"``, ``"contr.sum"``,
        ``"contr.helmert"``, ``"contr.poly"`` (or ``"treatment"``, ``"sum"``, ...) or
        ``("treatment", level)`` for a reference level.  Unlisted factors get treatment
        contrasts, ordered categoricals polynomial ones (R's defaults).

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
    data = as_pandas(data, "data")  # polars, pyarrow, ... through narwhals
    spec = _parsed(formula)
    contrast_specs = parse_contrasts(contrasts)
    used, predictors = _used_columns(formula)
    data = check_columns(data, used)
    # the used columns by position, in the data's order (each used name occurs once),
    # each read once: their Series serve every later step (hierlm.design.fitting_rows)
    # (positions looked up by name: reading the labels of every column took twice as
    # long between fits, more in a wide frame; each used name occurs once, checked)
    found = sorted((int(data.columns.get_loc(c)), c) for c in used)  # type: ignore[arg-type]
    at, names = [i for i, _ in found], [c for _, c in found]
    series = [data[c] for c in names]
    dtypes = [s.dtype for s in series]
    for c, dt in zip(names, dtypes, strict=True):
        # (NumPy's dtypes by kind, pandas' text without its dtype check: 3-5 us a column)
        if (dt.kind == "c" if isinstance(dt, np.dtype)
                else not isinstance(dt, pd.StringDtype) and pd.api.types.is_complex_dtype(dt)):
            raise DataError(f"column '{c}' has complex values")
    categorical = [c for c, dt in zip(names, dtypes, strict=True)
                   if isinstance(dt, pd.CategoricalDtype)]
    # dates, mixed objects: name the column and the fix (numbers, booleans and pandas'
    # text pass that check: not looked up again)
    plain = {c for c, dt in zip(names, dtypes, strict=True)
             if (isinstance(dt, np.dtype) and dt.kind in "iufb")
             or isinstance(dt, pd.StringDtype)}
    check_predictor_types(data, predictors - plain)
    from hierlm.design.weights import check_weights, column_or_array

    w = w_col = off = off_col = None
    if weights is not None:
        w, w_col = column_or_array(weights, data, "weights")
        check_weights(w)
    if offset is not None:
        off, off_col = column_or_array(offset, data, "offset")
    keep = complete_rows(series, dtypes)
    n_zero = 0 if w is None else int(((w == 0) & keep).sum())
    n_dropped = int(len(keep) - np.count_nonzero(keep))
    if n_zero:
        warn(f"dropped {n_zero} of {len(data)} rows with zero prior weight", UserWarning)
        assert w is not None
        keep = keep & (w > 0)
    if n_dropped + n_zero == len(data) and n_dropped < len(data):
        raise DataError("no rows left: every complete row has zero prior weight")
    if n_dropped == len(data):
        empty = [str(c) for c, col in zip(names, series, strict=True) if col.isna().all()]
        where = (f"column(s) {', '.join(empty)} are entirely missing" if empty else
                 f"every row has a missing value in one of {', '.join(map(str, names))}")
        raise DataError(f"no complete rows: {where}")
    if len(data) - n_dropped - n_zero < 2:
        raise DataError(f"only {len(data) - n_dropped - n_zero} complete row; a mixed model "
                        f"needs more observations than grouping levels")
    if n_dropped:
        warn(f"dropped {n_dropped} of {len(data)} rows with missing values in "
             f"used columns", UserWarning)
    n_dropped += n_zero
    if n_dropped or not PANDAS_3:
        # the kept rows' frame, built now: by position (pandas' selection by a list of
        # labels took twice as long), copied (pandas 2 does not copy on write)
        sub = data if len(at) == data.shape[1] else data.take(at, axis=1)
        frame = (sub.loc[keep] if n_dropped else sub).reset_index(drop=True)
        if sub is data and not n_dropped:
            frame = frame.copy()
        for c in categorical:
            frame[c] = frame[c].cat.remove_unused_categories()
        rows = FittingRows(data, names, [], [], frame)
    else:
        # every row kept: the columns as read (pandas 3 keeps them as they are now,
        # whatever the caller does to ``data`` later); a frame is built only if read
        rows = FittingRows(data, names, series, categorical)

    y = _response(spec, rows)
    X, names_x = _model_matrix(spec.fixed, rows, "fixed part", contrast_specs)
    # each right-hand side evaluated once: a random term written as the fixed part
    # (``(1 + x | g)`` beside ``1 + x``) or as another term (``(1 | a/b)``) gets a copy
    made = {} if contrast_specs else {spec.fixed: (X, names_x)}
    _check_finite(X, names_x, "fixed-effects")
    X_full = X
    X, names_x = _drop_rank_deficient(X, names_x, finite=True)
    # X's dependent columns (none where it kept them all), for a term with the same matrix
    known: tuple[np.ndarray, list[int]] | None = (X_full, []) if X is X_full else None
    _check_not_exact(y, X, spec.response)

    terms, specs = [], {}
    # right-hand sides whose matrix was found finite and of full column rank (the fixed
    # part's where it kept every column, then each term's that passed): their copies
    # are not tested again (0.01 ms a term between fits)
    passed = {spec.fixed} if spec.fixed in made and known is not None else set()
    for ts in spec.random:
        codes, levels, values = _grouping(ts, rows)
        if ts.expr in made:
            Xi, cnames = made[ts.expr][0].copy(), made[ts.expr][1]
        else:
            Xi, cnames = _model_matrix(ts.expr, rows, f"random term ({ts.expr} | {ts.group})")
            made[ts.expr] = (Xi, cnames)
        _check_term(ts, Xi, cnames, levels, len(y), known, checked=ts.expr in passed)
        passed.add(ts.expr)
        terms.append(RandomTerm(group=ts.group, coef_names=cnames, levels=levels,
                                codes=codes, X=Xi, level_values=values,
                                structure=ts.structure))
        specs[id(terms[-1])] = ts
    terms = _lme4_order(terms)
    from hierlm.design.newdata import new_data_coder

    w_used = None if w is None else w[keep]
    off_used = None if off is None else off[keep]
    coder = new_data_coder(spec, lambda: rows.frame, names_x,
                           [(specs[id(t)], t) for t in terms],
                           w_used, off_used, w_col, off_col, contrast_specs)
    return ModelDesign(formula=spec.formula, response=spec.response, y=y, X=X,
                       fixef_names=names_x, terms=tuple(terms), n_dropped=n_dropped,
                       weights=w_used, offset=off_used, coder=coder,
                       **row_labels(data.index, keep, n_dropped))
