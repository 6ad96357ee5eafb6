"""The variance decomposition: each variance component ``sigma_i^2`` (the variances of
``varcorr``, residual included) as a share of their sum, with intervals from a
``confint`` table of SDs when given (squared bounds, the other components held at their
estimates).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hierlm.covariance.names import parameter_name
from hierlm.plots.common import pyplot


def variance_decomposition(res: Any, intervals: pd.DataFrame | None = None) -> Any:
    """Share of each variance component in the total, with intervals when given.

    Parameters
    ----------
    res : FitResult
        A fitted model.
    intervals : pandas.DataFrame, optional
        A ``res.confint(...)`` table (index ``sd_<term>|<group>``, ``sigma``; columns
        ``lower, upper``); squared bounds are drawn as intervals of each share, holding
        the other components at their estimates.

    Notes
    -----
    The variance of a random slope is in units of the response per unit of its
    covariate, squared: its share depends on the covariate's scale.  The decomposition
    reads most naturally for intercept-only terms (nested or crossed designs).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import hierlm, hierlm.plots
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", hierlm.load_sleepstudy())
    >>> fig = hierlm.plots.variance_decomposition(res)
    >>> fig.axes[0].get_xlabel()
    'share of the total variance'
    """
    plt = pyplot()
    vc = res.varcorr
    var = vc[vc["term2"].isna()].reset_index(drop=True)
    labels = [("Residual" if r.group == "Residual" else f"{r.term1} | {r.group}")
              for r in var.itertuples()]
    names = [("sigma" if r.group == "Residual" else parameter_name(r.group.split('.')[0], r.term1))
             for r in var.itertuples()]
    v = var["variance_or_cov"].to_numpy(dtype=float)
    total = v.sum()
    share = v / total
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(v) + 1.5))
    pos = np.arange(len(v))[::-1]
    ax.barh(pos, share, color="C0", alpha=0.8)
    lo, hi = [0.0] * len(v), [0.0] * len(v)
    if intervals is not None:
        lo, hi = [], []
        for name, vi in zip(names, v, strict=True):
            if name in intervals.index:
                bounds = intervals.loc[name, ["lower", "upper"]].to_numpy(dtype=float)
                a, b = bounds**2
                lo.append(vi / total - a / (total - vi + a))
                hi.append(b / (total - vi + b) - vi / total)
            else:
                lo.append(0.0)
                hi.append(0.0)
        ax.errorbar(share, pos, xerr=[lo, hi], fmt="none", ecolor="0.2", capsize=3)
    for p, s, h in zip(pos, share, hi, strict=True):
        ax.text(min(s + h + 0.015, 0.92), p + 0.25, f"{s:.1%}", va="center", fontsize=8)
    ax.set_yticks(pos)
    ax.set_yticklabels(labels)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the total variance")
    ax.set_ylabel("variance component")
    ax.set_title(f"Variance decomposition ({res.method})")
    fig.tight_layout()
    return fig
