"""The ``V^-k`` products of Kenward-Roger's quantities from one Cholesky factor.

With ``K = Z Lambda``, ``S = K'K``, ``V = sigma^2 (I + K K')``, ``C C' = S + I`` (lower)
and ``R = (S + I)^-1 = C^-T C^-1``, Woodbury gives ``V^-k = sigma^-2k (I - K T_k K')``
with (``R S = S R = I - R``)::

    T_1 = R,    T_2 = 2R - RSR = R + R^2,    T_3 = T_2 + R - RST_2 = R + R^2 + R^3.

So with ``W = C^-1 K'Z``, ``w = C^-1 K'X``, ``U = C^-T W`` (``= R K'Z``), ``u = C^-T w``
and ``v = C^-1 u``::

    Z'V^-1 Z = sigma^-2 (Z'Z - W'W),          Z'V^-1 X = sigma^-2 (Z'X - W'w),
    Z'V^-2 Z = sigma^-4 (Z'Z - W'W - U'U),    Z'V^-2 X = sigma^-4 (Z'X - W'w - U'u),
    X'V^-2 X = sigma^-4 (X'X - w'w - u'u),    X'V^-3 X = sigma^-6 (X'X - w'w - u'u - v'v),
    tr V^-2  = sigma^-4 (n - tr(T_2 S)) = sigma^-4 (n - q + tr R^2).

:func:`v_products` does this densely: a Cholesky factor, two triangular solves with
``q`` right-hand sides, two ``q x q`` Gram products and ``R`` for ``tr R^2``, about
``4 q^3`` flops.  :mod:`hierlm.inference.kenward_roger` formed ``R``, ``T_2`` and ``T_3``
and the products ``K'F T_k K'H`` explicitly, about ``18 q^3``: 13 s for ``q = 2000``
(one random intercept, ``n = 10,000``, ``p = 20``, load 6-10 on 2 cores).  With one
random-effects term every matrix above is block diagonal, one ``p_1 x p_1`` block per
level, and :func:`v_products_one_term` computes the blocks level by level (batched),
``O(l p_1^3)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla


@dataclass(frozen=True, eq=False)
class VProducts:
    """``F'V^-k H`` for ``F, H`` in ``{Z, X}`` and ``tr V^-2`` (module docstring)."""

    ZVZ: np.ndarray
    ZVX: np.ndarray
    ZV2Z: np.ndarray
    ZV2X: np.ndarray
    XV2X: np.ndarray
    XV3X: np.ndarray
    trV2: float


def v_products(ZZ: np.ndarray, ZX: np.ndarray, XX: np.ndarray, KZ: np.ndarray,
               KX: np.ndarray, S: np.ndarray, s2: float, nobs: int) -> VProducts:
    """The products from dense ``q x q`` blocks.

    ``KZ = Lambda'Z'Z``, ``KX = Lambda'Z'X``, ``S = Lambda'Z'Z Lambda``; ``s2`` is
    ``sigma^2``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> Z, X, lam = rng.normal(size=(30, 4)), rng.normal(size=(30, 2)), np.diag([1., .5, 2, 0])
    >>> K = Z @ lam
    >>> vp = v_products(Z.T @ Z, Z.T @ X, X.T @ X, K.T @ Z, K.T @ X, K.T @ K, 2.0, 30)
    >>> Vinv = np.linalg.inv(2.0 * (np.eye(30) + K @ K.T))
    >>> bool(np.allclose(vp.ZVX, Z.T @ Vinv @ X)), bool(np.isclose(vp.trV2, np.trace(Vinv @ Vinv)))
    (True, True)
    """
    q = S.shape[0]
    C = sla.cholesky(S + np.eye(q), lower=True)
    W = sla.solve_triangular(C, KZ, lower=True)
    w = sla.solve_triangular(C, KX, lower=True)
    U = sla.solve_triangular(C, W, lower=True, trans="T")
    u = sla.solve_triangular(C, w, lower=True, trans="T")
    v = sla.solve_triangular(C, u, lower=True)
    WW, Ww, ww, uu = W.T @ W, W.T @ w, w.T @ w, u.T @ u
    Rl = sla.lapack.dpotri(C, lower=1)[0]  # lower triangle of R = (S + I)^-1
    trR2 = 2.0 * float(np.sum(np.tril(Rl, -1) ** 2)) + float(np.sum(np.diag(Rl) ** 2))
    ZVZ = ZZ - WW
    return VProducts(ZVZ=ZVZ / s2, ZVX=(ZX - Ww) / s2, ZV2Z=(ZVZ - U.T @ U) / s2**2,
                     ZV2X=(ZX - Ww - U.T @ u) / s2**2, XV2X=(XX - ww - uu) / s2**2,
                     XV3X=(XX - ww - uu - v.T @ v) / s2**3,
                     trV2=(nobs - q + trR2) / s2**2)


