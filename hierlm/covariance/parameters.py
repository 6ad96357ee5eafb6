"""The one map between theta, sigma and the reported SDs and correlations, and their names.

Term ``i`` has the covariance ``Sigma_i = sigma^2 T_i T_i'`` (``T_i`` its lower-triangular
template, see :mod:`hierlm.covariance.layout`).  Its *sd/cor* parameters are, in the
column-major lower-triangle order that packs theta, ``sd_j = sqrt((Sigma_i)_jj)`` on the
diagonal and ``cor_jk = (Sigma_i)_jk / (sd_j sd_k)`` below it, then ``sigma``.  The names
are lme4's ``confint(fit, oldNames = FALSE)``: ``sd_(Intercept)|Subject``,
``cor_Days.(Intercept)|Subject``, ``sd_Days|Subject``, ..., ``sigma``.

The inverse map takes ``Sigma_i / sigma^2 = D R D`` (``D = diag(sd) / sigma``, ``R`` the
correlation matrix) to its Cholesky factor, whose diagonal is non-negative as lme4's
bounds require; a zero SD gives a zero row and column of the template.  Every consumer
(``varcorr``, profiles, the bootstrap table, NUTS summaries) goes through this module,
so a parameter has one name everywhere.
"""

from __future__ import annotations

import numpy as np

from hierlm.covariance.layout import psd_cholesky, templates, tril_colmajor, tril_pairs
from hierlm.covariance.names import parameter_name
from hierlm.design.terms import ModelDesign


def parameter_names(design: ModelDesign) -> list[str]:
    """lme4's names of the sd/cor parameters of each term, then ``"sigma"``.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> parameter_names(d)
    ['sd_(Intercept)|Subject', 'cor_Days.(Intercept)|Subject', 'sd_Days|Subject', 'sigma']
    """
    names = []
    for term in design.terms:
        coef = term.coef_names
        for r, c in zip(*tril_pairs(term.p), strict=True):  # (Python ints, not NumPy's)
            if r == c:
                names.append(parameter_name(term.group, coef[r]))
            else:
                names.append(parameter_name(term.group, coef[r], coef[c]))
    return names + ["sigma"]


def sdcor_from_theta(design: ModelDesign, theta: np.ndarray, sigma: np.ndarray | float
                     ) -> np.ndarray:
    """SDs, correlations and sigma (in :func:`parameter_names` order) from theta and sigma.

    ``theta`` may have leading dimensions (draws, replicates): ``(..., n_theta)`` with
    ``sigma`` of shape ``(...)`` gives ``(..., n_theta + 1)``.  A correlation with a
    zero SD is NaN.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> sdcor_from_theta(d, np.array([1.0, 0.0, 0.5]), 2.0).tolist()
    [2.0, 0.0, 1.0, 2.0]
    """
    theta = np.asarray(theta, dtype=float)
    sigma = np.asarray(sigma, dtype=float)
    out = []
    for term, T in zip(design.terms, templates(design, theta), strict=True):
        S = T @ np.swapaxes(T, -1, -2)
        sd = np.sqrt(np.clip(np.diagonal(S, axis1=-2, axis2=-1), 0.0, None))
        rows, cols = tril_colmajor(term.p)
        for r, c in zip(rows, cols, strict=True):
            if r == c:
                out.append(sigma * sd[..., r])
            else:
                den = sd[..., r] * sd[..., c]
                with np.errstate(invalid="ignore", divide="ignore"):
                    out.append(np.where(den > 0, S[..., r, c] / np.where(den > 0, den, 1.0),
                                        np.nan))
    out.append(sigma * np.ones(theta.shape[:-1]))
    return np.stack(out, axis=-1)


def theta_from_sdcor(design: ModelDesign, sdcor: np.ndarray) -> tuple[np.ndarray, float]:
    """Inverse of :func:`sdcor_from_theta` for one parameter vector: ``(theta, sigma)``.

    Raises ValueError when a term's correlations do not form a positive semi-definite
    matrix, or ``sigma`` is not positive.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> th, s = theta_from_sdcor(d, np.array([2.0, 0.0, 1.0, 2.0]))
    >>> th.tolist(), s
    ([1.0, 0.0, 0.5], 2.0)
    """
    v = np.asarray(sdcor, dtype=float)
    if v.shape != (design.n_theta + 1,):
        raise ValueError(f"expected {design.n_theta + 1} sd/cor values, got shape {v.shape}")
    sigma = float(v[-1])
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    parts = []
    start = 0
    for term in design.terms:
        rows, cols = tril_colmajor(term.p)
        vals = v[start:start + term.n_theta]
        start += term.n_theta
        R = np.eye(term.p)
        sd = np.zeros(term.p)
        for r, c, x in zip(rows, cols, vals, strict=True):
            if r == c:
                sd[r] = x / sigma
            else:
                R[r, c] = R[c, r] = x
        if np.any(sd < 0):
            raise ValueError("standard deviations must be non-negative")
        S = sd[:, None] * R * sd[None, :]
        parts.append(psd_cholesky(S)[rows, cols])
    return np.concatenate(parts) if parts else np.zeros(0), sigma
