"""Plots of estimated marginal means and their pairwise comparisons (matplotlib).

* :func:`emmeans`: an interaction plot: each mean of the ``EMMeans`` table (from
  ``res.emmeans(...)``) with its interval ``lower``-``upper``, the first ``specs``
  variable on the x axis, one line per level of the next variable (a second spec or
  the first ``by`` variable), one panel per level of any further ``by`` variable.
* :func:`pairs`: a forest plot of the pairwise differences ``"A - B"`` with
  simultaneous intervals (Tukey's by default) and the line of no difference.

Both return the matplotlib figure; re-exported by :mod:`hierlm.plots`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        from hierlm.errors import MethodError

        raise MethodError("plots need matplotlib: pip install 'hierlm[plots]'") from None
    return plt


def _check(em: Any) -> pd.DataFrame:
    table = getattr(em, "table", None)
    if not isinstance(table, pd.DataFrame) or "emmean" not in table.columns:
        from hierlm.errors import MethodError

        raise MethodError("plot an EMMeans object: res.emmeans(specs, by=...)")
    return table


def emmeans(em: Any, dodge: float = 0.08) -> Any:
    """Interaction plot of estimated marginal means with their intervals.

    Examples
    --------
    >>> import hierlm, matplotlib
    >>> matplotlib.use("Agg")
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> fig = emmeans(res.emmeans("Days", at={"Days": [0, 3, 6, 9]}))
    >>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()
    ('Days', 'emmean')
    """
    table = _check(em)
    plt = _pyplot()
    keys = [*em.grid.specs, *em.grid.by]
    x, trace, panels = keys[0], (keys[1] if len(keys) > 1 else None), keys[2:]
    panel_rows = ([((), table)] if not panels else
                  list(table.groupby(panels, sort=False)))
    fig, axes = plt.subplots(1, len(panel_rows), figsize=(4.5 * len(panel_rows), 3.8),
                             squeeze=False, sharey=True)
    xs = list(dict.fromkeys(table[x]))
    pos = {v: i for i, v in enumerate(xs)}
    numeric_x = all(isinstance(v, int | float) and not isinstance(v, bool) for v in xs)
    for ax, (key, part) in zip(axes.flat, panel_rows, strict=True):
        lines = [((), part)] if trace is None else list(part.groupby(trace, sort=False))
        for k, (label, sub) in enumerate(lines):
            shift = (k - (len(lines) - 1) / 2) * dodge
            xv = (sub[x].to_numpy(float) if numeric_x else
                  np.array([pos[v] for v in sub[x]], dtype=float)) + shift
            err = np.vstack([sub["emmean"] - sub["lower"], sub["upper"] - sub["emmean"]])
            lev = label[0] if isinstance(label, tuple) and label else label
            name = None if trace is None else f"{trace} = {lev}"
            ax.errorbar(xv, sub["emmean"], yerr=err, marker="o", capsize=3, label=name)
        if not numeric_x:
            ax.set_xticks(range(len(xs)), [str(v) for v in xs])
        ax.set_xlabel(x)
        if panels:
            vals = key if isinstance(key, tuple) else (key,)
            ax.set_title(", ".join(f"{p} = {v}" for p, v in zip(panels, vals, strict=False)))
        if trace is not None:
            ax.legend(fontsize="small")
    axes.flat[0].set_ylabel("emmean")
    fig.tight_layout()
    return fig


def pairs(em: Any, adjust: str = "tukey") -> Any:
    """Forest plot of the pairwise differences with simultaneous intervals.

    Examples
    --------
    >>> import hierlm, matplotlib
    >>> matplotlib.use("Agg")
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> fig = pairs(res.emmeans("Days", at={"Days": [0, 3, 6]}))
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]
    ['0 - 3', '0 - 6', '3 - 6']
    """
    _check(em)
    plt = _pyplot()
    p = em.pairs(adjust=adjust, intervals=True) if em.draws is None else em.pairs()
    by = [c for c in em.grid.by]
    labels = [c if not by else f"{c} | " + ", ".join(str(r[b]) for b in by)
              for c, (_, r) in zip(p["contrast"], p.iterrows(), strict=True)]
    fig, ax = plt.subplots(figsize=(5.5, 0.9 + 0.35 * len(p)))
    y = np.arange(len(p))[::-1]
    ax.errorbar(p["estimate"], y, xerr=np.vstack([p["estimate"] - p["lower"],
                                                  p["upper"] - p["estimate"]]),
                fmt="o", capsize=3)
    ax.axvline(0.0, color="grey", lw=1, ls="--")
    ax.set_yticks(y, labels)
    kind = "posterior" if em.draws is not None else adjust
    ax.set_xlabel(f"difference ({kind} {em.level:.0%} intervals)")
    fig.tight_layout()
    return fig
