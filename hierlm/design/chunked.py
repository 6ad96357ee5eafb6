"""Coding data that arrive in chunks: the level pass and the fixed coding of each chunk.

A design built from the whole data at once (:func:`hierlm.design.matrices.build_design`)
depends on the data through two things only: the *levels* (of each grouping factor and
each categorical predictor) and the number of rows used.  Everything else is a function
of one row.  So data too large for memory are coded in two passes over their chunks:

1. :func:`scan_chunk` records, per chunk, the distinct values of every grouping factor
   (for an interaction ``b:a`` the distinct ``(b, a)`` pairs), the distinct values of
   every non-numeric predictor, the rows kept (no missing value in a used column) and
   the sum and range of the response.  :meth:`LevelSummary.merge` unions two summaries
   (associative and commutative, so chunks may be reduced in any tree);
   :func:`finish_levels` orders the levels exactly as the in-memory path does, by
   running that path's own code (``_grouping``) on the distinct values, and builds a
   small *prototype* frame holding every level of every categorical predictor.
2. :meth:`ChunkCoding.code` codes a chunk with
   :class:`~hierlm.design.newdata.NewDataCoder` fitted to the prototype, so each chunk
   gets the full set of levels, contrasts and column names: the rows of a chunk are
   coded exactly as the same rows of the whole data would be.

Prior weights and an offset are read from columns of the data (``weights="w"``,
``offset="o"``; arrays of one value per row cannot be split into chunks).  Their
values are checked as in memory (a missing or infinite value, a negative weight: one
:class:`~hierlm.errors.DataError`); rows of weight 0 are dropped and counted in
``n_dropped``, with a warning, as in memory.

Transformations whose result depends on the whole column (``scale``, ``center``,
``standardize``, ``poly`` and the splines) cannot be computed from one chunk; such a
formula is refused with a :class:`~hierlm.errors.FormulaError`.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hierlm.design import columns as _c
from hierlm.design import matrices as _m
from hierlm.design.contrasts import ContrastSpec, parse_contrasts
from hierlm.design.formula import parse_formula
from hierlm.design.grouping_types import grouping_column
from hierlm.design.newdata import CodedRows, NewDataCoder, TermCoding
from hierlm.design.predictor_types import check_predictor_types
from hierlm.design.terms import FormulaSpec, ModelDesign, RandomTerm
from hierlm.errors import DataError, FormulaError, MethodError

__all__ = ["ChunkCoding", "ChunkPlan", "ChunkedDesign", "LevelSummary", "finish_levels",
           "plan_chunks", "scan_chunk"]

#: formulae transformations whose value on a row depends on the whole column.
_STATEFUL = re.compile(r"\b(center|scale|standardize|poly|bs|cc|cr|tp)\s*\(")
#: A column made a factor in the formula, ``C(x)``: its levels are needed even if numeric.
_AS_FACTOR = re.compile(r"\bC\s*\(\s*([A-Za-z_][A-Za-z0-9_.]*)")


@dataclass(frozen=True, eq=False)
class ChunkedDesign(ModelDesign):
    """A :class:`ModelDesign` whose rows were never held together.

    ``y``, ``X`` and each term's ``codes`` and ``X`` have no rows; ``n_obs`` is the
    number of observations and each term's ``col_rms`` the root mean square of its
    columns (what the optimizer scales theta by).  ``source`` is where the rows are
    (the path, ``pyarrow.dataset.Dataset`` or Dask DataFrame given to the fit), read
    again for fitted values, residuals and predictions (:mod:`hierlm.predict.chunked_predict`).
    """

    n_obs: int = 0
    source: Any = None

    @property
    def nobs(self) -> int:
        return int(self.n_obs)

    @property
    def p(self) -> int:
        return len(self.fixef_names)


@dataclass(frozen=True)
class ChunkPlan:
    """What a chunk is read for: the parsed formula and the columns it uses."""

    spec: FormulaSpec
    used: tuple[str, ...]
    predictors: tuple[str, ...]
    as_factor: tuple[str, ...] = ()
    contrasts: tuple[tuple[str, ContrastSpec], ...] = ()  # the fixed part's contrasts=
    weights: str | None = None  # the prior weights' column
    offset: str | None = None  # the offset's column

    @property
    def read(self) -> tuple[str, ...]:
        """Every column read from a chunk: the used ones, the weights' and the offset's."""
        extra = [c for c in (self.weights, self.offset) if c is not None and c not in self.used]
        return (*self.used, *dict.fromkeys(extra))


def _column_name(value: object, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise MethodError(f"{what} of data read in chunks (parquet or Dask) must be the name of "
                      f"a column of the data; an array of one value per row cannot be split "
                      f"into chunks")


def plan_chunks(formula: str, contrasts: object = None, weights: object = None,
                offset: object = None) -> ChunkPlan:
    """Parse ``formula`` for chunked data; FormulaError for a whole-column transformation.

    ``weights`` and ``offset`` are column names (a MethodError for anything else).

    Examples
    --------
    >>> plan = plan_chunks("y ~ x + (1 | g)")
    >>> plan.used, plan.predictors
    (('g', 'x', 'y'), ('x',))
    """
    spec = parse_formula(formula)
    for expr in (spec.response, spec.fixed, *(t.expr for t in spec.random)):
        hit = _STATEFUL.search(expr)
        if hit:
            raise FormulaError(f"'{hit.group(1)}(...)' needs the whole column, so it cannot be "
                               f"computed chunk by chunk; compute the column before writing "
                               f"the data, or fit in memory")
    used = _c._variables(f"{spec.response} ~ {spec.fixed}", "fixed part")
    for term in spec.random:
        used |= _c._variables(term.expr, f"random term ({term.expr} | {term.group})")
    predictors = used - {spec.response}
    used |= set(spec.columns)
    as_factor = {name for expr in (spec.fixed, *(t.expr for t in spec.random))
                 for name in _AS_FACTOR.findall(expr)} & predictors
    return ChunkPlan(spec=spec, used=tuple(sorted(used)), predictors=tuple(sorted(predictors)),
                     as_factor=tuple(sorted(as_factor)),
                     contrasts=tuple(parse_contrasts(contrasts).items()),
                     weights=_column_name(weights, "weights"),
                     offset=_column_name(offset, "offset"))


def _numeric(col: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col))


def _union(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Distinct rows of ``a`` and ``b``; categorical columns get the union of categories
    (sorted unless ordered, as :func:`hierlm.design.frames.as_pandas` sorts them)."""
    cols = {}
    for c in a.columns:
        x, y = a[c], b[c]
        cat_x, cat_y = (isinstance(s.dtype, pd.CategoricalDtype) for s in (x, y))
        if cat_x and cat_y:
            if x.cat.ordered or y.cat.ordered:
                if not x.cat.categories.equals(y.cat.categories):
                    raise DataError(f"column '{c}' is an ordered categorical whose categories "
                                    f"differ between chunks")
                cols[c] = pd.concat([x, y], ignore_index=True)  # same dtype: kept
            else:
                cols[c] = pd.Series(pd.api.types.union_categoricals(
                    [x, y], sort_categories=True, ignore_order=True))
        elif cat_x or cat_y:
            raise DataError(f"column '{c}' is categorical in some chunks and not in others")
        else:
            cols[c] = pd.concat([x, y], ignore_index=True)
    return pd.DataFrame(cols).drop_duplicates(ignore_index=True)


