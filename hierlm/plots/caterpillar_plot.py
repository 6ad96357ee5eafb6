"""Caterpillar plot of the random effects (lme4's ``dotplot(ranef(fit))``).

REML and ML fits: the conditional modes ``b_hat`` of each random effect, sorted, with
intervals ``b_hat +/- z_(1+level)/2 * cond_sd``.  NUTS fits: the posterior means with
equal-tailed intervals, the ``(1 - level)/2`` and ``(1 + level)/2`` quantiles of the
draws ``r_<group>``; a fit sampled without them (``ranef_draws=False``) shows the
conditional means at the point estimates, ``+/- z * SD``, and says so in its title.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from hierlm.plots.common import pyplot


def _posterior_draws(res: Any) -> dict[tuple[str, str], Any]:
    """``(group, term) -> DataArray (sample, level)`` of a NUTS fit's random effects."""
    coder = res.coder
    idata = getattr(res, "idata", None)
    if not res.is_posterior or coder is None or idata is None:
        return {}
    from hierlm.covariance.names import posterior_name
    from hierlm.objective.varcorr import group_labels

    out = {}
    for label, term in zip(group_labels(coder), coder.terms, strict=True):
        for node in ("posterior", "posterior_ranef"):
            if node in idata.children and posterior_name("ranef", label) in idata[node].data_vars:
                r = idata[node][posterior_name("ranef", label)].stack(sample=("chain", "draw"))
                for name in term.coef_names:
                    dim = posterior_name("term", label)
                    one = r.sel({dim: name}) if dim in r.dims else r
                    out[(term.group, name)] = one.transpose("sample", ...)
                break
    return out


def _intervals(res: Any, table: pd.DataFrame, level: float) -> tuple[pd.DataFrame, str]:
    """``table`` with ``lower`` and ``upper`` columns, and the figure's title."""
    draws = _posterior_draws(res)
    table = table.copy()
    if draws:
        q = [(1 - level) / 2, (1 + level) / 2]
        lower = np.empty(len(table))
        upper = np.empty(len(table))
        value = np.empty(len(table))
        for i, (g, term, lev) in enumerate(zip(table["group"], table["term"], table["level"],
                                               strict=True)):
            r = draws[(g, term)]
            col = r.sel({r.dims[1]: lev}).values
            lower[i], upper[i] = np.quantile(col, q)
            value[i] = col.mean()
        table["value"], table["lower"], table["upper"] = value, lower, upper
        return table, f"Posterior means with {level:.0%} equal-tailed intervals"
    z = stats.norm.ppf(0.5 + level / 2)
    table["lower"] = table["value"] - z * table["cond_sd"]
    table["upper"] = table["value"] + z * table["cond_sd"]
    if res.is_posterior:
        return table, (f"Conditional means at the posterior point estimates, +/- {z:.2f} SD "
                       f"(refit with ranef_draws=True for posterior intervals)")
    return table, f"Conditional modes with {level:.0%} intervals"


def caterpillar(res: Any, group: str | None = None, level: float = 0.95,
                max_levels: int | None = None) -> Any:
    """Sorted random effects with intervals, one panel per group and term.

    Parameters
    ----------
    res : FitResult
        A fitted model (REML, ML or NUTS; see the module docstring for what is drawn).
    group : str, optional
        Only this grouping factor (all by default).
    level : float
        Coverage of the intervals.
    max_levels : int, optional
        Show at most this many levels per panel, those with the largest ``|value|``;
        the panel's title then says how many of how many.  All levels by default.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import hierlm, hierlm.plots
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> fig = hierlm.plots.caterpillar(res)
    >>> [ax.get_xlabel() for ax in fig.axes]
    ['(Intercept) | Subject', 'Days | Subject']
    """
    plt = pyplot()
    from hierlm.errors import MethodError

    if max_levels is not None and (isinstance(max_levels, bool) or max_levels < 1):
        raise MethodError(f"max_levels must be a positive integer or None, got {max_levels!r}")
    table = res.ranef()
    if group is not None:
        if group not in set(table["group"]):
            raise MethodError(f"no grouping factor {group!r}; the model has "
                              f"{', '.join(dict.fromkeys(table['group']))}")
        table = table[table["group"] == group]
    table, title = _intervals(res, table.reset_index(drop=True), level)
    panels = list(dict.fromkeys(zip(table["group"], table["term"], strict=True)))
    per_panel = max(len(table) // max(len(panels), 1), 1)
    shown = per_panel if max_levels is None else min(per_panel, max_levels)
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), max(
        3.0, shown * 0.16 + 1.2)), squeeze=False)
    for ax, (g, term) in zip(axes[0], panels, strict=True):
        rows = table[(table["group"] == g) & (table["term"] == term)]
        n_all = len(rows)
        if max_levels is not None and n_all > max_levels:
            rows = rows.loc[rows["value"].abs().nlargest(max_levels).index]
            ax.set_title(f"{max_levels} of {n_all} levels (largest |value|)", fontsize=8)
        rows = rows.sort_values("value")
        pos = np.arange(len(rows))
        ax.hlines(pos, rows["lower"], rows["upper"], color="0.5", lw=1)
        ax.plot(rows["value"], pos, "o", ms=3, color="C0")
        ax.axvline(0.0, color="0.3", lw=0.8, ls="--")
        ax.set_yticks(pos)
        ax.set_yticklabels([str(v) for v in rows["level"]], fontsize=7)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.set_xlabel(f"{term} | {g}")
        ax.set_ylabel(f"{g} (level)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
