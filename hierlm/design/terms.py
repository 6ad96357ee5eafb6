"""Plain values describing a model's terms: the output of stage 1.

The model is ``y = X beta + Z b + eps`` with ``Z = [Z_1 ... Z_K]``, one block per
random-effects term.  Term ``i`` has ``p_i`` coefficients per level of its grouping
factor and ``l_i`` levels; observation ``j`` contributes the row ``X_i[j, :]`` to the
columns of level ``codes_i[j]``.  ``Z`` is never stored densely: ``(codes, X)`` is
its exact sparse description (MixedModels.jl's ``ReMat``).

A term's ``level_values`` (a pandas Index) may be given deferred
(:func:`hierlm.design.lazy.deferred`) and is then built when first read: 0.01-0.03 ms
per term that a fit without a random-effects table never spends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hierlm.design.lazy import lazy_fields

#: The covariance structures of a random-effects term, by glmmTMB's names: the formula
#: function and keyword that select each (``None``: no keyword).
STRUCTURES: dict[str, tuple[str, str | None]] = {
    "us": ("us", None), "diag": ("diag", None), "homdiag": ("diag", "hom"),
    "cs": ("cs", None), "homcs": ("cs", "hom"), "ar1": ("ar1", None),
    "hetar1": ("ar1", "het"), "toep": ("toep", None), "homtoep": ("toep", "hom"),
}


@dataclass(frozen=True)
class RandomTermSpec:
    """One random-effects term as written in the formula, after expansion.

    ``(1 + x || g)`` becomes two specs and ``(1 | a/b)`` becomes ``(1 | a)`` and
    ``(1 | b:a)``; ``factors`` lists the grouping columns of an interaction in
    lme4's naming order (``("b", "a")`` is the group ``"b:a"``).  ``structure`` names
    the covariance structure of the term (``"us"``, lme4's unstructured default, or one
    of :data:`STRUCTURES`, written ``cs(0 + f | g)``, ``cs(0 + f | g, hom=True)``, ...).
    """

    expr: str
    factors: tuple[str, ...]
    structure: str = "us"

    @property
    def group(self) -> str:
        """The grouping factor's name as lme4 prints it, e.g. ``"cask:batch"``."""
        return ":".join(self.factors)


@dataclass(frozen=True)
class FormulaSpec:
    """A parsed lme4-style formula: response, fixed part and random terms."""

    formula: str
    response: str
    fixed: str
    random: tuple[RandomTermSpec, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """Names of the grouping columns used by the random terms, in order of appearance."""
        seen: dict[str, None] = {}
        for term in self.random:
            for f in term.factors:
                seen.setdefault(f, None)
        return tuple(seen)


@dataclass(frozen=True, eq=False)
class RandomTerm:
    """A random-effects term evaluated on data.

    Attributes
    ----------
    group : str
        Grouping factor name (``"Subject"``, ``"cask:batch"``); a second term on the
        same factor gets lme4's suffix (``"Subject.1"``) in ``varcorr``.
    coef_names : tuple of str
        Names of the ``p`` coefficients per level, e.g. ``("(Intercept)", "Days")``.
    levels : tuple of str
        Labels of the ``l`` levels of the grouping factor.
    codes : ndarray of int, shape (n,)
        Level index of each observation.
    X : ndarray, shape (n, p)
        The term's raw model matrix.
    level_values : pandas.Index or None
        The levels as the data hold them (the grouping column's dtype, e.g. int or a
        categorical's categories), in the order of ``levels``; None means ``levels``.
    col_rms : ndarray or None
        Root mean square of each column of ``X``, for a term whose rows are not held
        (data read in chunks); None means computed from ``X``.
    structure : str
        The covariance structure (a key of :data:`STRUCTURES`; ``"us"`` by default).
    """

    group: str
    coef_names: tuple[str, ...]
    levels: tuple[str, ...]
    codes: np.ndarray
    X: np.ndarray
    level_values: Any = None
    col_rms: Any = None
    structure: str = "us"

    @property
    def values(self) -> Any:
        """``level_values``, or the labels when the data's values were not kept."""
        import pandas as pd

        return (pd.Index(list(self.levels), dtype=object) if self.level_values is None
                else self.level_values)

    @property
    def p(self) -> int:
        return len(self.coef_names)

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def q(self) -> int:
        """Number of random effects (columns of Z) of this term."""
        return self.p * self.n_levels

    @property
    def n_theta(self) -> int:
        """Length of this term's slice of theta (lower triangle of a p x p template)."""
        return self.p * (self.p + 1) // 2


# a term's level values (a pandas Index) are built when first read (hierlm.design.lazy)
lazy_fields(RandomTerm, "level_values")


@dataclass(frozen=True, eq=False)
class ModelDesign:
    """Stage-1 output: everything the likelihood needs, as plain arrays.

    ``terms`` are in lme4's order (decreasing number of levels, ties kept in formula
    order); theta packs their templates in this order.  ``weights`` (prior weights,
    residual variance ``sigma^2 / w``) and ``offset`` are None when not given; ``coder``
    codes new rows like these (:class:`hierlm.design.newdata.NewDataCoder`);
    ``row_labels`` and ``dropped_rows`` are the caller's labels of the rows used and of
    those dropped.
    """

    formula: str
    response: str
    y: np.ndarray
    X: np.ndarray
    fixef_names: tuple[str, ...]
    terms: tuple[RandomTerm, ...]
    n_dropped: int = 0
    weights: np.ndarray | None = None
    offset: np.ndarray | None = None
    coder: Any = None
    row_labels: Any = None
    dropped_rows: Any = None

    @property
    def nobs(self) -> int:
        return int(self.y.shape[0])

    @property
    def p(self) -> int:
        return int(self.X.shape[1])

    @property
    def q(self) -> int:
        return sum(t.q for t in self.terms)

    @property
    def n_theta(self) -> int:
        return sum(t.n_theta for t in self.terms)


# the caller's row labels of a design that kept every row of a RangeIndex are built when
# first read (hierlm.design.column_reads.row_labels)
lazy_fields(ModelDesign, "row_labels", "dropped_rows")
