"""Estimated marginal means and their contrasts (R's emmeans), with t-test df.

The means are ``m = L beta-hat`` over emmeans' reference grid
(:mod:`hierlm.inference.emmeans_grid`); a contrast is ``w' m = (w' L) beta-hat``, so
every quantity is a linear function ``c' beta-hat`` with ``c = L' w``:

* ``ddf="kenward-roger"`` (REML): variance ``c' Phi_A c`` from Kenward-Roger's adjusted
  covariance and pbkrtest's df (:mod:`hierlm.inference.kenward_roger`, computed with
  ``q x q`` blocks of the random effects, never ``n x n``; with ``residual=`` /
  ``sigma=``, :mod:`hierlm.inference.residual_kenward_roger`);
* ``ddf="satterthwaite"``: ``c' C c`` and Satterthwaite's df
  (:mod:`hierlm.inference.satterthwaite`; with a residual structure the curvature in
  theta and the residual parameters, :mod:`hierlm.inference.residual_satterthwaite`);
* ``ddf="asymptotic"``: ``c' C c`` and df = inf (z tests).

Intervals are ``m +- t_{df}(1 - alpha/2) se``; tests ``t = c' beta-hat / se`` with the
adjustments of :mod:`hierlm.inference.emmeans_adjust`, within each ``by`` group.

For NUTS fits the means and contrasts are computed for each posterior draw of beta;
the tables give the posterior median (``emmean``/``estimate``), the posterior SD
(``se``) and the equal-tailed ``level`` interval instead of df and p.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from hierlm.errors import MethodError
from hierlm.inference.emmeans_adjust import (
    adjust_p,
    check_adjust,
    contrast_weights,
    critical_value,
)
from hierlm.inference.emmeans_grid import Grid, reference_grid
from hierlm.inference.fitted import info_of, require_model

DDF = {"kenward-roger": "kenward-roger", "kenward_roger": "kenward-roger", "kr": "kenward-roger",
       "satterthwaite": "satterthwaite", "asymptotic": "asymptotic"}
VarDf = Callable[[np.ndarray], tuple[float, float]]


@dataclass(frozen=True, eq=False)
class EMMeans:
    """Estimated marginal means of one fit (see the module docstring).

    Attributes
    ----------
    table : pandas.DataFrame
        The ``specs`` and ``by`` columns, then ``emmean, se, df, lower, upper`` (NUTS:
        ``emmean, se, lower, upper``).
    grid : Grid
        The reference grid: cells and their rows ``L`` over the coefficients.
    ddf : str
        ``"kenward-roger"``, ``"satterthwaite"``, ``"asymptotic"`` or ``"posterior"``.
    level : float
        Interval coverage.
    """

    table: pd.DataFrame
    grid: Grid
    ddf: str
    level: float
    beta: np.ndarray = field(repr=False)
    var_df: VarDf | None = field(repr=False, default=None)
    draws: np.ndarray | None = field(repr=False, default=None)

    def pairs(self, adjust: str = "tukey", intervals: bool = False) -> pd.DataFrame:
        """All pairwise differences ``"A - B"`` within each ``by`` group (emmeans' ``pairs``).

        Parameters
        ----------
        adjust : {"tukey", "holm", "bonferroni", "sidak", "none"}
            Multiplicity adjustment of the p-values, per ``by`` group.
        intervals : bool
            Also give ``lower, upper``: simultaneous intervals at :attr:`level` for
            ``tukey``, ``sidak`` and ``bonferroni`` (``holm``: Bonferroni's), else
            per-contrast.

        Examples
        --------
        >>> import hierlm, pandas as pd
        >>> d = hierlm.load_sleepstudy()
        >>> d["half"] = (d.Days >= 5).map({True: "late", False: "early"})
        >>> res = hierlm.fit("Reaction ~ half + (1 | Subject)", d)
        >>> res.emmeans("half").pairs().round(2).to_dict("records")[0]["contrast"]
        'early - late'
        """
        return self.contrast("pairwise", adjust=adjust, intervals=intervals)

    def contrast(self, method: str | Mapping[str, Any] = "pairwise", adjust: str | None = None,
                 intervals: bool = False) -> pd.DataFrame:
        """Contrasts of the means within each ``by`` group: ``contrast``, the ``by``
        columns, ``estimate, se, df, t, p`` (NUTS: ``estimate, se, lower, upper``).

        ``method`` is ``"pairwise"``, ``"revpairwise"``, ``"trt.vs.ctrl"`` (first level
        as control), ``"poly"`` or a dict of named weight vectors over the means of a
        group; ``adjust`` defaults to emmeans' choice for the method (``tukey``,
        ``tukey``, ``dunnettx``, ``none``, ``none``).

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> e = res.emmeans("Days", at={"Days": [0, 9]})
        >>> round(float(e.contrast({"9 vs 0": [-1, 1]})["estimate"].iloc[0]), 3)
        94.206
        """
        g = self.grid
        spec_cells = g.cells[list(g.specs)].drop_duplicates().reset_index(drop=True)
        labels = [self._label(r) for r in spec_cells.itertuples(index=False)]
        names, W, default = contrast_weights(method, labels)
        adj = check_adjust(default if adjust is None else adjust)
        groups = ([()] if not g.by else
                  list(g.cells[list(g.by)].drop_duplicates().itertuples(index=False)))
        out = []
        for grp in groups:
            mask = np.ones(len(g.cells), dtype=bool)
            for v, val in zip(g.by, grp, strict=True):
                mask &= (g.cells[v] == val).to_numpy()
            idx = np.flatnonzero(mask)
            C = W @ g.L[idx]
            ok = np.array([bool(np.all(g.estimable[idx][w != 0])) for w in W])
            part = self._rows(C, ok, adj, len(idx), intervals)
            part.insert(0, "contrast", names)
            for j, v in enumerate(g.by):
                part.insert(1 + j, v, grp[j])
            out.append(part)
        return pd.concat(out, ignore_index=True)

    # --------------------------------------------------------------------------------
    def _label(self, row: tuple[Any, ...]) -> str:
        parts = []
        for v, val in zip(self.grid.specs, row, strict=True):
            text = _fmt(val)
            parts.append(f"{v}{text}" if self.grid.numeric_levels.get(v) else text)
        return " ".join(parts)

    def _rows(self, C: np.ndarray, ok: np.ndarray, adjust: str, n_means: int,
              intervals: bool) -> pd.DataFrame:
        if self.draws is not None:
            return _posterior_rows(self.draws @ C.T, ok, self.level, "estimate")
        assert self.var_df is not None
        est = C @ self.beta
        vd = np.array([self.var_df(c) if o else (np.nan, np.nan) for c, o in zip(C, ok,
                                                                                strict=True)])
        se, df = np.sqrt(vd[:, 0]), vd[:, 1]
        t = est / se
        p = np.full(len(t), np.nan)
        good = np.isfinite(t)
        p[good] = adjust_p(t[good], df[good], adjust, n_means)
        table = pd.DataFrame({"estimate": np.where(ok, est, np.nan), "se": se, "df": df,
                              "t": t, "p": p})
        if intervals:
            m = int(good.sum())
            crit = np.array([critical_value(d, adjust, self.level, n_means, max(m, 1))
                             if np.isfinite(s) else np.nan for d, s in zip(df, se, strict=True)])
            table["lower"] = table["estimate"] - crit * se
            table["upper"] = table["estimate"] + crit * se
        return table


def _fmt(val: Any) -> str:
    if isinstance(val, float) and val.is_integer():
        return str(int(val))
    return str(val)


def _posterior_rows(D: np.ndarray, ok: np.ndarray, level: float, name: str) -> pd.DataFrame:
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(D, [a, 1.0 - a], axis=0)
    table = pd.DataFrame({name: np.median(D, axis=0), "se": D.std(axis=0, ddof=1),
                          "lower": lo, "upper": hi})
    table.loc[~ok, :] = np.nan
    return table


def _var_df(res: Any, ddf: str) -> VarDf:
    from hierlm.inference.residual_kenward_roger import kr_info_for
    from hierlm.inference.satterthwaite import contrast_df

    if ddf == "kenward-roger":
        if not res.is_reml:
            raise MethodError(f"Kenward-Roger df need a REML fit, not {res.method}; use "
                              f"ddf='satterthwaite' or 'asymptotic'")
        require_model(res, "Kenward-Roger's df", residual_ok=True)
        return kr_info_for(res).contrast
    if ddf == "satterthwaite":
        info = info_of(res)
        return lambda c: contrast_df(info, c)
    V = res.vcov.to_numpy()
    return lambda c: (float(c @ V @ c), np.inf)


def emmeans(res: Any, specs: Any, by: Any = None, ddf: str = "kenward-roger",
            level: float = 0.95, at: Mapping[str, Any] | None = None) -> EMMeans:
    """Estimated marginal means of ``specs`` (per ``by`` group) on emmeans' reference grid.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> emmeans(res, "Days").table.round(2).to_dict("records")
    [{'Days': 4.5, 'emmean': 298.51, 'se': 9.05, 'df': 17.0, 'lower': 279.41, 'upper': 317.6}]
    """
    if not (isinstance(level, float | int) and 0 < level < 1):
        raise MethodError(f"level must be between 0 and 1, got {level!r}")
    grid = reference_grid(res.coder, specs, by, at)
    cols = grid.cells.reset_index(drop=True)
    if res.is_posterior:
        post = res.idata["posterior"]
        beta = np.asarray(post["beta"].values, dtype=float)
        B = beta.reshape(-1, beta.shape[-1])
        table = pd.concat([cols, _posterior_rows(B @ grid.L.T, grid.estimable, level,
                                                 "emmean")], axis=1)
        return EMMeans(table, grid, "posterior", float(level), np.median(B, axis=0),
                       draws=B)
    key = ddf.lower() if isinstance(ddf, str) else None
    if key not in DDF:
        raise MethodError(f"unknown ddf {ddf!r}; use 'kenward-roger', 'satterthwaite' or "
                          f"'asymptotic'")
    var_df = _var_df(res, DDF[key])
    beta = res.fixef.to_numpy()
    rows = [var_df(c) if ok else (np.nan, np.nan)
            for c, ok in zip(grid.L, grid.estimable, strict=True)]
    est = np.where(grid.estimable, grid.L @ beta, np.nan)
    se = np.sqrt([r[0] for r in rows])
    df = np.array([r[1] for r in rows])
    crit = scipy.stats.t.ppf(0.5 + level / 2.0, df)
    table = pd.concat([cols, pd.DataFrame({"emmean": est, "se": se, "df": df,
                                           "lower": est - crit * se,
                                           "upper": est + crit * se})], axis=1)
    return EMMeans(table, grid, DDF[key], float(level), beta, var_df=var_df)
