"""Forest plot of several fits side by side, drawn by ArviZ (``arviz_plots.plot_forest``).

Each fit contributes a point and two intervals per parameter (``beta[coef]``,
``sigma``, ``sd_<group>``, ``corr_<group>``, the names of a NUTS ``posterior``):

* REML and ML fits: the estimate, and for ``beta`` the Wald intervals
  ``beta_hat +/- z_(1+p)/2 * se`` for ``p = ci_prob`` (thin) and ``p = 0.5`` (thick).
  Variance parameters have no Wald interval (their sampling distributions are skewed;
  ``res.confint()`` profiles them): they are drawn as points.
* NUTS fits: the posterior mean and the equal-tailed intervals, the
  ``(1 -/+ p)/2`` quantiles of the draws.
* A REML or ML fit given with its bootstrap, ``(res, res.bootstrap(...))``: the
  estimate and the percentile intervals, the same quantiles of the replicates (every
  parameter).

The intervals are computed here and handed to ArviZ through ``plot_forest``'s ``stats``
argument, so ArviZ draws them as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from hierlm.errors import MethodError
from hierlm.plots.common import pyplot

if TYPE_CHECKING:  # xarray loads with the first forest plot, not with hierlm.plots
    import xarray as xr

_SAMPLE = ("chain", "draw")


def _parameters(ds: xr.Dataset) -> list[str]:
    return [str(v) for v in ds.data_vars
            if v in ("beta", "sigma") or str(v).startswith(("sd_", "corr_"))]


def _bounds(lower: xr.Dataset, upper: xr.Dataset) -> xr.Dataset:
    import xarray as xr

    both = xr.concat([lower, upper], dim=xr.Variable("ci_bound", ["lower", "upper"]))
    return both.transpose(..., "ci_bound")


def _quantiles(draws: xr.Dataset, probs: tuple[float, float]) -> list[xr.Dataset]:
    intervals = []
    for p in probs:
        q = draws.quantile([(1 - p) / 2, (1 + p) / 2], dim=_SAMPLE)
        intervals.append(_bounds(q.isel(quantile=0, drop=True), q.isel(quantile=1, drop=True)))
    return intervals


def _summaries(fit: Any, probs: tuple[float, float]) -> tuple[xr.Dataset, list[xr.Dataset]]:
    """The point estimates and, per probability, the interval bounds of one fit."""
    import xarray as xr

    res, boot = fit if isinstance(fit, tuple) else (fit, None)
    if res.is_posterior:
        post = res.idata["posterior"].dataset
        post = post[_parameters(post)]
        return post.mean(_SAMPLE), _quantiles(post, probs)
    from hierlm.results.datatree import bootstrap_dataset, estimate_dataset

    est = estimate_dataset(res)
    point = est[_parameters(est)]
    if boot is not None:
        return point, _quantiles(bootstrap_dataset(res, boot.replicates)[list(point)], probs)
    intervals = []
    for p in probs:
        z = stats.norm.ppf(0.5 + p / 2)
        half = xr.full_like(point, np.nan)
        if "beta" in point:
            half["beta"] = z * est["beta_se"]
        intervals.append(_bounds(point - half, point + half))
    return point, intervals


def _kind(fit: Any) -> str:
    if isinstance(fit, tuple):
        return "bootstrap percentile"
    return "equal-tailed" if fit.is_posterior else "Wald, beta only"


def _named(results: Sequence[Any] | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(results, Mapping):
        return {str(k): v for k, v in results.items()}
    named: dict[str, Any] = {}
    for fit in results:
        base = f"{fit[0].method} bootstrap" if isinstance(fit, tuple) else str(fit.method)
        name, k = base, 2
        while name in named:
            name, k = f"{base} ({k})", k + 1
        named[name] = fit
    return named


def forest(results: Sequence[Any] | Mapping[str, Any], var_names: Sequence[str] | None = None,
           ci_prob: float = 0.95) -> Any:
    """Several fits' parameters side by side in one ArviZ forest plot.

    Parameters
    ----------
    results : list of FitResult, or dict of name to FitResult
        The fits (REML, ML or NUTS; see the module docstring for what each shows); a
        REML or ML fit may come as a pair ``(res, bootstrap)`` for percentile intervals.
        A list names them by method (``REML``, ``NUTS``; ``REML (2)`` for a second one,
        ``REML bootstrap`` for a pair).
    var_names : list of str, optional
        Parameters to show, among ``beta``, ``sigma``, ``sd_<group>``, ``corr_<group>``
        (default: ``beta`` and ``sigma``).
    ci_prob : float
        Coverage of the thin intervals (the thick ones cover 50%).

    Returns
    -------
    matplotlib.figure.Figure
        With a legend naming the fits.

    Examples
    --------
    >>> import hierlm, hierlm.plots
    >>> df = hierlm.load_sleepstudy()
    >>> reml = hierlm.fit("Reaction ~ Days + (Days | Subject)", df)
    >>> ml = hierlm.fit("Reaction ~ Days + (Days | Subject)", df, method="ml")
    >>> fig = hierlm.plots.forest([reml, ml])
    >>> [t.get_text() for t in fig.legends[0].get_texts()]
    ['REML', 'ML']
    """
    pyplot()
    import xarray as xr
    from arviz_plots import plot_forest

    named = _named(results)
    if not named:
        raise MethodError("forest needs at least one fit")
    if not 0 < ci_prob < 1:
        raise MethodError(f"ci_prob must be in (0, 1), got {ci_prob!r}")
    probs = (0.5, ci_prob) if ci_prob > 0.5 else (ci_prob / 2, ci_prob)
    parts = {name: _summaries(res, probs) for name, res in named.items()}
    common = [v for v in next(iter(parts.values()))[0].data_vars
              if all(v in point for point, _ in parts.values())]
    wanted = ["beta", "sigma"] if var_names is None else [str(v) for v in var_names]
    unknown = [v for v in wanted if v not in common]
    if var_names is not None and unknown:
        raise MethodError(f"no variable {unknown[0]!r} in every fit; they have "
                          f"{', '.join(str(v) for v in common)}")
    keep = [v for v in wanted if v in common]
    model = xr.Variable("model", list(parts))

    def stack(k: int | None) -> xr.Dataset:
        items = [point if k is None else ints[k] for point, ints in parts.values()]
        return xr.concat([d[keep] for d in items], dim=model, join="outer")

    point = stack(None)
    tree = xr.DataTree.from_dict({"estimate": point.expand_dims(chain=[0], draw=[0])})
    pc = plot_forest(tree, group="estimate", combined=True, ci_probs=probs,
                     stats={"trunk": stack(0), "twig": stack(1), "point_estimate": point},
                     backend="matplotlib")
    pc.add_legend("model")
    fig = pc.viz["figure"]
    fig = fig.item() if hasattr(fig, "item") else fig
    kinds = "; ".join(f"{name}: {_kind(fit)}" for name, fit in named.items())
    fig.suptitle(f"Thin: {ci_prob:.0%}, thick: {probs[0]:.0%} intervals ({kinds})", fontsize=9)
    return fig
