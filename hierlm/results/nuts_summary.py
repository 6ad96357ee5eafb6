"""Posterior summaries of a NUTS fit, and the header and footer of its text summary.

Posterior variables are named by ``varcorr``'s group labels (see :func:`coords_of`).
The correlations of term ``i`` come from its sampled Cholesky factor, ``R_i = L_i L_i'``,
and its relative factor is ``T_i = diag(sd_i / sigma) L_i``.  Point estimates are
posterior medians of sigma, of each SD and of each correlation, so that
``Sigma_i = diag(sd) R diag(sd)`` and ``theta_i = chol(Sigma_i) / sigma``.

The summary header names the sampler and its settings and lists the priors; the
footer gives ArviZ's convergence diagnostics (r_hat, bulk and tail effective sample
sizes) for beta, sigma and the variance components, the number of divergent
transitions, what the point estimates are, and the log-likelihood note.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from hierlm.design.terms import ModelDesign
from hierlm.errors import warn
from hierlm.objective.theta import tril_colmajor
from hierlm.results.varcorr import group_labels

if TYPE_CHECKING:
    from hierlm.results.result import FitResult

RHAT_MAX = 1.01
ESS_MIN = 400


def corr_pairs(p: int) -> list[tuple[int, int]]:
    """Index pairs ``(j, k)``, ``j < k``, of a term's correlations in ``varcorr`` order.

    Examples
    --------
    >>> corr_pairs(3)
    [(0, 1), (0, 2), (1, 2)]
    """
    return [(j, k) for j in range(p) for k in range(j + 1, p)]


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
        coords[f"{label}_term"] = list(t.coef_names)
        coords[f"{t.group}_level"] = list(t.values)
        if t.p > 1:
            coords[f"{label}_pair"] = [f"{t.coef_names[j]}, {t.coef_names[k]}"
                                       for j, k in corr_pairs(t.p)]
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
        dim = f"{label}_term"
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
    for label, t in zip(labels, design.terms, strict=True):
        rel = post[f"sd_{label}"].values / sig[..., None]  # (chain, draw, p)
        if t.p == 1:
            parts.append(rel)
            continue
        L = post[f"chol_corr_{label}"].values  # (chain, draw, p, p)
        R = L @ np.swapaxes(L, -1, -2)
        jk = np.array(corr_pairs(t.p))
        dim = f"{label}_pair"
        out[f"corr_{label}"] = xr.DataArray(R[..., jk[:, 0], jk[:, 1]],
                                            dims=("chain", "draw", dim),
                                            coords={dim: coords[dim]})
        rows, cols = tril_colmajor(t.p)
        parts.append((rel[..., :, None] * L)[..., rows, cols])
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
    off = 0
    for label, t in zip(labels, design.terms, strict=True):
        sd = np.median(flat_draws(post[f"sd_{label}"]), axis=0)
        R = np.eye(t.p)
        if t.p > 1:
            med = np.median(flat_draws(post[f"corr_{label}"]), axis=0)
            for (j, k), r in zip(corr_pairs(t.p), med, strict=True):
                R[j, k] = R[k, j] = r
        S = sd[:, None] * R * sd[None, :]
        covs.append(S)
        rows, cols = tril_colmajor(t.p)
        try:
            parts.append((np.linalg.cholesky(S) / sigma)[rows, cols])
        except np.linalg.LinAlgError:  # medians of correlations not positive definite
            parts.append(np.median(theta[:, off:off + t.n_theta], axis=0))
        off += t.n_theta
    return sigma, covs, np.concatenate(parts)


def format_nuts_header(res: FitResult) -> list[str]:
    """First lines of a NUTS summary: method, sampler settings and priors.

    Parameters
    ----------
    res : FitResult
        A fit with ``method == "NUTS"``.

    Returns
    -------
    list of str

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> res = SimpleNamespace(extra={"sampler": "pymc", "chains": 4, "draws": 1000,
    ...                              "tune": 1000, "target_accept": 0.9,
    ...                              "prior_lines": ["sigma ~ HalfStudentT(nu=3, scale=56.17)"]})
    >>> print("\\n".join(format_nuts_header(res)))
    Bayesian linear mixed model fit by NUTS ['hierlm']
    Sampler: pymc, 4 chains x 1000 draws (1000 tuning), target_accept 0.9
    Priors:
      sigma ~ HalfStudentT(nu=3, scale=56.17)
    """
    x = res.extra
    lines = ["Bayesian linear mixed model fit by NUTS ['hierlm']",
             f"Sampler: {x.get('sampler', '?')}, {x.get('chains', '?')} chains x "
             f"{x.get('draws', '?')} draws ({x.get('tune', '?')} tuning), "
             f"target_accept {x.get('target_accept', '?')}",
             "Priors:"]
    lines += [f"  {p}" for p in x.get("prior_lines", [])]
    return lines


def diagnostic_messages(extra: dict[str, Any]) -> list[str]:
    """The convergence problems recorded in a NUTS fit's ``extra``, one line each.

    Examples
    --------
    >>> for line in diagnostic_messages({"divergences": 2, "max_rhat": 1.0, "min_ess_bulk": 350.0}):
    ...     print(line)
    2 divergent transitions after tuning (try target_accept=0.95 or tighter priors)
    smallest ess_bulk 350 < 400 (run more draws)
    """
    x = extra
    out = []
    if x.get("divergences", 0):
        out.append(f"{x['divergences']} divergent transitions after tuning (try "
                   "target_accept=0.95 or tighter priors)")
    rhat, ess = x.get("max_rhat", np.nan), x.get("min_ess_bulk", np.nan)
    if not rhat <= RHAT_MAX:
        out.append(f"largest r_hat {rhat:.3f} > {RHAT_MAX} (chains disagree; run more "
                   "tune and draws)")
    if not ess >= ESS_MIN:
        out.append(f"smallest ess_bulk {ess:.0f} < {ESS_MIN} (run more draws)")
    return out


def format_nuts_footer(res: FitResult) -> list[str]:
    """Last lines of a NUTS summary: diagnostics, divergences and notes.

    Warns (``UserWarning``) when some r_hat exceeds 1.01, some ess_bulk is below
    400, or there were divergent transitions.

    Parameters
    ----------
    res : FitResult
        A fit with ``method == "NUTS"``.

    Returns
    -------
    list of str

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> import pandas as pd
    >>> diag = pd.DataFrame({"mean": [25.6], "sd": [1.5], "r_hat": [1.0], "ess_bulk": [3900.0],
    ...                      "ess_tail": [2900.0]}, index=["sigma"])
    >>> res = SimpleNamespace(extra={"diagnostics": diag, "divergences": 0, "max_rhat": 1.0,
    ...                              "min_ess_bulk": 3900.0, "ranef_draws": 4000})
    >>> print("\\n".join(format_nuts_footer(res)[1:4]))
    Convergence diagnostics (ArviZ):
           mean   sd  r_hat ess_bulk ess_tail
    sigma  25.6  1.5  1.000     3900     2900
    Divergent transitions: 0
    """
    x = res.extra
    lines = ["", "Convergence diagnostics (ArviZ):"]
    diag = x.get("diagnostics")
    if isinstance(diag, pd.DataFrame) and len(diag):
        fmt = diag.copy()
        for col in ("ess_bulk", "ess_tail"):
            fmt[col] = fmt[col].map(lambda v: f"{v:.0f}")
        fmt["r_hat"] = fmt["r_hat"].map(lambda v: f"{v:.3f}")
        for col in ("mean", "sd"):
            fmt[col] = fmt[col].map(lambda v: f"{v:.4g}")
        lines.append(fmt.to_string())
    lines.append(f"Divergent transitions: {x.get('divergences', 0)}")
    lines.append("Point estimates: posterior mean of beta; posterior medians of sigma, "
                 "SDs and correlations; random effects: posterior mean and SD "
                 f"({x.get('ranef_draws', 0)} draws)")
    loo = x.get("loo")
    note = x.get("log_likelihood_note") or ""
    if loo:
        lines.append(f"Model comparison: PSIS-LOO leaving out one level of {loo['unit']!r} "
                     f"at a time ({loo['n_units']} levels): elpd_loo {loo['elpd_loo']:.2f} "
                     f"(SE {loo['se']:.2f}), p_loo {loo['p_loo']:.2f}; compare fits with "
                     f"arviz.compare")
        if loo["n_bad_k"]:
            lines.append(f"  {loo['n_bad_k']} of {loo['n_units']} levels have Pareto k above "
                         f"ArviZ's threshold: their LOO terms are unreliable (K-fold "
                         f"cross-validation by refitting without each fold is the check)")
    elif note:
        lines.append(f"Model comparison: {note}; compare models with hierlm.anova on REML/ML "
                     f"fits (likelihood-ratio tests, AIC/BIC), or by K-fold cross-validation "
                     f"(refit without each fold and score its held-out rows)")
    lines.append("logLik/AIC/BIC (res.loglik, res.aic, res.bic): frequentist quantities at "
                 "the posterior point estimates, not posterior model comparison")
    problems = diagnostic_messages(res.extra)
    if problems:
        msg = "NUTS diagnostics: " + "; ".join(problems)
        warn(msg, UserWarning)
    return lines
