"""``log p(y_g | beta, theta, sigma)`` for each level ``g`` of a factor that splits the data.

A factor splits the data into independent blocks when every term's levels nest in it
(:func:`split_factor`).  Then ``y_g ~ N(X_g beta, sigma^2 V_g)`` with::

    V_g = I + sum_i (X_i,g T_i)(X_i,g T_i)' * [same level of term i]

In general each ``V_g`` is factored densely, padded to a common size and batched over
draws.  When every term is grouped by the splitting factor itself (``(1 + x | g)``,
``(1 | g) + (0 + x | g)``), ``V_g = I + Z_g Lambda Lambda' Z_g'`` with
``Z_g = [X_1,g ... X_k,g]`` (``n_g x Q``), and the matrix determinant lemma and the
Woodbury identity reduce it to ``Q x Q`` (``M_g = I + Lambda' Z_g'Z_g Lambda``)::

    log|V_g|         = log|M_g|
    r_g' V_g^-1 r_g  = r_g'r_g - |L_g^-1 Lambda' Z_g' r_g|^2,   M_g = L_g L_g'

with ``r_g = y_g - X_g beta``, from per-group cross-products computed once.
"""

from __future__ import annotations

import numpy as np

from hierlm.covariance.layout import templates
from hierlm.design.terms import ModelDesign


def split_factor(design: ModelDesign) -> int | None:
    """Index of the term whose grouping factor splits the data into independent blocks.

    That is a term every other term's levels nest in (each level of every term lies
    in one level of it); the one with most levels is chosen.  ``None`` for crossed
    designs.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days || Subject)", hierlm.load_sleepstudy())
    >>> split_factor(d)
    0
    """
    best = None
    for c, cand in enumerate(design.terms):
        nested = True
        for t in design.terms:
            pairs = np.unique(np.stack([t.codes, cand.codes]), axis=1)
            if pairs.shape[1] != len(np.unique(t.codes)):
                nested = False
                break
        if nested and (best is None or cand.n_levels > design.terms[best].n_levels):
            best = c
    return best