def v_products_one_term(ZZ: np.ndarray, ZX: np.ndarray, XX: np.ndarray, T: np.ndarray,
                        s2: float, nobs: int) -> VProducts:
    """The products of a model with one random-effects term, level by level.

    ``ZZ`` is block diagonal (``p x p`` blocks, ``p = T.shape[0]``) and ``Lambda = I (x) T``;
    the ``q x q`` results come back dense with their diagonal blocks filled.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> g, X = rng.integers(0, 5, 40), rng.normal(size=(40, 2))
    >>> Z = np.zeros((40, 10)); Z[np.arange(40), 2 * g] = 1; Z[np.arange(40), 2 * g + 1] = X[:, 1]
    >>> T = np.array([[1.0, 0.0], [0.3, 0.5]])
    >>> lam = np.kron(np.eye(5), T)
    >>> K = Z @ lam
    >>> a = v_products_one_term(Z.T @ Z, Z.T @ X, X.T @ X, T, 1.5, 40)
    >>> b = v_products(Z.T @ Z, Z.T @ X, X.T @ X, K.T @ Z, K.T @ X, K.T @ K, 1.5, 40)
    >>> bool(np.allclose(a.ZV2Z, b.ZV2Z)), bool(np.allclose(a.XV3X, b.XV3X))
    (True, True)
    """
    p = T.shape[0]
    levels = ZZ.shape[0] // p
    idx = np.arange(levels)[:, None] * p + np.arange(p)[None, :]
    A = ZZ[idx[:, :, None], idx[:, None, :]]               # (l, p, p) blocks of Z'Z
    B = ZX[idx]                                            # (l, p, pX) rows of Z'X
    KA = np.einsum("ji,ljk->lik", T, A)                    # T' A_k
    KB = np.einsum("ji,ljk->lik", T, B)                    # T' B_k
    C = np.linalg.cholesky(KA @ T + np.eye(p))             # C_k C_k' = T'A_k T + I
    W = np.linalg.solve(C, KA)
    w = np.linalg.solve(C, KB)
    Ct = np.swapaxes(C, 1, 2)
    U = np.linalg.solve(Ct, W)
    u = np.linalg.solve(Ct, w)
    v = np.linalg.solve(C, u)
    Cinv = np.linalg.solve(C, np.broadcast_to(np.eye(p), C.shape))
    R = np.swapaxes(Cinv, 1, 2) @ Cinv
    Wt, Ut = np.swapaxes(W, 1, 2), np.swapaxes(U, 1, 2)
    WW, Ww, UU, Uu = Wt @ W, Wt @ w, Ut @ U, Ut @ u
    ww = np.einsum("lia,lib->ab", w, w)
    uu = np.einsum("lia,lib->ab", u, u)
    vv = np.einsum("lia,lib->ab", v, v)
    q = levels * p

    def dense(blocks: np.ndarray) -> np.ndarray:
        out = np.zeros((q, q))
        out[idx[:, :, None], idx[:, None, :]] = blocks
        return out

    ZVZ = A - WW
    return VProducts(ZVZ=dense(ZVZ / s2), ZVX=((B - Ww) / s2).reshape(q, -1),
                     ZV2Z=dense((ZVZ - UU) / s2**2),
                     ZV2X=((B - Ww - Uu) / s2**2).reshape(q, -1),
                     XV2X=(XX - ww - uu) / s2**2, XV3X=(XX - ww - uu - vv) / s2**3,
                     trV2=(nobs - q + float(np.sum(R * R))) / s2**2)
