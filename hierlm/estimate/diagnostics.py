"""Convergence diagnostics of posterior draws, as ArviZ's ``summary`` reports them.

For every element of the named posterior variables (dims ``chain``, ``draw``, then the
variable's own), the draws ``x[chain, draw]`` give

- ``mean`` and ``sd`` (over all draws, ``ddof = 1``);
- ``r_hat``: rank-normalized split R-hat;
- ``ess_bulk``: effective sample size of the rank-normalized draws;
- ``ess_tail``: the smaller effective sample size of the indicators
  ``x <= q(a)`` and ``x <= q(1 - a)``, with ``a = (1 - ci_prob) / 2`` and
  ``ci_prob = rcParams["stats.ci_prob"]``.

The numbers are arviz-stats' own (its array functions, which ``az.summary`` calls
through xarray); calling them on one stacked array skips xarray's per-variable
bookkeeping, which took ~0.2 s of every sleepstudy fit.  Rows are labelled as
``az.summary`` labels them: ``name`` for a scalar, ``name[coord, ...]`` otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def diagnostics_table(posterior: Any, var_names: list[str]) -> pd.DataFrame:
    """Posterior mean, SD, r_hat, ess_bulk and ess_tail of the named variables.

    Parameters
    ----------
    posterior : xarray.Dataset or DataTree
        Draws with leading dims ``chain`` and ``draw`` (a DataTree's ``posterior``
        group is used).
    var_names : list of str
        Variables to summarize, in row order.

    Returns
    -------
    pandas.DataFrame
        Columns ``mean``, ``sd``, ``r_hat``, ``ess_bulk``, ``ess_tail``; one row per
        element, labelled like ``az.summary``'s rows.

    Examples
    --------
    >>> import arviz as az
    >>> dt = az.from_dict({"posterior": {"mu": np.random.default_rng(0).normal(size=(2, 50))}})
    >>> diagnostics_table(dt, ["mu"]).columns.tolist()
    ['mean', 'sd', 'r_hat', 'ess_bulk', 'ess_tail']
    """
    from arviz_base import rcParams
    from arviz_stats.base import array_stats

    ds = posterior["posterior"] if "posterior" in getattr(posterior, "children", {}) else posterior
    labels: list[str] = []
    columns: list[np.ndarray] = []
    for name in var_names:
        da = ds[name].transpose("chain", "draw", ...)
        values = np.asarray(da.values, dtype=float)
        n_chain, n_draw = values.shape[:2]
        columns.append(values.reshape(n_chain, n_draw, -1))
        extra = da.dims[2:]
        if not extra:
            labels.append(str(name))
            continue
        coords = [[str(c) for c in da[d].values] for d in extra]
        for index in np.ndindex(*values.shape[2:]):
            labels.append(f"{name}[{', '.join(coords[k][i] for k, i in enumerate(index))}]")
    draws = np.concatenate(columns, axis=2)  # (chain, draw, element)
    flat = draws.reshape(-1, draws.shape[2])
    kw = {"chain_axis": 0, "draw_axis": 1}
    table = {
        "mean": flat.mean(axis=0),
        "sd": flat.std(axis=0, ddof=1),
        "r_hat": array_stats.rhat(draws, **kw),
        "ess_bulk": array_stats.ess(draws, method="bulk", **kw),
        "ess_tail": array_stats.ess(draws, method="tail", prob=rcParams["stats.ci_prob"], **kw),
    }
    return pd.DataFrame({k: np.asarray(v, dtype=float) for k, v in table.items()},
                        index=pd.Index(labels))


def loo_summary(tree: Any) -> dict[str, Any] | None:
    """PSIS-LOO over the ``log_likelihood`` group (ArviZ), as plain numbers.

    ``elpd_loo`` and its ``se``, the effective number of parameters ``p_loo``, and the
    count of units whose Pareto ``k`` exceeds ArviZ's ``good_k`` (their LOO estimate is
    unreliable; refit without them, or use K-fold cross-validation).  None where the
    fit has no ``log_likelihood`` group.
    """
    if "log_likelihood" not in tree.children:
        return None
    import arviz as az

    loo = az.loo(tree)
    k = np.asarray(loo.pareto_k).ravel()
    unit = str(tree["log_likelihood"]["y"].dims[-1]).removesuffix("_level")
    return {"elpd_loo": float(loo.elpd), "se": float(loo.se), "p_loo": float(loo.p),
            "unit": unit, "n_units": int(k.size),
            "n_bad_k": int(np.sum(k > float(loo.good_k)))}
