"""Brute-force dense reference computations for tests (never used by hierlm itself).

Builds Z and Lambda densely from a design and evaluates the Gaussian marginal
likelihood ``y ~ N(X beta, sigma^2 (I + Z Lambda Lambda' Z'))`` directly.
"""

from __future__ import annotations

import numpy as np

from hierlm.design.terms import ModelDesign


def dense_z(design: ModelDesign) -> np.ndarray:
    blocks = []
    for t in design.terms:
        Z = np.zeros((design.nobs, t.q))
        for j in range(t.p):
            Z[np.arange(design.nobs), t.codes * t.p + j] = t.X[:, j]
        blocks.append(Z)
    return np.hstack(blocks)


def dense_lambda(design: ModelDesign, theta: np.ndarray) -> np.ndarray:
    blocks = []
    k = 0
    for t in design.terms:
        T = np.zeros((t.p, t.p))
        for col in range(t.p):  # column-major lower triangle
            for row in range(col, t.p):
                T[row, col] = theta[k]
                k += 1
        blocks.append(np.kron(np.eye(t.n_levels), T))
    q = sum(b.shape[0] for b in blocks)
    out = np.zeros((q, q))
    o = 0
    for b in blocks:
        out[o:o + b.shape[0], o:o + b.shape[0]] = b
        o += b.shape[0]
    return out


def marginal_cov(design: ModelDesign, theta: np.ndarray) -> np.ndarray:
    """``V = I + Z Lambda Lambda' Z'`` (covariance of y divided by sigma^2)."""
    ZL = dense_z(design) @ dense_lambda(design, theta)
    return np.eye(design.nobs) + ZL @ ZL.T


def neg2_loglik(design: ModelDesign, theta: np.ndarray, beta: np.ndarray,
                sigma: float) -> float:
    """``-2 log N(y; X beta, sigma^2 V)``."""
    V = sigma**2 * marginal_cov(design, theta)
    r = design.y - design.X @ beta
    _, logdet = np.linalg.slogdet(V)
    return float(design.nobs * np.log(2 * np.pi) + logdet + r @ np.linalg.solve(V, r))


def profiled_criterion(design: ModelDesign, theta: np.ndarray, reml: bool) -> float:
    """lme4's deviance (ML) or REML criterion at theta, by dense GLS.

    ML: maximize ``-2 log N`` over beta (GLS) and sigma (``sigma^2 = r'V^-1 r / n``).
    REML: the restricted likelihood ``-2 [log N(y; X b, s^2 V) - 1/2 log|X'V^-1 X / s^2|
    + p/2 log(2 pi)]`` maximized over sigma, with ``s^2 = r'V^-1 r / (n - p)``.
    """
    V = marginal_cov(design, theta)
    X, y, n, p = design.X, design.y, design.nobs, design.p
    Vi_X = np.linalg.solve(V, X)
    beta = np.linalg.solve(X.T @ Vi_X, Vi_X.T @ y)
    r = y - X @ beta
    rss = float(r @ np.linalg.solve(V, r))
    sigma2 = rss / (n - p if reml else n)
    val = neg2_loglik(design, theta, beta, np.sqrt(sigma2))
    if reml:
        _, ld = np.linalg.slogdet(X.T @ Vi_X / sigma2)
        val += ld - p * np.log(2 * np.pi)
    return val


def profiled_criterion_qr(design: ModelDesign, theta: np.ndarray, reml: bool) -> float:
    """lme4's criterion at theta by a Householder QR of the augmented least-squares problem.

    ``min || [y; 0] - [X Z Lambda; 0 I] [beta; u] ||^2``: the residual is formed from the
    data, not from a Gram matrix, so ``r^2`` keeps its relative precision when the fit is
    nearly perfect (where :func:`profiled_criterion`'s solve with ``V`` does not).
    """
    X, y, n, p = design.X, design.y, design.nobs, design.p
    ZL = dense_z(design) @ dense_lambda(design, theta)
    q = ZL.shape[1]
    A = np.block([[ZL, X], [np.eye(q), np.zeros((q, p))]])
    b = np.concatenate([y, np.zeros(q)])
    Q, R = np.linalg.qr(A)
    res = b - A @ np.linalg.solve(R, Q.T @ b)
    r2 = float(res @ res)
    logd = 2 * np.log(np.abs(np.diag(R)))
    nr = n - p if reml else n
    return float(logd[:q].sum() + (logd[q:].sum() if reml else 0.0)
                 + nr * (1 + np.log(2 * np.pi * r2 / nr)))