def _distinct(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.drop_duplicates(ignore_index=True)
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].cat.remove_unused_categories()
    return out


@dataclass(eq=False)
class LevelSummary:
    """What the level pass keeps of the chunks it has seen (see the module docstring)."""

    n_rows: int = 0
    n_kept: int = 0
    n_zero_weight: int = 0
    y_sum: float = 0.0
    y_min: float = np.inf
    y_max: float = -np.inf
    distinct: dict[str, pd.DataFrame] = field(default_factory=dict)
    example: dict[str, Any] = field(default_factory=dict)

    def merge(self, other: LevelSummary) -> LevelSummary:
        """The summary of both sets of chunks."""
        distinct = dict(self.distinct)
        for key, frame in other.distinct.items():
            distinct[key] = frame if key not in distinct else _union(distinct[key], frame)
        example = {**other.example, **self.example}
        return LevelSummary(self.n_rows + other.n_rows, self.n_kept + other.n_kept,
                            self.n_zero_weight + other.n_zero_weight,
                            self.y_sum + other.y_sum, min(self.y_min, other.y_min),
                            max(self.y_max, other.y_max), distinct, example)


def kept_rows(frame: pd.DataFrame, plan: ChunkPlan) -> tuple[np.ndarray, int]:
    """Which rows of a chunk the fit uses (no missing value in a used column, weight not
    0), and how many of the complete rows have weight 0; the weights and offset checked
    as in memory."""
    from hierlm.design.weights import check_weights, column_or_array

    sub = _c.check_columns(frame, set(plan.read), "data", require_rows=False)
    keep = sub[list(plan.used)].notna().all(axis=1).to_numpy().copy()
    n_zero = 0
    if plan.weights is not None:
        w, _ = column_or_array(plan.weights, sub, "weights")
        check_weights(w)
        n_zero = int(((w == 0) & keep).sum())
        keep &= w > 0
    if plan.offset is not None:
        column_or_array(plan.offset, sub, "offset")
    return keep, n_zero


