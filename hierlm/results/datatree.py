"""A fitted result as an ArviZ DataTree, with the layout of a NUTS fit's.

Groups:

``observed_data``
    ``y[obs]``, the response of the rows used (``obs`` holds the caller's row labels).
``constant_data``
    ``X[obs, coef]``, the fixed-effect model matrix; each predictor and grouping column
    of the formula as ``<column>[obs]`` (the data's values); ``weights[obs]`` and
    ``offset[obs]`` when the model has them.
``estimate`` (REML and ML fits)
    The point estimates with the names and dims of a NUTS ``posterior`` less
    ``chain`` and ``draw``: ``beta[coef]``, ``sigma``, ``sd_<group>[<group>_term]``
    (a scalar for one coefficient), ``corr_<group>[<group>_pair]``, and ``beta_se[coef]``,
    the Wald standard errors of beta; with a structured covariance also
    ``covariance_parameters[covariance_parameter]``, the structures' own parameters
    (``"subject: rho"``, ...).  ArviZ summarises draws, and a REML or ML fit
    has none, so ``az.summary(tree)`` finds no ``posterior``: draws of a REML fit come
    from its bootstrap (``az.summary(tree, group="bootstrap")``), and
    :func:`hierlm.plots.forest` draws these estimates with Wald intervals beside NUTS
    posteriors in one ArviZ forest plot.
``estimate`` and ``bootstrap`` of a fit with ``residual=`` / ``sigma=``
    Also its residual parameters, named by what they are (``ar1_phi``, ``car1_phi`` or
    ``cs_rho``; ``log_sd_ratio[sigma_term]``): :mod:`hierlm.results.residual_datatree`.
``bootstrap`` (when ``bootstrap`` is given)
    One draw per bootstrap replicate (``chain`` of length 1): ``beta[coef]``, ``sigma``,
    ``sd_<group>[<group>_term]`` (a scalar for one coefficient) and
    ``corr_<group>[<group>_pair]``, the names, dims and
    coordinates of a NUTS ``posterior``, so that one ArviZ plot can set both side by
    side, and ``objective``.

A NUTS result's ``idata`` is returned as it is (it already has these groups but the
bootstrap one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from hierlm.covariance.names import corr_pairs, pair_labels, parameter_name, posterior_name
from hierlm.covariance.parameters import parameter_names, sdcor_from_theta
from hierlm.errors import MethodError
from hierlm.objective.varcorr import group_labels
from hierlm.results.residual_datatree import residual_variables


def _obs(res: Any) -> Any:
    return np.asarray(res.row_labels) if res.row_labels is not None else np.arange(res.nobs)


def _constant_data(res: Any, obs: np.ndarray) -> xr.Dataset:
    coder = res.coder
    coords: dict[str, Any] = {"obs": obs, "coef": list(res.fixef.index)}
    data: dict[str, Any] = {}
    if coder is not None:
        data["X"] = (("obs", "coef"), coder.code(None).X)
        for c in coder.frame.columns:
            col = coder.frame[c]
            if isinstance(col.dtype, pd.CategoricalDtype):
                col = col.astype(col.cat.categories.dtype)
            data[str(c)] = (("obs",), np.asarray(col))
        if coder.weights is not None:
            data["weights"] = (("obs",), coder.weights)
        if coder.offset is not None:
            data["offset"] = (("obs",), coder.offset)
    return xr.Dataset(data, coords=coords)


def bootstrap_dataset(res: Any, replicates: pd.DataFrame) -> xr.Dataset:
    """The replicates table as a one-chain ``posterior``-like Dataset."""
    coder = res.coder
    if coder is None:
        raise MethodError("this result has no record of its terms; refit to add a bootstrap")
    fe = list(res.fixef.index)
    need = ["objective", *fe, *parameter_names(coder)]
    missing = [c for c in need if c not in replicates.columns]
    if missing:
        raise MethodError(f"bootstrap replicates lack column(s): {', '.join(missing)}")
    R = len(replicates)
    coords: dict[str, Any] = {"chain": [0], "draw": np.arange(R), "coef": fe}

    def col(name: str) -> np.ndarray:
        return replicates[name].to_numpy(dtype=np.float64)

    data: dict[str, Any] = {
        "objective": (("chain", "draw"), col("objective")[None]),
        "sigma": (("chain", "draw"), col("sigma")[None]),
    }
    if fe:
        data["beta"] = (("chain", "draw", "coef"),
                        np.column_stack([col(n) for n in fe])[None])
    for label, t in zip(group_labels(coder), coder.terms, strict=True):  # type: ignore[arg-type]
        sd = np.column_stack([col(parameter_name(t.group, n)) for n in t.coef_names])
        if t.p == 1:  # a scalar, as in a NUTS posterior
            data[posterior_name("sd", label)] = (("chain", "draw"), sd[None, :, 0])
            continue
        coords[posterior_name("term", label)] = list(t.coef_names)
        data[posterior_name("sd", label)] = (("chain", "draw", posterior_name("term", label)),
                                             sd[None])
        if t.p > 1:
            pairs = corr_pairs(t.p)
            coords[posterior_name("pair", label)] = pair_labels(t.coef_names)
            cor = np.column_stack([col(parameter_name(t.group, t.coef_names[k], t.coef_names[j]))
                                   for j, k in pairs])
            data[posterior_name("corr", label)] = (("chain", "draw", posterior_name("pair", label)),
                                                   cor[None])
    rnames = getattr(res, "residual_parameters", pd.Series(dtype=float)).index
    if len(rnames) and all(c in replicates.columns for c in rnames):
        rdata, rcoords = residual_variables(res, replicates, ("chain", "draw"))
        data.update(rdata)
        coords.update(rcoords)
    return xr.Dataset(data, coords=coords, attrs={"note": f"{R} bootstrap replicates"})


def estimate_dataset(res: Any) -> xr.Dataset:
    """A REML or ML fit's estimates laid out as one draw of a NUTS ``posterior``.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> est = estimate_dataset(res)
    >>> est["sd_Subject"].dims, round(float(est["sigma"]), 2)
    (('Subject_term',), 25.59)
    """
    coder = res.coder
    if coder is None:
        raise MethodError("this result has no record of its terms; refit to lay out its "
                          "estimates")
    values = sdcor_from_theta(coder, np.asarray(res.theta, dtype=np.float64), res.sigma)
    rpar = getattr(res, "residual_parameters", pd.Series(dtype=float))
    row = pd.DataFrame([[res.objective, *res.fixef, *values, *rpar]],
                       columns=["objective", *res.fixef.index, *parameter_names(coder),
                                *rpar.index])
    est = bootstrap_dataset(res, row).isel(chain=0, draw=0, drop=True).drop_vars("objective")
    if len(res.fixef):
        est["beta_se"] = (("coef",), res.fixef_se.to_numpy(dtype=np.float64))
    structures = {getattr(t, "structure", "us") for t in coder.terms}
    if res.covariance_parameters is not None and structures != {"us"}:
        # a structured covariance: its own parameters (sd, rho, ...) by name
        cp = res.covariance_parameters
        est["covariance_parameters"] = (("covariance_parameter",),
                                        cp.to_numpy(dtype=np.float64))
        est = est.assign_coords(covariance_parameter=list(cp.index))
    est.attrs = {"note": f"{res.method} estimates; beta_se: Wald standard errors"}
    return est


def to_datatree(res: Any, bootstrap: Any = None) -> xr.DataTree:
    """The result as a DataTree (see the module docstring).

    ``bootstrap`` is any object with a ``replicates`` DataFrame whose columns are
    ``objective``, the fixed-effect names and the names of
    :func:`hierlm.covariance.parameters.parameter_names`.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> to_datatree(res)["constant_data"]["X"].shape
    (180, 2)
    """
    if res.is_posterior:
        tree = res.idata.copy()
        if bootstrap is not None:
            tree["bootstrap"] = xr.DataTree(bootstrap_dataset(res, bootstrap.replicates))
        return tree
    obs = _obs(res)
    groups = {"observed_data": xr.Dataset({"y": (("obs",), np.asarray(res.y))},
                                          coords={"obs": obs}),
              "constant_data": _constant_data(res, obs)}
    if res.coder is not None:
        groups["estimate"] = estimate_dataset(res)
    if bootstrap is not None:
        groups["bootstrap"] = bootstrap_dataset(res, bootstrap.replicates)
    return xr.DataTree.from_dict(groups)
