"""The NumPy NUTS log density as first written (one NumPy call per quantity, the
priors on small arrays): the reference that the evaluation in
:mod:`hierlm.estimate.nuts_numpy_kernel` is checked against.  It was itself checked
against the compiled ``logp`` graph and finite differences (tests/estimate/test_nuts_numpy.py).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotrs

from hierlm.estimate.nuts_numpy import NumpyDensity

_LOG_2PI = math.log(2.0 * math.pi)


def reference_density(d: NumpyDensity, x: np.ndarray) -> tuple[float, np.ndarray]:
    """``(log p(x), d log p / dx)`` of ``d``'s model, ``(-inf, 0)`` where not finite."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _evaluate(d, np.asarray(x, dtype=float))


def _evaluate(d: NumpyDensity, x: np.ndarray) -> tuple[float, np.ndarray]:
    p, q, n = d.p, d.q, d.n
    grad = np.zeros(d.ndim)
    beta = x[:p]
    log_sigma = x[p]
    sigma = math.exp(log_sigma)
    # priors and log-Jacobians
    zb = (beta - d.beta_mu) / d.beta_sigma
    lp = d._beta_const - 0.5 * float(zb @ zb)
    grad[:p] = -zb / d.beta_sigma
    nu, s = d.sigma_nu, d.sigma_scale
    lp += (d._sigma_const - (nu + 1) / 2 * math.log1p(sigma * sigma / (nu * s * s))
           + log_sigma)
    grad[p] = 1.0 - (nu + 1) * sigma * sigma / (nu * s * s + sigma * sigma)
    theta = np.empty(d.n_theta)
    corr: list[np.ndarray | None] = []
    for t in d.terms:
        xs = x[t.sd]
        sd = np.exp(xs)
        u = sd / t.sd_scale
        uu = u * u
        lp += t.sd_const + float(xs.sum() - 0.5 * uu.sum())
        grad[t.sd] = 1.0 - uu
        if t.p > 1:
            L = d._corr(t, x[t.z])
            logd = np.log(np.diagonal(L))
            lp += t.lkj_const + float(t.lkj_w @ logd)
            T = (sd / sigma)[:, None] * L
            corr.append(L)
        else:
            T = (sd / sigma)[:, None]
            corr.append(None)
        theta[t.theta] = T[t.rows, t.cols]
    # the marginal deviance and its gradient in Lambda
    lam = np.zeros((q, q))
    lam.flat[d._lam_flat] = theta[d.lam_theta]
    c = np.empty(p + 1)
    c[:p] = d.offset - beta
    c[p] = 1.0
    A_lam = d.A_ZZ @ lam
    K = lam.T @ A_lam
    K.flat[::q + 1] += 1.0
    Lk, info = dpotrf(K, lower=1, clean=1)
    if info != 0:  # not positive definite (an overflow upstream)
        return -np.inf, np.zeros(d.ndim)
    Zc = d.A_ZR @ c
    b = lam.T @ Zc
    u = dpotrs(Lk, b, lower=1)[0]
    r2 = float(c @ d.A_RR @ c - b @ u)
    s2 = sigma * sigma
    logdet = 2.0 * float(np.log(np.diagonal(Lk)).sum())
    dev = logdet + n * (_LOG_2PI + 2.0 * log_sigma) + r2 / s2
    lp -= 0.5 * dev
    # K^-1 Lambda'A_ZZ = (A_ZZ Lambda K^-1)': Lambda's entries of the latter, transposed
    KiAl = dpotrs(Lk, A_lam.T, lower=1)[0]
    resid = Zc - A_lam @ u
    rr, cc = d.lam_rows, d.lam_cols
    G = 2.0 * KiAl.flat[d.lam_cols * q + d.lam_rows] - (2.0 / s2) * resid[rr] * u[cc]
    g_theta = np.bincount(d.lam_theta, G, minlength=d.n_theta)
    # d(-dev/2)/d beta: r^2 = c'Sc with S c = A_RR c - A_RZ Lambda u
    Sc = d.A_RR @ c - d.A_ZR.T @ (lam @ u)
    grad[:p] += Sc[:p] / s2
    # d(-dev/2)/d log sigma: directly, and through theta = T / sigma
    grad[p] += -0.5 * (2.0 * n - 2.0 * r2 / s2) + 0.5 * float(g_theta @ theta)
    for t, Lt in zip(d.terms, corr, strict=True):
        gt = -0.5 * g_theta[t.theta]
        th = theta[t.theta]
        grad[t.sd] += np.bincount(t.rows, gt * th, minlength=t.p)
        if Lt is None:
            continue
        sd = np.exp(x[t.sd])
        Lbar = np.zeros((t.p, t.p))
        Lbar[t.rows, t.cols] = gt * (sd / sigma)[t.rows]
        diag = np.diagonal(Lt)
        Lbar.flat[::t.p + 1] += t.lkj_w / diag
        dot = (Lbar * Lt).sum(axis=1) * diag * diag
        z = x[t.z]
        grad[t.z] = Lbar[t.fill_row, t.fill_col] * diag[t.fill_row] - z * dot[t.fill_row]
    if not np.isfinite(lp) or not np.all(np.isfinite(grad)):
        return -np.inf, np.zeros(d.ndim)
    return float(lp), grad