def _kept(frame: pd.DataFrame, plan: ChunkPlan) -> tuple[pd.DataFrame, int, int]:
    """The read columns of the rows used, the number of rows, and of zero weights."""
    keep, n_zero = kept_rows(frame, plan)
    sub = frame[list(plan.read)]
    return sub.loc[keep].reset_index(drop=True), len(sub), n_zero


def scan_chunk(frame: pd.DataFrame, plan: ChunkPlan) -> LevelSummary:
    """The level pass over one chunk (a pandas DataFrame).

    Examples
    --------
    >>> plan = plan_chunks("y ~ x + (1 | g)")
    >>> s = scan_chunk(pd.DataFrame({"y": [1.0, 2.0, None], "x": ["a", "b", "b"],
    ...                              "g": [2, 1, 1]}), plan)
    >>> s.n_rows, s.n_kept, s.distinct["term:0"]["g"].tolist()
    (3, 2, [2, 1])
    """
    kept, n_rows, n_zero = _kept(frame, plan)
    if len(kept):
        check_predictor_types(kept, set(plan.predictors))
    distinct: dict[str, pd.DataFrame] = {}
    for k, ts in enumerate(plan.spec.random):
        for f in ts.factors:
            grouping_column(kept[f], f)  # the grouping-column type rule
        distinct[f"term:{k}"] = _distinct(kept[list(ts.factors)])
    example = {}
    for c in plan.predictors:
        if _numeric(kept[c]) and c not in plan.as_factor:
            if len(kept):
                example[c] = kept[c].iloc[0]
        else:
            distinct[f"pred:{c}"] = _distinct(kept[[c]])
    if len(kept):
        y = _m._response(plan.spec, kept)
        y_stats = float(y.sum()), float(y.min()), float(y.max())
    else:
        y_stats = 0.0, np.inf, -np.inf
    return LevelSummary(n_rows, len(kept), n_zero, *y_stats, distinct=distinct,
                        example=example)


@dataclass(frozen=True, eq=False)
class ChunkCoding:
    """The fixed coding of every chunk: levels, column names and a coder.

    ``fixef_names`` are all the fixed-effect columns before rank-deficient ones are
    dropped (that needs the whole ``X'X``); ``terms`` are in lme4's order;
    ``y_shift`` is subtracted from the response of every chunk (the response mean
    when the fixed part has an intercept, else 0).
    """

    plan: ChunkPlan
    coder: NewDataCoder
    fixef_names: tuple[str, ...]
    terms: tuple[RandomTerm, ...]
    n_obs: int
    n_dropped: int
    y_shift: float
    y_range: tuple[float, float]

    def code(self, frame: pd.DataFrame) -> tuple[np.ndarray, CodedRows]:
        """Response (minus ``y_shift``) and coded rows of the complete rows of a chunk."""
        kept, _, _ = _kept(frame, self.plan)
        if not len(kept):
            p = len(self.fixef_names)
            return np.zeros(0), CodedRows(
                X=np.zeros((0, p)), terms=tuple(range(len(self.terms))),
                Z_X=tuple(np.zeros((0, t.p)) for t in self.terms),
                codes=tuple(np.zeros(0, np.int64) for _ in self.terms),
                offset=np.zeros(0), weights=np.zeros(0), index=pd.RangeIndex(0))
        y = _m._response(self.plan.spec, kept) - self.y_shift
        return y, self.coder.code(kept)


