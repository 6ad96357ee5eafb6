"""Trajectories: the response of each group against a covariate ``x``, one panel per
group, with the conditional fitted values ``X beta + Z b`` drawn as a line over ``x``.

A line joins fitted values only where they are one curve in ``x``: within a panel and a
level of ``by``.  When another column of the formula (a factor such as sex, a second
covariate) varies within a panel and is not ``by``, the fitted values of a panel are
several curves; they are then drawn as points, with a warning naming the column.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hierlm.plots.common import pyplot


def _varying_columns(res: Any, frame: pd.DataFrame, data: pd.DataFrame, group: str,
                     skip: set[str]) -> list[str]:
    """Formula columns other than ``skip`` that take several values within a panel."""
    coder = res.coder
    if coder is None:
        return []
    cols = [str(c) for c in coder.frame.columns if str(c) not in skip and c in data.columns]
    if not cols:
        return []
    rows = data.loc[frame.index, cols].assign(_panel=frame[group].to_numpy())
    counts = rows.groupby("_panel", sort=False, observed=True)[cols].nunique(dropna=False)
    return [c for c in cols if (counts[c] > 1).any()]


def trajectories(res: Any, data: pd.DataFrame, x: str, group: str,
                 groups: list[Any] | None = None, max_groups: int = 12,
                 by: str | None = None) -> Any:
    """The response of each group against ``x``, with the conditional fit as lines.

    Parameters
    ----------
    res : FitResult
        A model fitted to ``data``.
    data : pandas.DataFrame
        The data it was fitted to (rows dropped for missing values are skipped).
    x, group : str
        The covariate on the horizontal axis and the grouping column of the panels.
    groups : list, optional
        Which groups to show (the first ``max_groups`` by default).
    by : str, optional
        A column whose levels get one colour and one fitted line each within a panel
        (a factor of the fixed part that varies within groups, e.g. sex within litter).

    Returns
    -------
    matplotlib.figure.Figure
        With a figure legend: ``observed`` (points), ``fitted`` (lines) and, given
        ``by``, one entry per level of ``by``.

    Examples
    --------
    >>> import hierlm, hierlm.plots
    >>> df = hierlm.load_sleepstudy()
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", df)
    >>> fig = hierlm.plots.trajectories(res, df, x="Days", group="Subject")
    >>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()
    ('Days', 'Reaction')
    """
    plt = pyplot()
    from matplotlib.lines import Line2D

    from hierlm.errors import DataError, warn

    for col in (x, group) + ((by,) if by is not None else ()):
        if col not in data.columns:
            raise DataError(f"column {col!r} not in data")
    keep = [x, group] + ([by] if by is not None and by not in (x, group) else [])
    fitted = res.fitted()
    if isinstance(fitted, pd.Series):
        frame = data.loc[fitted.index, keep].assign(_fit=fitted.to_numpy())
    else:
        if len(data) != len(fitted):
            raise DataError(f"data has {len(data)} rows, the fit {len(fitted)}: pass the "
                            f"rows the model was fitted to")
        frame = data[keep].assign(_fit=np.asarray(fitted))
    frame = frame.assign(_y=res.y)
    response = res.formula.split("~")[0].strip()
    varying = _varying_columns(res, frame, data, group, {x, group, response}
                               | ({by} if by is not None else set()))
    if varying:
        warn(f"{', '.join(repr(c) for c in varying)} varies within {group}: the fitted "
             f"values of a panel are several curves, drawn as points; pass "
             f"by={varying[0]!r} for one line per level")
    labels = list(dict.fromkeys(frame[group])) if groups is None else list(groups)
    labels = labels[:max_groups] if groups is None else labels
    levels = [None] if by is None else list(dict.fromkeys(frame[by].dropna()))
    colors = {lev: (f"C{k % 10}" if by is not None else "C0") for k, lev in enumerate(levels)}
    ncol = min(4, len(labels))
    nrow = -(-len(labels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.2 * nrow + 0.5),
                             squeeze=False, sharex=True, sharey=True)
    for ax, lab in zip(axes.flat, labels, strict=False):
        panel = frame[frame[group] == lab]
        for lev in levels:
            rows = (panel if lev is None else panel[panel[by] == lev]).sort_values(x)
            if rows.empty:
                continue
            ax.plot(rows[x], rows["_y"], "o", ms=3, color=colors[lev], alpha=0.7)
            fit_color = "C1" if by is None else colors[lev]
            if varying:
                ax.plot(rows[x], rows["_fit"], "x", ms=4, color=fit_color, ls="none")
            else:
                ax.plot(rows[x], rows["_fit"], "-", color=fit_color)
        ax.set_title(f"{group} {lab}", fontsize=9)
        ax.set_xlabel(x)
        ax.set_ylabel(response)
    for ax in list(axes.flat)[len(labels):]:
        ax.set_visible(False)
    key = ("C0", "C1") if by is None else ("0.4", "0.4")  # by's levels get the colours
    handles = [Line2D([], [], marker="o", ms=4, ls="none", color=key[0], label="observed"),
               Line2D([], [], marker="x" if varying else None, ls="none" if varying else "-",
                      color=key[1], label="fitted")]
    if by is not None:
        handles += [Line2D([], [], marker="o", ms=4, color=colors[lev], label=f"{by}: {lev}")
                    for lev in levels]
    fig.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8,
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_figheight()))
    return fig
