"""Plots of a fitted model (matplotlib, the optional extra ``hierlm[plots]``).

* :func:`caterpillar`: conditional modes ``b_hat`` of each random effect, sorted, with
  intervals ``b_hat +/- z_(1+level)/2 * cond_sd`` (lme4's ``dotplot(ranef(fit))``).
* :func:`variance_decomposition`: each variance component ``sigma_i^2`` (the variances
  of ``varcorr``, residual included) as a share of their sum, with intervals from a
  ``confint`` table of SDs when given (squared bounds).
* :func:`profile_zeta`: lme4's profile plot, ``zeta`` against each parameter, with the
  lines ``zeta = +/- z`` whose crossings are the profile interval.
* :func:`trajectories`: the response of each group against a covariate, with the
  conditional fitted values drawn as a line.

Axes carry the model's own names (terms, groups, parameters).  Each function returns
the matplotlib figure, so it can be restyled or saved.  For NUTS fits use ArviZ's plots
on ``res.idata`` (``az.plot_forest``, ``az.plot_trace``); they are not rewritten here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        from hierlm.errors import MethodError

        raise MethodError("plots need matplotlib: pip install 'hierlm[plots]'") from None
    return plt


def caterpillar(res: Any, group: str | None = None, level: float = 0.95,
                max_levels: int = 60) -> Any:
    """Sorted conditional modes with intervals, one panel per group and term.

    Parameters
    ----------
    res : FitResult
        A fitted model.
    group : str, optional
        Only this grouping factor (all by default).
    level : float
        Coverage of the intervals (conditional modes +/- z * conditional SD).
    max_levels : int
        Panels with more levels show the ``max_levels`` largest ``|value|`` only.

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
    plt = _pyplot()
    table = res.ranef()
    if group is not None:
        if group not in set(table["group"]):
            from hierlm.errors import MethodError

            raise MethodError(f"no grouping factor {group!r}; the model has "
                              f"{', '.join(dict.fromkeys(table['group']))}")
        table = table[table["group"] == group]
    panels = list(dict.fromkeys(zip(table["group"], table["term"], strict=True)))
    z = stats.norm.ppf(0.5 + level / 2)
    width = 3.2 * len(panels)
    height = max(3.0, min(len(table) / max(len(panels), 1), max_levels) * 0.16 + 1.0)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, height), squeeze=False)
    for ax, (g, term) in zip(axes[0], panels, strict=True):
        rows = table[(table["group"] == g) & (table["term"] == term)]
        if len(rows) > max_levels:
            rows = rows.loc[rows["value"].abs().nlargest(max_levels).index]
        rows = rows.sort_values("value")
        pos = np.arange(len(rows))
        ax.errorbar(rows["value"], pos, xerr=z * rows["cond_sd"], fmt="o", ms=3,
                    color="C0", ecolor="0.5", elinewidth=1)
        ax.axvline(0.0, color="0.3", lw=0.8, ls="--")
        ax.set_yticks(pos)
        ax.set_yticklabels([str(v) for v in rows["level"]], fontsize=7)
        ax.set_xlabel(f"{term} | {g}")
        ax.set_ylabel(f"{g} (level)")
    fig.suptitle(f"Conditional modes with {level:.0%} intervals")
    fig.tight_layout()
    return fig


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
    plt = _pyplot()
    vc = res.varcorr
    var = vc[vc["term2"].isna()].reset_index(drop=True)
    labels = [("Residual" if r.group == "Residual" else f"{r.term1} | {r.group}")
              for r in var.itertuples()]
    names = [("sigma" if r.group == "Residual" else f"sd_{r.term1}|{r.group.split('.')[0]}")
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


def profile_zeta(profile: pd.DataFrame, level: float = 0.95) -> Any:
    """lme4's profile plot: ``zeta`` against each parameter's value.

    Parameters
    ----------
    profile : pandas.DataFrame
        Long form with columns ``parameter``, ``value`` and ``zeta`` (``res.profile()``).
    level : float
        The horizontal lines ``zeta = +/- z_(1+level)/2``.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import hierlm.plots, pandas as pd, numpy as np
    >>> x = np.linspace(-2, 2, 9)
    >>> prof = pd.DataFrame({"parameter": "sigma", "value": 25 + x, "zeta": x})
    >>> hierlm.plots.profile_zeta(prof).axes[0].get_xlabel()
    'sigma'
    """
    plt = _pyplot()
    missing = {"parameter", "value", "zeta"} - set(profile.columns)
    if missing:
        from hierlm.errors import MethodError

        raise MethodError(f"profile table lacks column(s) {', '.join(sorted(missing))}")
    params = list(dict.fromkeys(profile["parameter"]))
    ncol = min(3, len(params))
    nrow = -(-len(params) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.8 * nrow), squeeze=False)
    z = stats.norm.ppf(0.5 + level / 2)
    for ax, name in zip(axes.flat, params, strict=False):
        rows = profile[profile["parameter"] == name].sort_values("value")
        ax.plot(rows["value"], rows["zeta"], "-", color="C0")
        for sign in (-1, 1):
            ax.axhline(sign * z, color="0.5", lw=0.8, ls="--")
        ax.axhline(0.0, color="0.7", lw=0.6)
        ax.set_xlabel(str(name))
        ax.set_ylabel("zeta")
    for ax in list(axes.flat)[len(params):]:
        ax.set_visible(False)
    fig.suptitle(f"Profile zeta; dashed lines at +/- {z:.2f} ({level:.0%} interval)")
    fig.tight_layout()
    return fig


def trajectories(res: Any, data: pd.DataFrame, x: str, group: str,
                 groups: list[Any] | None = None, max_groups: int = 12) -> Any:
    """The response of each group against ``x``, with the conditional fit as a line.

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

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import hierlm, hierlm.plots
    >>> df = hierlm.load_sleepstudy()
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", df)
    >>> fig = hierlm.plots.trajectories(res, df, x="Days", group="Subject")
    >>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()
    ('Days', 'Reaction')
    """
    plt = _pyplot()
    from hierlm.errors import DataError

    for col in (x, group):
        if col not in data.columns:
            raise DataError(f"column {col!r} not in data")
    fitted = res.fitted()
    if isinstance(fitted, pd.Series):
        frame = data.loc[fitted.index, [x, group]].assign(_fit=fitted.to_numpy())
    else:
        if len(data) != len(fitted):
            raise DataError(f"data has {len(data)} rows, the fit {len(fitted)}: pass the "
                            f"rows the model was fitted to")
        frame = data[[x, group]].assign(_fit=np.asarray(fitted))
    frame = frame.assign(_y=res.y)
    labels = list(dict.fromkeys(frame[group])) if groups is None else list(groups)
    labels = labels[:max_groups] if groups is None else labels
    ncol = min(4, len(labels))
    nrow = -(-len(labels) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.2 * nrow), squeeze=False,
                             sharex=True, sharey=True)
    response = res.formula.split("~")[0].strip()
    for ax, lab in zip(axes.flat, labels, strict=False):
        rows = frame[frame[group] == lab].sort_values(x)
        ax.plot(rows[x], rows["_y"], "o", ms=3, color="C0")
        ax.plot(rows[x], rows["_fit"], "-", color="C1")
        ax.set_title(f"{group} {lab}", fontsize=9)
        ax.set_xlabel(x)
        ax.set_ylabel(response)
    for ax in list(axes.flat)[len(labels):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


from hierlm.plot_emmeans import emmeans  # noqa: E402, F401
from hierlm.plot_emmeans import pairs as emmeans_pairs  # noqa: E402, F401