def _prototype(summary: LevelSummary, plan: ChunkPlan) -> pd.DataFrame:
    """A frame holding every level of each categorical predictor (numbers: one example)."""
    cats = {c: summary.distinct[f"pred:{c}"][c] for c in plan.predictors
            if f"pred:{c}" in summary.distinct}
    size = max([2, *(len(v) for v in cats.values())])
    out: dict[str, Any] = {}
    for c in plan.predictors:
        if c in cats:
            vals = cats[c]
            if isinstance(vals.dtype, pd.CategoricalDtype):
                vals = vals.cat.remove_unused_categories()
            out[c] = vals.iloc[np.arange(size) % len(vals)].reset_index(drop=True)
        else:
            out[c] = pd.Series([summary.example[c]] * size)
    return pd.DataFrame(out, index=pd.RangeIndex(size))


def finish_levels(summary: LevelSummary, plan: ChunkPlan) -> ChunkCoding:
    """Levels and column names of the whole data from the merged level pass.

    Examples
    --------
    >>> plan = plan_chunks("y ~ x + (1 | g)")
    >>> a = scan_chunk(pd.DataFrame({"y": [1.0, 2.0], "x": ["b", "a"], "g": [3, 1]}), plan)
    >>> b = scan_chunk(pd.DataFrame({"y": [4.0, 5.0], "x": ["c", "a"], "g": [2, 1]}), plan)
    >>> coding = finish_levels(a.merge(b), plan)
    >>> coding.fixef_names, coding.terms[0].levels
    (('(Intercept)', 'xb', 'xc'), ('1', '2', '3'))
    """
    spec = plan.spec
    n = summary.n_kept
    if summary.n_rows == 0:
        raise DataError("data has no rows")
    if summary.n_zero_weight:
        if n == 0:
            raise DataError("no rows left: every complete row has zero prior weight")
        warnings.warn(f"dropped {summary.n_zero_weight} of {summary.n_rows} rows with zero "
                      f"prior weight", UserWarning, stacklevel=2)
    if n < 2:
        raise DataError(f"only {n} complete row; a mixed model needs more observations than "
                        f"grouping levels")
    proto = _prototype(summary, plan)
    contrasts = dict(plan.contrasts) or None
    _, names = _m._model_matrix(spec.fixed, proto, "fixed part", contrasts)
    terms, specs = [], {}
    for k, ts in enumerate(spec.random):
        combos = summary.distinct[f"term:{k}"]
        _, levels, values = _m._grouping(ts, combos)
        what = f"random term ({ts.expr} | {ts.group})"
        _, cnames = _m._model_matrix(ts.expr, proto, what)
        if not cnames:
            raise FormulaError(f"random term ({ts.expr} | {ts.group}) has no columns")
        if len(levels) < 2:
            raise DataError(f"grouping factor '{ts.group}' of random term ({ts.expr} | "
                            f"{ts.group}) has a single level ({levels[0]!r}); it needs at "
                            f"least 2 levels")
        if len(levels) * len(cnames) >= n:
            raise DataError(f"random term ({ts.expr} | {ts.group}) has "
                            f"{len(levels) * len(cnames)} random effects for {n} observations; "
                            f"it must have fewer random effects than observations")
        p = len(cnames)
        terms.append(RandomTerm(group=ts.group, coef_names=cnames, levels=levels,
                                codes=np.zeros(0, np.int64), X=np.zeros((0, p)),
                                level_values=values, structure=ts.structure))
        specs[id(terms[-1])] = ts
    terms = _m._lme4_order(terms)
    codings = tuple(TermCoding(specs[id(t)].expr, tuple(specs[id(t)].factors),
                               t.coef_names, t.levels, t.structure) for t in terms)
    coder = NewDataCoder(formula=spec.formula, response=spec.response, fixed=spec.fixed,
                         fixef_names=tuple(names), terms=codings, frame=proto,
                         contrasts=contrasts, weights_column=plan.weights,
                         offset_column=plan.offset)
    shift = summary.y_sum / n if "(Intercept)" in names else 0.0
    return ChunkCoding(plan=plan, coder=coder, fixef_names=tuple(names), terms=tuple(terms),
                       n_obs=n, n_dropped=summary.n_rows - n, y_shift=shift,
                       y_range=(summary.y_min, summary.y_max))
