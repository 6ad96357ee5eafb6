"""Responses simulated from a fit with a residual structure, on its own rows.

``y* = o + X beta + sum_k Z_k b*_k + e*`` with ``b*_k ~ N(0, sigma^2 T_k T_k')`` per
level and ``e* = sigma S C^(1/2) z`` (:mod:`hierlm.objective.residual_gram`):

* AR(1) and CAR(1): along each group in time, ``e_1 = z_1`` and ``e_i = a_i e_prev +
  sqrt(1 - a_i^2) z_i`` with ``a_i = phi^gap_i`` (the Markov chain whose whitening is
  ``B``), one position within the groups at a time;
* compound symmetry: ``C^(1/2) z = sqrt(1 - rho) (z - mean_g z) + sqrt(1 + (k - 1) rho)
  mean_g z``.
"""

from __future__ import annotations

import numpy as np

from hierlm.covariance.layout import templates
from hierlm.design.residual_design import ResidualDesign
from hierlm.design.terms import ModelDesign
from hierlm.objective.residual_gram import relative_sd


def correlated_errors(rd: ResidualDesign, rho: float, z: np.ndarray) -> np.ndarray:
    """``C^(1/2) z`` for standard normal ``z`` of shape ``(n, nsim)`` (module docstring).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> rd = build_residual("ar1(Days | Subject)", None, d, des)
    >>> e = correlated_errors(rd, 0.5, np.random.default_rng(5).standard_normal((180, 200000)))
    >>> r = np.corrcoef(e[:3])
    >>> round(float(r[0, 1]), 1), round(float(r[0, 2]), 2)
    (0.5, 0.25)
    """
    spec = rd.spec
    if spec is None:
        return z.copy()
    if spec.kind == "cs":
        k = rd.group_sizes.astype(float)
        mean = np.stack([np.bincount(rd.group, weights=col, minlength=len(k)) for col in z.T],
                        axis=1) / k[:, None]
        m = mean[rd.group]
        lam = 1.0 + (k - 1.0) * rho
        return np.sqrt(1.0 - rho) * (z - m) + np.sqrt(lam)[rd.group][:, None] * m
    order = np.lexsort((rd.time, rd.group))
    start = np.r_[0, np.flatnonzero(np.diff(rd.group[order])) + 1]
    pos = np.empty(len(order), dtype=np.int64)
    pos[order] = np.arange(len(order)) - np.repeat(start, np.diff(np.r_[start, len(order)]))
    e = np.empty_like(z)
    first = pos == 0
    e[first] = z[first]
    for step in range(1, int(pos.max(initial=0)) + 1):
        rows = np.flatnonzero(pos == step)
        a = np.power(rho, rd.gap[rows])[:, None]
        e[rows] = a * e[rd.prev[rows]] + np.sqrt(1.0 - a * a) * z[rows]
    return e


def simulate_responses(design: ModelDesign, rd: ResidualDesign, beta: np.ndarray,
                       theta: np.ndarray, sigma: float, rho: float, delta: np.ndarray,
                       nsim: int, rng: np.random.Generator) -> np.ndarray:
    """``nsim`` responses ``(n, nsim)`` from the model at the given parameters.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> rd = build_residual("cs(1 | Subject)", None, d, des)
    >>> y = simulate_responses(des, rd, np.array([250.0, 10.0]), np.array([1.0]), 30.0, 0.2,
    ...                        np.zeros(0), 3, np.random.default_rng(1))
    >>> y.shape
    (180, 3)
    """
    mean = design.X @ beta
    if design.offset is not None:
        mean = mean + design.offset
    out = np.tile(mean[:, None], (1, nsim))
    for term, T in zip(design.terms, templates(design, theta), strict=True):
        b = sigma * np.einsum("ij,ljs->lis", T, rng.standard_normal((term.n_levels, term.p,
                                                                     nsim)))
        out += np.einsum("ij,ijs->is", term.X, b[term.codes])
    s = relative_sd(rd, delta, design.weights)
    z = rng.standard_normal((design.nobs, nsim))
    return out + sigma * s[:, None] * correlated_errors(rd, rho, z)
