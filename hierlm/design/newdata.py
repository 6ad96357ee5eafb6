"""Code new rows exactly as the fitting data were coded.

A fitted model's columns are functions of the fitting data: factor levels and their
contrasts (``C(f)``, the ``contrasts=`` argument), stateful transformations
(``scale(x)``, ``center(x)``), plain functions (``np.log(x)``, ``I(x^2)``) and the
levels of each grouping factor. A :class:`NewDataCoder` keeps what is needed to apply
the same functions to new rows: the formula's pieces, the names of the columns kept,
each random term's levels and the predictor and grouping columns of the rows used in
fitting. New rows are coded by the model matrix built from those rows
(:mod:`hierlm.design.model_matrix`), so every level, contrast and transformation state
is the fitting data's (the plain numeric fast path of :mod:`hierlm.design.matrices`
takes the columns as they are).

The coder is a plain value: :meth:`NewDataCoder.to_dict` and
:meth:`NewDataCoder.from_dict` turn it into numbers, strings and a DataFrame, so a
saved result keeps it.  New data are checked as strictly as fitting data; every
problem is one :class:`~hierlm.errors.DataError` naming the column.

The coder's ``frame`` may be given deferred (:func:`hierlm.design.lazy.deferred`): the
design's coder takes its columns from the design's rows when first read (a take of the
columns, 0.035-0.1 ms on two cores, that a fit which never codes new rows skips).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hierlm.design import columns as _c
from hierlm.design.contrasts import ContrastSpec, parse_contrasts
from hierlm.design.frames import as_pandas
from hierlm.design.lazy import deferred, lazy_fields
from hierlm.design.model_matrix import build_model_matrix
from hierlm.errors import DataError


@dataclass(frozen=True)
class TermCoding:
    """How one random-effects term codes a row: its expression, factors and levels."""

    expr: str
    factors: tuple[str, ...]
    coef_names: tuple[str, ...]
    levels: tuple[str, ...]
    structure: str = "us"

    @property
    def group(self) -> str:
        return ":".join(self.factors)

    @property
    def p(self) -> int:
        return len(self.coef_names)

    @property
    def n_theta(self) -> int:
        return self.p * (self.p + 1) // 2


@dataclass(frozen=True, eq=False)
class CodedRows:
    """New rows coded for a model.

    ``X`` holds the fixed-effect columns; ``Z_X[k]`` and ``codes[k]`` the raw model
    matrix and level index of the random terms in ``terms`` (``-1`` for a level not
    seen in fitting); ``offset`` the offset of each row.
    """

    X: np.ndarray
    terms: tuple[int, ...]
    Z_X: tuple[np.ndarray, ...]
    codes: tuple[np.ndarray, ...]
    offset: np.ndarray
    weights: np.ndarray
    index: pd.Index


def _is_numeric(col: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col))


@dataclass(frozen=True, eq=False)
class NewDataCoder:
    """Everything needed to code new rows like the fitting rows (see the module docstring).

    Attributes
    ----------
    formula, response, fixed : str
        The formula, its response and its fixed part.
    fixef_names : tuple of str
        The fixed-effect columns kept (after dropping rank-deficient ones).
    terms : tuple of TermCoding
        The random terms in lme4's order (as ``ModelDesign.terms``).
    frame : pandas.DataFrame
        Predictor and grouping columns of the rows used in fitting.
    weights, offset : ndarray or None
        Prior weights and offset of those rows.
    weights_column, offset_column : str or None
        The data columns they came from, when given by name.
    contrasts : dict or None
        The ``contrasts=`` of the fixed part (column -> ContrastSpec).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> new = pd.DataFrame({"Days": [0.0, 5.0], "Subject": ["308", "999"]})
    >>> rows = d.coder.code(new, allow_new_levels=True)
    >>> rows.X.tolist(), rows.codes[0].tolist()
    ([[1.0, 0.0], [1.0, 5.0]], [0, -1])
    """

    formula: str
    response: str
    fixed: str
    fixef_names: tuple[str, ...]
    terms: tuple[TermCoding, ...]
    frame: pd.DataFrame
    weights: np.ndarray | None = None
    offset: np.ndarray | None = None
    weights_column: str | None = None
    offset_column: str | None = None
    contrasts: dict[str, ContrastSpec] | None = None
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_theta(self) -> int:
        """Length of theta (the coder's terms can stand in for a design's in ``templates``)."""
        return sum(t.n_theta for t in self.terms)

    # --- columns -----------------------------------------------------------------------
    def fixed_columns(self) -> set[str]:
        """Data columns the fixed part uses."""
        return self._vars(self.fixed, "fixed part")

    def term_columns(self, k: int) -> set[str]:
        """Data columns term ``k``'s expression uses (its grouping columns excluded)."""
        t = self.terms[k]
        return self._vars(t.expr, f"random term ({t.expr} | {t.group})")

    def _vars(self, expr: str, what: str) -> set[str]:
        key = f"vars:{expr}"
        if key not in self._cache:
            self._cache[key] = _c._variables(expr, what)
        return set(self._cache[key])

    # --- coding ------------------------------------------------------------------------
    def code(self, newdata: pd.DataFrame | None, terms: Sequence[int] | None = None,
             allow_new_levels: bool = False) -> CodedRows:
        """Code ``newdata`` for the fixed part and the random terms ``terms`` (default: all).

        ``newdata=None`` codes the fitting rows, with their weights and offset.

        Raises
        ------
        DataError
            A missing column, a missing value, a dtype unlike the fitting data's, a level
            of a categorical predictor not seen in fitting, or (unless
            ``allow_new_levels``) a grouping level not seen in fitting.
        """
        ks = tuple(range(len(self.terms))) if terms is None else tuple(terms)
        if newdata is None:
            n = len(self.frame)
            return CodedRows(
                X=self._matrix(self.fixed, self.frame, "fixed part", self.fixef_names),
                terms=ks, Z_X=tuple(self._matrix(self.terms[k].expr, self.frame, "random term",
                                                 self.terms[k].coef_names) for k in ks),
                codes=tuple(self._codes(self.terms[k], self.frame, False) for k in ks),
                offset=np.zeros(n) if self.offset is None else self.offset.copy(),
                weights=np.ones(n) if self.weights is None else self.weights.copy(),
                index=pd.RangeIndex(n))
        newdata = as_pandas(newdata, "newdata")
        values = self.fixed_columns()
        grouping: set[str] = set()
        for k in ks:
            values |= self.term_columns(k)
            grouping |= set(self.terms[k].factors)
        if self.offset_column is not None:
            values.add(self.offset_column)
        new = self._checked(newdata, values, grouping)
        X = self._matrix(self.fixed, new, "fixed part", self.fixef_names)
        Z_X, codes = [], []
        for k in ks:
            t = self.terms[k]
            Z_X.append(self._matrix(t.expr, new, f"random term ({t.expr} | {t.group})",
                                    t.coef_names))
            codes.append(self._codes(t, new, allow_new_levels))
        offset = np.zeros(len(new))
        if self.offset_column is not None:
            col = new[self.offset_column]
            if not _is_numeric(col):
                raise DataError(f"newdata column '{self.offset_column}' (the offset) must be "
                                f"numeric, got dtype {col.dtype}")
            offset = col.to_numpy(dtype=np.float64)
        if self.offset is not None and self.offset_column is None:
            raise DataError("the model's offset was given as an array, so it is unknown for "
                            "new rows; fit with offset='<column name>' to predict on new data")
        if self.weights_column is not None and self.weights_column in newdata.columns:
            weights = newdata[self.weights_column].to_numpy(dtype=np.float64)
            if not (np.all(np.isfinite(weights)) and np.all(weights > 0)):
                raise DataError(f"newdata column '{self.weights_column}' (the prior weights) "
                                f"must be positive finite numbers")
        else:
            weights = np.ones(len(new))
        return CodedRows(X=X, terms=ks, Z_X=tuple(Z_X), codes=tuple(codes), offset=offset,
                         weights=weights, index=newdata.index)

    def _checked(self, newdata: object, values: set[str], grouping: set[str]) -> pd.DataFrame:
        used = values | grouping
        newdata = _c.check_columns(newdata, used, "newdata", require_rows=False)
        out = {}
        for c in sorted(used):
            col = newdata[c].reset_index(drop=True)
            n_na = int(col.isna().sum())
            if n_na:
                raise DataError(f"newdata column '{c}' has {n_na} missing value(s)")
            if pd.api.types.is_complex_dtype(col):
                raise DataError(f"newdata column '{c}' has complex values")
            if c in values and c in self.frame.columns:
                col = self._like_fitting(c, col)
            out[c] = col
        return pd.DataFrame(out, index=pd.RangeIndex(len(newdata)))

    def _like_fitting(self, c: str, col: pd.Series) -> pd.Series:
        """``col`` checked against the fitting column ``c`` and given its dtype."""
        train = self.frame[c]
        if _is_numeric(train):
            if not _is_numeric(col):
                raise DataError(f"newdata column '{c}' must be numeric as in the fitting data, "
                                f"got dtype {col.dtype}")
            return col
        if _is_numeric(col) and not pd.api.types.is_bool_dtype(train):
            raise DataError(f"newdata column '{c}' must be categorical or text as in the "
                            f"fitting data, got dtype {col.dtype}")
        if isinstance(train.dtype, pd.CategoricalDtype):
            seen = pd.Index(train.cat.categories)
        else:
            seen = pd.Index(train.unique())
        unseen = pd.unique(col[~col.isin(seen)])
        if len(unseen):
            shown = ", ".join(repr(v) for v in unseen[:10]) + (" ..." if len(unseen) > 10 else "")
            raise DataError(f"newdata column '{c}' has level(s) not seen in fitting: {shown}")
        if isinstance(train.dtype, pd.CategoricalDtype):
            return pd.Series(pd.Categorical(col, dtype=train.dtype))
        return col.astype(train.dtype)

    def _matrix(self, expr: str, new: pd.DataFrame, what: str,
                names: tuple[str, ...]) -> np.ndarray:
        contrasts = self.contrasts if what == "fixed part" else None
        if _c._simple_matrix(expr, self.frame) is not None and not contrasts:
            simple = _c._simple_matrix(expr, new)
            assert simple is not None  # the same columns, checked numeric
            M, got = simple
        else:
            key = f"matrix:{contrasts is not None}:{what == 'fixed part'}:{expr}"
            if key not in self._cache:
                self._cache[key] = build_model_matrix(expr, self.frame, contrasts, what,
                                                      _c.formulae_common)
            mm = self._cache[key]
            M, got = mm.code(new), mm.names
        lost = [n for n in names if n not in got]
        if lost:  # a result saved by a version that named columns otherwise
            raise DataError(f"the model's {what} column(s) {', '.join(map(repr, lost))} are "
                            f"not among those its formula gives now ({', '.join(got)}); "
                            f"refit the model to predict on new data")
        cols = [got.index(n) for n in names]
        M = M[:, cols]
        bad = [n for n, ok in zip(names, np.isfinite(M).all(axis=0), strict=True) if not ok]
        if bad:
            raise DataError(f"newdata gives non-finite values in {what} column(s) "
                            f"{', '.join(map(repr, bad))}")
        return M

    @staticmethod
    def _codes(t: TermCoding, new: pd.DataFrame, allow_new_levels: bool) -> np.ndarray:
        labels = _c.group_labels(t.factors, new)
        lookup = pd.Index(t.levels)
        codes = lookup.get_indexer(pd.Index(labels.to_numpy(dtype=object)))
        if not allow_new_levels and np.any(codes < 0):
            unseen = pd.unique(labels[codes < 0])
            shown = ", ".join(repr(v) for v in unseen[:10]) + (" ..." if len(unseen) > 10 else "")
            raise DataError(f"grouping column '{t.group}' has level(s) not seen in fitting: "
                            f"{shown}; pass allow_new_levels=True to give them random "
                            f"effect 0")
        return codes.astype(np.int64)

    # --- plain values ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The coder as plain values (strings, tuples, arrays, a DataFrame)."""
        return {"formula": self.formula, "response": self.response, "fixed": self.fixed,
                "fixef_names": self.fixef_names,
                "terms": [(t.expr, t.factors, t.coef_names, t.levels, t.structure)
                          for t in self.terms],
                "frame": self.frame, "weights": self.weights, "offset": self.offset,
                "weights_column": self.weights_column, "offset_column": self.offset_column,
                "contrasts": {k: v.to_plain() for k, v in (self.contrasts or {}).items()}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NewDataCoder:
        """Inverse of :meth:`to_dict`."""
        terms = tuple(TermCoding(str(e), tuple(f), tuple(c), tuple(lv),
                                 str(rest[0]) if rest else "us")
                      for e, f, c, lv, *rest in d["terms"])
        return cls(formula=d["formula"], response=d["response"], fixed=d["fixed"],
                   fixef_names=tuple(d["fixef_names"]), terms=terms, frame=d["frame"],
                   weights=d["weights"], offset=d["offset"],
                   weights_column=d["weights_column"], offset_column=d["offset_column"],
                   contrasts=parse_contrasts(d.get("contrasts")) or None)


# the coder's frame is taken from the design's rows when first read (hierlm.design.lazy):
# a fit that never codes new rows does not copy its columns
lazy_fields(NewDataCoder, "frame")


def new_data_coder(spec: Any, frame: pd.DataFrame | Callable[[], pd.DataFrame],
                   fixef_names: tuple[str, ...],
                   terms: Sequence[tuple[Any, Any]], weights: np.ndarray | None,
                   offset: np.ndarray | None, weights_column: str | None,
                   offset_column: str | None,
                   contrasts: dict[str, ContrastSpec] | None = None) -> NewDataCoder:
    """The coder of a design built by :func:`hierlm.design.matrices.build_design`.

    ``terms`` pairs each random term's spec with its evaluated term, in lme4's order;
    ``frame`` holds the used columns of the rows kept (the response is dropped), or is
    a function that returns them (called when the coder's frame is first read).
    """
    codings = tuple(TermCoding(ts.expr, tuple(ts.factors), tuple(t.coef_names),
                               tuple(t.levels), ts.structure) for ts, t in terms)
    def coder_frame() -> pd.DataFrame:
        # by position, as ``frame[names].copy()`` without pandas' label lookup (``take``
        # copies; ``frame`` is build_design's own copy and is not changed afterwards)
        rows = frame() if callable(frame) else frame
        keep = [i for i, c in enumerate(rows.columns) if c != spec.response]
        return rows.take(keep, axis=1)

    return NewDataCoder(formula=spec.formula, response=spec.response, fixed=spec.fixed,
                        fixef_names=tuple(fixef_names), terms=codings,
                        frame=deferred(coder_frame),
                        weights=weights, offset=offset,
                        weights_column=weights_column, offset_column=offset_column,
                        contrasts=contrasts or None)
