"""The reference grid of estimated marginal means, as emmeans builds it.

Every variable of the fixed part gets a set of values: a factor (text, categorical or
boolean column, or a numeric column wrapped in ``C()``/``factor()``) its levels in the
model's order, a numeric covariate its mean over the fitting rows, and ``at`` replaces
either.  The grid is every combination of those values (the first variable varying
fastest, as ``expand.grid``), coded with the fitted model's coder into rows ``x_g`` of
the fixed-effects design, so contrasts, interactions and transformations (``log(x)``
at ``x = mean(x)``, as emmeans) are the model's own.

The estimated marginal mean of a cell ``c`` of the ``specs`` (and ``by``) variables
averages the other variables' cells with equal weights:

    l_c = (1 / |G_c|) sum_{g in G_c} x_g,        emmean_c = l_c' beta-hat,

so the table is ``L beta-hat`` with the rows ``l_c`` stacked, in ``expand.grid``
order over ``specs + by``.  A cell is estimable in a rank-deficient fit when ``l_c``
(over all the columns before any was dropped) is orthogonal to the null space of the
full fixed-effects matrix; others get NaN (emmeans' ``nonEst``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierlm.design import columns as _c
from hierlm.design.model_matrix import build_model_matrix
from hierlm.errors import MethodError


@dataclass(frozen=True, eq=False)
class Grid:
    """Rows ``L`` of the marginal means: one per cell of ``specs + by`` (``cells``)."""

    specs: tuple[str, ...]
    by: tuple[str, ...]
    cells: pd.DataFrame
    L: np.ndarray
    estimable: np.ndarray
    numeric_levels: dict[str, bool]


def parse_specs(specs: object, by: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``specs`` and ``by`` as tuples of names; ``specs`` may be ``"~ A * B | C"``.

    Examples
    --------
    >>> parse_specs("~ A * B | C", None)
    (('A', 'B'), ('C',))
    >>> parse_specs(["A"], "B")
    (('A',), ('B',))
    """
    def names(x: object, what: str) -> list[str]:
        if x is None:
            return []
        if isinstance(x, str):
            return [p for p in re.split(r"[\s*:+]+", x.strip()) if p]
        if isinstance(x, Sequence) and all(isinstance(v, str) for v in x):
            return [str(v) for v in x]
        raise MethodError(f"emmeans {what} must be a column name or a list of names, got {x!r}")

    extra: list[str] = []
    if isinstance(specs, str):
        text = specs.strip().lstrip("~")
        if "|" in text:
            text, rest = text.split("|", 1)
            extra = names(rest, "specs")
        sp = names(text, "specs")
    else:
        sp = names(specs, "specs")
    bys = extra + names(by, "by")
    if not sp:
        raise MethodError("emmeans specs name no variable")
    both = sp + bys
    if len(set(both)) != len(both):
        raise MethodError(f"emmeans specs and by repeat a variable: {both}")
    return tuple(sp), tuple(bys)


def _is_factor(name: str, col: pd.Series, fixed: str) -> bool:
    if not (pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)):
        return True
    return re.search(rf"\b(C|factor|as\.factor)\(\s*{re.escape(name)}\s*[,)]", fixed) is not None


def _levels(col: pd.Series) -> list[Any]:
    if isinstance(col.dtype, pd.CategoricalDtype):
        return list(col.cat.categories)
    if pd.api.types.is_bool_dtype(col):
        return [False, True]
    return sorted(pd.unique(col))


def _numeric_label(levels: Sequence[Any]) -> bool:
    try:
        [float(str(v)) for v in levels]
    except ValueError:
        return False
    return True


