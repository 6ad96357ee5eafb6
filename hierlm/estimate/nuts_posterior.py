"""Posterior summaries of a NUTS fit: variable names, derived variables, point estimates.

Posterior variables are named by ``varcorr``'s group labels (see :func:`coords_of`).
The correlations of term ``i`` come from its sampled Cholesky factor, ``R_i = L_i L_i'``,
and its relative factor is ``T_i = diag(sd_i / sigma) L_i``.  Point estimates are
posterior medians of sigma, of each SD and of each correlation, so that
``Sigma_i = diag(sd) R diag(sd)`` and ``theta_i = chol(Sigma_i) / sigma``.
Convergence is flagged when some r_hat exceeds ``RHAT_MAX`` or some bulk effective
sample size is below ``ESS_MIN`` (:func:`diagnostic_messages`).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.names import corr_pairs, pair_labels, posterior_name
from hierlm.design.terms import ModelDesign
from hierlm.estimate.nuts_info import NutsInfo
from hierlm.estimate.nuts_structured import lag_coords, median_covariance, posterior_terms
from hierlm.objective.varcorr import group_labels

RHAT_MAX = 1.01
ESS_MIN = 400


def coords_of(design: ModelDesign) -> dict[str, list[str]]:
    """Named coordinates of the posterior variables (see :func:`sample`).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> coords_of(d)["Subject_pair"]
    ['(Intercept), Days']
    """
    coords: dict[str, list[str]] = {"coef": list(design.fixef_names)}
    for label, t in zip(group_labels(design), design.terms, strict=True):
        coords[posterior_name("term", label)] = list(t.coef_names)
        coords[posterior_name("level", t.group)] = list(t.values)
        if getattr(t, "structure", "us") in ("toep", "homtoep") and t.p > 1:
            coords[posterior_name("lag", label)] = lag_coords(t.p)
        if t.p > 1:
            coords[posterior_name("pair", label)] = pair_labels(t.coef_names)
    return coords


def display_layout(ds: xr.Dataset, design: ModelDesign) -> xr.Dataset:
    """The stored layout: a one-coefficient term's ``sd_<group>`` and ``r_<group>`` lose
    their length-1 ``<group>_term`` dimension.

    ArviZ draws one label column per distinct dimension, so with a dimension per term
    the columns of nested or crossed intercept-only terms overlap in a forest plot; a
    scalar ``sd_<group>`` (and ``r_<group>[<factor>_level]``) needs none.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (1 | Subject)", hierlm.load_sleepstudy())
    >>> ds = xr.Dataset({"sd_Subject": (("chain", "draw", "Subject_term"), np.ones((1, 2, 1)))},
    ...                 coords={"Subject_term": ["(Intercept)"]})
    >>> display_layout(ds, d)["sd_Subject"].dims
    ('chain', 'draw')
    """
    for label, t in zip(group_labels(design), design.terms, strict=True):
        dim = posterior_name("term", label)
        if t.p != 1 or dim not in ds.dims:
            continue
        ds = ds.squeeze(dim, drop=True)
    return ds


def flat_draws(da: xr.DataArray) -> np.ndarray:
    """Draws with chain and draw merged: shape ``(chains * draws, ...)``."""
    v = np.asarray(da.values, dtype=float)
    return v.reshape(v.shape[0] * v.shape[1], *v.shape[2:])


def derived_variables(design: ModelDesign, post: xr.Dataset) -> xr.Dataset:
    """Replace each correlation Cholesky factor ``chol_corr_<group>`` by the correlations
    ``corr_<group>``; add ``theta`` (``T_i = diag(sd_i / sigma) L_i``, lme4's packing)."""
    labels = group_labels(design)
    sig = post["sigma"].values
    out = post.drop_vars([v for v in post.data_vars if str(v).startswith("chol_corr_")])
    coords = coords_of(design)
    parts = []
    for label, t, cov in zip(labels, design.terms, DesignCovariance.of(design).terms,
                             strict=True):
        if cov.structure != "us":
            part, derived = posterior_terms(cov, label, post, sig)
            parts.append(part)
            for name, da in derived.items():
                out[name] = da
            continue
        rel = post[posterior_name("sd", label)].values / sig[..., None]  # (chain, draw, p)
        if t.p == 1:
            parts.append(rel)
            continue
        L = post[posterior_name("chol_corr", label)].values  # (chain, draw, p, p)
        R = L @ np.swapaxes(L, -1, -2)
        jk = np.array(corr_pairs(t.p))
        dim = posterior_name("pair", label)
        out[posterior_name("corr", label)] = xr.DataArray(R[..., jk[:, 0], jk[:, 1]],
                                                          dims=("chain", "draw", dim),
                                                          coords={dim: coords[dim]})
        parts.append(cov.pack(rel[..., :, None] * L))
    out["theta"] = (("chain", "draw", "theta_index"), np.concatenate(parts, axis=-1))
    out = out.assign_coords(theta_index=np.arange(design.n_theta))
    used = set().union(*(v.dims for v in out.data_vars.values()))
    return out.drop_vars([c for c in out.coords if c not in used])


def point_estimates(design: ModelDesign, post: xr.Dataset, theta: np.ndarray
                    ) -> tuple[float, list[np.ndarray], np.ndarray]:
    """Posterior-median sigma, covariances from the median SDs and correlations, and the
    theta of those medians (elementwise median of ``theta`` draws where the median
    correlations are not positive definite)."""
    labels = group_labels(design)
    sigma = float(post["sigma"].median())
    covs, parts = [], []
    dcov = DesignCovariance.of(design)
    for label, t, cov, draws in zip(labels, design.terms, dcov.terms, dcov.split_theta(theta),
                                    strict=True):
        sd = np.median(flat_draws(post[posterior_name("sd", label)]), axis=0)
        R = np.eye(t.p)
        if cov.structure != "us":
            S = median_covariance(cov, label, post)
        elif t.p > 1:
            med = np.median(flat_draws(post[posterior_name("corr", label)]), axis=0)
            for (j, k), r in zip(corr_pairs(t.p), med, strict=True):
                R[j, k] = R[k, j] = r
        if cov.structure == "us":
            S = sd[:, None] * R * sd[None, :]
        covs.append(S)
        try:
            parts.append(cov.pack(np.linalg.cholesky(S) / sigma))
        except np.linalg.LinAlgError:  # medians of correlations not positive definite
            parts.append(np.median(draws, axis=0))
    return sigma, covs, np.concatenate(parts)


def diagnostic_messages(info: NutsInfo) -> list[str]:
    """The convergence problems recorded in a NUTS fit's :class:`NutsInfo`, one line each.

    Examples
    --------
    >>> info = NutsInfo(sampler="pymc", draws=100, tune=100, chains=2, divergences=2,
    ...                 max_rhat=1.0, min_ess_bulk=350.0)
    >>> for line in diagnostic_messages(info):
    ...     print(line)
    2 divergent transitions after tuning (try target_accept=0.95 or tighter priors)
    smallest ess_bulk 350 < 400 (run more draws)
    """
    out = []
    if info.divergences:
        out.append(f"{info.divergences} divergent transitions after tuning (try "
                   "target_accept=0.95 or tighter priors)")
    rhat, ess = info.max_rhat, info.min_ess_bulk
    if not rhat <= RHAT_MAX:
        out.append(f"largest r_hat {rhat:.3f} > {RHAT_MAX} (chains disagree; run more "
                   "tune and draws)")
    if not ess >= ESS_MIN:
        out.append(f"smallest ess_bulk {ess:.0f} < {ESS_MIN} (run more draws)")
    return out