def group_loglik(design: ModelDesign, split: int, theta: np.ndarray, beta: np.ndarray,
                 sigma: np.ndarray, max_block: int = 4_000_000) -> np.ndarray:
    """``log p(y_g | beta, theta, sigma)`` per draw and level ``g`` of term ``split``.

    Parameters
    ----------
    design : ModelDesign
        The model.
    split : int
        Index of the splitting term (see :func:`split_factor`).
    theta, beta, sigma : ndarray
        Draws, shapes ``(D, n_theta)``, ``(D, p)``, ``(D,)``.
    max_block : int
        Entries of the padded covariance batch computed at once (memory bound).

    Returns
    -------
    ndarray, shape (D, levels)
        Summed over levels it is the marginal log-likelihood of all of ``y``.
    """
    codes = design.terms[split].codes
    G = design.terms[split].n_levels
    if all(np.array_equal(t.codes, codes) for t in design.terms):
        return _one_factor_loglik(design, codes, G, theta, beta, sigma, max_block)
    counts = np.bincount(codes, minlength=G)
    nmax = int(counts.max())
    order = np.argsort(codes, kind="stable")
    pos = np.arange(design.nobs) - np.repeat(np.cumsum(counts) - counts, counts)
    idx = np.full((G, nmax), -1)
    idx[codes[order], pos] = order
    valid = idx >= 0
    safe = np.where(valid, idx, 0)
    yg = np.where(valid, design.y[safe], 0.0)
    Xg = np.where(valid[..., None], design.X[safe], 0.0)
    parts = []
    for t in design.terms:
        Xt = np.where(valid[..., None], t.X[safe], 0.0)
        same = (t.codes[safe][:, :, None] == t.codes[safe][:, None, :]) & valid[:, :, None]
        parts.append((Xt, same))
    eye = np.eye(nmax)
    pad = np.where(valid, 0.0, 1.0)[:, :, None] * eye  # identity on padded rows
    D = theta.shape[0]
    out = np.empty((D, G))
    step = max(1, max_block // max(1, G * nmax * nmax))
    for s in range(0, D, step):
        sl = slice(s, min(D, s + step))
        Ts = templates(design, theta[sl])  # per term, (d, p_i, p_i)
        V = np.broadcast_to(eye * valid[:, :, None] + pad, (Ts[0].shape[0], G, nmax, nmax)).copy()
        for (Xt, same), T in zip(parts, Ts, strict=True):
            A = Xt[None] @ T[:, None]  # (d, g, n, q)
            V += (A @ A.swapaxes(-1, -2)) * same
        L = np.linalg.cholesky(V)
        r = (yg[None] - (Xg[None] @ beta[sl][:, None, :, None])[..., 0]) * valid
        w = _solve_lower(L, r)
        logdet = 2.0 * np.log(np.diagonal(L, axis1=2, axis2=3)).sum(axis=2)
        sig2 = sigma[sl, None] ** 2
        out[sl] = -0.5 * (counts[None] * np.log(2 * np.pi * sig2) + logdet
                          + (w**2).sum(axis=2) / sig2)
    return out


def _solve_lower(L: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``L^{-1} r`` for batches of lower-triangular ``L`` (``(..., n, n)``, ``(..., n)``)."""
    return np.linalg.solve(L, r[..., None])[..., 0]


def _one_factor_loglik(design: ModelDesign, codes: np.ndarray, G: int, theta: np.ndarray,
                       beta: np.ndarray, sigma: np.ndarray, max_block: int) -> np.ndarray:
    """:func:`group_loglik` when every term is grouped by the same factor (``Q x Q``)."""
    Z = np.hstack([t.X for t in design.terms])  # (n, Q)
    X, y = design.X, design.y
    Q = Z.shape[1]

    def per_group(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """sum over the rows of each group of a_i b_i' (shapes (n, j), (n, k))."""
        out = np.zeros((G, a.shape[1], b.shape[1]))
        np.add.at(out, codes, a[:, :, None] * b[:, None, :])
        return out

    ZtZ, ZtX, Zty = per_group(Z, Z), per_group(Z, X), per_group(Z, y[:, None])[..., 0]
    XtX, Xty = per_group(X, X), per_group(X, y[:, None])[..., 0]
    yty = np.bincount(codes, weights=y * y, minlength=G)
    counts = np.bincount(codes, minlength=G)
    D = theta.shape[0]
    out = np.empty((D, G))
    step = max(1, max_block // max(1, G * Q * Q))
    for s in range(0, D, step):
        sl = slice(s, min(D, s + step))
        lam = np.zeros((sl.stop - sl.start, Q, Q))  # block-diagonal, term after term
        k = 0
        for T in templates(design, theta[sl]):
            lam[:, k:k + T.shape[-1], k:k + T.shape[-1]] = T
            k += T.shape[-1]
        lamT = lam.swapaxes(-1, -2)[:, None]  # (d, 1, Q, Q)
        L = np.linalg.cholesky(np.eye(Q) + lamT @ ZtZ[None] @ lam[:, None])
        b = beta[sl]
        Ztr = Zty[None] - (ZtX[None] @ b[:, None, :, None])[..., 0]  # (d, G, Q)
        w = _solve_lower(L, (lamT @ Ztr[..., None])[..., 0])
        rtr = (yty[None] - 2 * b @ Xty.T
               + (b[:, None, None, :] @ XtX[None] @ b[:, None, :, None])[..., 0, 0])
        logdet = 2.0 * np.log(np.diagonal(L, axis1=2, axis2=3)).sum(axis=2)
        sig2 = sigma[sl, None] ** 2
        out[sl] = -0.5 * (counts[None] * np.log(2 * np.pi * sig2) + logdet
                          + (rtr - (w**2).sum(axis=2)) / sig2)
    return out