def reference_grid(coder: Any, specs: object, by: object = None,
                   at: Mapping[str, Any] | None = None) -> Grid:
    """emmeans' reference grid of a fitted model's coder, averaged to ``specs + by``.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> g = reference_grid(d.coder, "Days")
    >>> g.cells.to_dict("list"), g.L.tolist()
    ({'Days': [4.5]}, [[1.0, 4.5]])
    """
    if coder is None:
        raise MethodError("emmeans needs how the data were coded (FitResult.coder)")
    if coder.offset is not None:
        raise MethodError("emmeans of a model with an offset is not supported")
    sp, bys = parse_specs(specs, by)
    frame = coder.frame
    variables = sorted(coder.fixed_columns(), key=list(frame.columns).index)
    at = dict(at or {})
    for v in (*sp, *bys, *at):
        if v not in variables:
            raise MethodError(f"emmeans: '{v}' is not a variable of the fixed part "
                              f"(variables: {variables})")
    values: dict[str, list[Any]] = {}
    numeric_levels: dict[str, bool] = {}
    for v in variables:
        col = frame[v]
        factor = _is_factor(v, col, coder.fixed)
        if v in at:
            vals = list(np.atleast_1d(np.asarray(at[v], dtype=object)))
            if not vals:
                raise MethodError(f"emmeans: at['{v}'] is empty")
            if factor:
                bad = [x for x in vals if x not in set(_levels(col))]
                if bad:
                    raise MethodError(f"emmeans: at['{v}'] has level(s) not in the data: {bad}")
            else:
                try:
                    vals = [float(x) for x in vals]
                except (TypeError, ValueError):
                    raise MethodError(f"emmeans: at['{v}'] must be numbers") from None
        elif factor:
            vals = _levels(col)
        else:
            vals = [float(col.mean())]
        values[v] = vals
        numeric_levels[v] = factor and _numeric_label(vals)
    combos = list(itertools.product(*[values[v] for v in reversed(variables)]))
    grid = pd.DataFrame([tuple(reversed(c)) for c in combos], columns=variables)
    for v in variables:
        if isinstance(frame[v].dtype, pd.CategoricalDtype):
            grid[v] = pd.Categorical(grid[v], dtype=frame[v].dtype)
        elif not pd.api.types.is_numeric_dtype(frame[v]) or pd.api.types.is_bool_dtype(frame[v]):
            grid[v] = grid[v].astype(frame[v].dtype)
    X = coder.code(grid, terms=()).X
    ok = _estimable(coder, grid)
    keys = (*sp, *bys)
    cell_combos = list(itertools.product(*[values[v] for v in reversed(keys)]))
    cells = pd.DataFrame([tuple(reversed(c)) for c in cell_combos], columns=list(keys))
    L = np.empty((len(cells), X.shape[1]))
    est = np.empty(len(cells), dtype=bool)
    key_of = [tuple(r) for r in grid[list(keys)].itertuples(index=False)]
    for i, cell in enumerate(cells.itertuples(index=False)):
        m = np.array([k == tuple(cell) for k in key_of])
        L[i] = X[m].mean(axis=0)
        est[i] = bool(ok[m].all())
    return Grid(sp, bys, cells, L, est, numeric_levels)


def _full_matrices(coder: Any, rows: pd.DataFrame
                   ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The fixed-effects matrices of the fitting rows and of ``rows`` with every column,
    dropped ones included (one model matrix codes both), and the columns' names."""
    contrasts = coder.contrasts
    simple = _c._simple_matrix(coder.fixed, coder.frame)
    if simple is not None and not contrasts:
        got = _c._simple_matrix(coder.fixed, rows)
        assert got is not None  # the same numeric columns
        return simple[0], got[0], simple[1]
    mm = build_model_matrix(coder.fixed, coder.frame, contrasts, "fixed part",
                            _c.formulae_common)
    return mm.values, mm.code(rows), mm.names


def _estimable(coder: Any, grid: pd.DataFrame) -> np.ndarray:
    """Which grid rows are estimable when the fit dropped rank-deficient columns: those
    orthogonal to the null space of the full matrix (eigenvectors of ``X'X`` with
    eigenvalues below ``1e-10`` of the largest)."""
    Xf, Xg, names = _full_matrices(coder, grid)
    if len(names) == len(coder.fixef_names):
        return np.ones(len(grid), dtype=bool)
    w, U = np.linalg.eigh(Xf.T @ Xf)
    null = U[:, w <= 1e-10 * w.max()]
    scale = np.maximum(np.abs(Xg).max(axis=1), 1.0)
    return np.asarray(np.abs(Xg @ null).max(axis=1) <= 1e-6 * scale)
