"""Posterior draws of what prediction needs from a NUTS fit: beta, theta, sigma and b.

The draws are read from ``res.idata``: ``beta[coef]``, ``theta``, ``sigma`` from the
``posterior`` group, the random effects ``r_<group>`` from ``posterior`` or, when they
were drawn for a thinned subset, ``posterior_ranef`` (then every other variable is
thinned to the same draws).  A fit without random-effect draws
(``ranef_draws=False``) gets them here, one exact draw from
``b | y, beta, theta, sigma`` per posterior draw (:mod:`hierlm.estimate.conditional`);
a fit with ``residual=`` / ``sigma=`` needs them stored (each draw's whitened model is
not kept).  Such a fit's draws also hold the residual correlation (``ar1_phi``,
``car1_phi`` or ``cs_rho``) and the log SD ratios ``log_sd_ratio[sigma_term]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hierlm.covariance.names import posterior_name
from hierlm.objective.varcorr import group_labels


@dataclass(frozen=True, eq=False)
class PosteriorDraws:
    """Flattened draws: ``beta (D, p)``, ``theta (D, n_theta)``, ``sigma (D,)``, and
    ``b[k] (D, levels, p_k)`` per term."""

    beta: np.ndarray
    theta: np.ndarray
    sigma: np.ndarray
    b: list[np.ndarray]
    rho: np.ndarray | None = None
    log_sd_ratio: np.ndarray | None = None


def _flat(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return v.reshape(v.shape[0] * v.shape[1], *v.shape[2:])


def posterior_draws(res: Any, need_b: bool = True, seed: int | None = 0) -> PosteriorDraws:
    """The posterior draws of a NUTS result (see the module docstring)."""
    from hierlm.predict.terms import coder_of, fitted_objective

    coder = coder_of(res)
    tree = res.idata
    post = tree["posterior"].to_dataset()
    labels = group_labels(coder)  # type: ignore[arg-type]
    names = [posterior_name("ranef", lab) for lab in labels]
    source = post
    if need_b and names and names[0] not in post.data_vars and "posterior_ranef" in tree.children:
        source = tree["posterior_ranef"].to_dataset()
        post = post.sel(draw=source["draw"].values)
    p = len(coder.fixef_names)
    beta = _flat(post["beta"].values) if p else np.zeros((post.sizes["chain"] *
                                                          post.sizes["draw"], 0))
    theta = _flat(post["theta"].values)
    sigma = _flat(post["sigma"].values)
    rho = log_ratio = None
    residual = len(getattr(res, "residual_parameters", ())) > 0
    if residual:
        from hierlm.estimate.residual_posterior import CORRELATION

        for name in CORRELATION.values():
            if name in post.data_vars:
                rho = _flat(post[name].values)
        if "log_sd_ratio" in post.data_vars:
            log_ratio = _flat(post["log_sd_ratio"].transpose("chain", "draw", ...).values)
    b: list[np.ndarray] = []
    if need_b:
        if names and all(n in source.data_vars for n in names):
            b = []
            for n, t, lab in zip(names, coder.terms, labels, strict=True):
                da = source[n]
                dim = posterior_name("term", lab)
                if dim not in da.dims:  # a one-coefficient term is stored without
                    da = da.expand_dims(dim, axis=-1)
                b.append(_flat(da.transpose("chain", "draw", posterior_name("level", t.group),
                                            dim).values))
        elif residual:
            from hierlm.errors import MethodError

            raise MethodError("this NUTS fit with residual= / sigma= kept no random-effect "
                              "draws (ranef_draws=False); refit with ranef_draws=True or a "
                              "count to predict from it")
        else:
            from hierlm.estimate.conditional import ConditionalSampler

            cs = ConditionalSampler(fitted_objective(res))
            b = cs.sample_b(theta, beta, sigma, np.random.default_rng(seed))
    return PosteriorDraws(beta=beta, theta=theta, sigma=sigma, b=b, rho=rho,
                          log_sd_ratio=log_ratio)
