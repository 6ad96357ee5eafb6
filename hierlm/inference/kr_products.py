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
level, and :func:`level_products` computes the blocks level by level (batched),
``O(l p_1^3)``, from the levels' blocks of ``Z'Z`` and ``Z'X`` (:func:`level_gram`,
straight from the term's rows: no ``q x q`` array is ever allocated), and
:func:`one_term_pqk` pbkrtest's ``P``, ``Q`` and ``K`` from them instead of permuting
dense ``q x q`` matrices (its sums over levels are ``(l p_1)``-long matrix products).
:func:`v_products_one_term` is the same from dense ``Z'Z`` with dense results, for
checks.  ``coef_table(ddf="kenward-roger")``
right after a fit in a new process (``python -m benchmarks.post_fit --slopes``,
``n = 10,000``, ``p = 20``, load 5-9): ``(1 | g)`` with ``q = 1000`` 0.57 s -> 0.015 s,
``q = 2000`` 13.1 s -> 0.025 s; ``(1 + x1 | g)`` with ``q = 2000`` 0.80 s (dense
products from the factor, before the level-by-level ``P, Q, K``) -> 0.10 s.  The
dense ``q x q`` arrays that remained (``Z'Z`` and the filled ``Z'V^-k Z``; the first
touch of their pages is most of their cost in a new process) and numpy's einsum loop
for ``Q_rs`` went with :func:`level_gram`: ``q = 2000`` (load 5-7) ``(1 | g)``
0.47 s -> 0.026 s, ``(1 + x1 | g)`` 0.39 s -> 0.045 s; at load 9-10 0.019 s and
0.037 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from hierlm.covariance.term_layout import TermLayout


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
    #: With one term: the per-level blocks ``(Z'V^-1 Z, Z'V^-1 X, Z'V^-2 Z, Z'V^-2 X)``,
    #: shapes ``(l, p, p)``, ``(l, p, p_X)``, ``(l, p, p)``, ``(l, p, p_X)``.
    blocks: tuple[np.ndarray, ...] | None = None


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


@dataclass(frozen=True, eq=False)
class LevelProducts:
    """The products of a one-term model as per-level blocks (no ``q x q`` array).

    ``M``, ``B``, ``M2``, ``B2``: level ``k``'s blocks of ``Z'V^-1 Z``, ``Z'V^-1 X``,
    ``Z'V^-2 Z`` and ``Z'V^-2 X``, shapes ``(l, p, p)``, ``(l, p, p_X)``, ``(l, p, p)``,
    ``(l, p, p_X)``; ``XV2X``, ``XV3X`` and ``trV2`` as in :class:`VProducts`.
    """

    M: np.ndarray
    B: np.ndarray
    M2: np.ndarray
    B2: np.ndarray
    XV2X: np.ndarray
    XV3X: np.ndarray
    trV2: float


def level_gram(codes: np.ndarray, Xz: np.ndarray, X: np.ndarray, levels: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per-level blocks ``A_k`` of ``Z'Z`` and ``B_k`` of ``Z'X`` of one term.

    ``codes`` (length ``n``) is each row's level and ``Xz`` (``n x p``) the term's
    columns, so ``A_k = sum_{i in k} z_i z_i'`` and ``B_k = sum_{i in k} z_i x_i'``: one
    sparse ``l x n`` indicator product, ``O(n p (p + p_X))``.

    Examples
    --------
    >>> codes, Xz = np.array([0, 1, 0]), np.array([[1.0, 2.0], [1.0, 3.0], [1.0, 4.0]])
    >>> A, B = level_gram(codes, Xz, np.ones((3, 1)), 2)
    >>> A[0].tolist(), B[:, :, 0].tolist()
    ([[2.0, 6.0], [6.0, 20.0]], [[2.0, 6.0], [1.0, 3.0]])
    """
    n, p = Xz.shape
    G = sp.csr_matrix((np.ones(n), (np.asarray(codes, dtype=np.int64), np.arange(n))),
                      shape=(levels, n))
    A = np.asarray(G @ (Xz[:, :, None] * Xz[:, None, :]).reshape(n, p * p))
    B = np.asarray(G @ (Xz[:, :, None] * X[:, None, :]).reshape(n, -1))
    return A.reshape(levels, p, p), B.reshape(levels, p, X.shape[1])


def level_products(A: np.ndarray, B: np.ndarray, XX: np.ndarray, T: np.ndarray, s2: float,
                   nobs: int) -> LevelProducts:
    """The products of a model with one random-effects term, level by level.

    ``A`` (``l x p x p``) and ``B`` (``l x p x p_X``) are the levels' blocks of ``Z'Z``
    and ``Z'X`` (:func:`level_gram`), ``Lambda = I (x) T``; every array is ``O(l p^2)``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> g, X = rng.integers(0, 5, 40), rng.normal(size=(40, 2))
    >>> A, B = level_gram(g, np.column_stack([np.ones(40), X[:, 1]]), X, 5)
    >>> lp = level_products(A, B, X.T @ X, np.array([[1.0, 0.0], [0.3, 0.5]]), 1.5, 40)
    >>> lp.M.shape, lp.B2.shape, lp.XV3X.shape
    ((5, 2, 2), (5, 2, 2), (2, 2))
    """
    p = T.shape[0]
    q = A.shape[0] * p
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
    ZVZ = A - WW
    return LevelProducts(M=ZVZ / s2, B=(B - Ww) / s2, M2=(ZVZ - UU) / s2**2,
                         B2=(B - Ww - Uu) / s2**2, XV2X=(XX - ww - uu) / s2**2,
                         XV3X=(XX - ww - uu - vv) / s2**3,
                         trV2=(nobs - q + float(np.sum(R * R))) / s2**2)


def v_products_one_term(ZZ: np.ndarray, ZX: np.ndarray, XX: np.ndarray, T: np.ndarray,
                        s2: float, nobs: int) -> VProducts:
    """:func:`level_products` from dense ``Z'Z`` and ``Z'X``, with dense ``q x q`` results.

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
    lp = level_products(ZZ[idx[:, :, None], idx[:, None, :]], ZX[idx], XX, T, s2, nobs)
    q = levels * p

    def dense(blocks: np.ndarray) -> np.ndarray:
        out = np.zeros((q, q))
        out[idx[:, :, None], idx[:, None, :]] = blocks
        return out

    return VProducts(ZVZ=dense(lp.M), ZVX=lp.B.reshape(q, -1), ZV2Z=dense(lp.M2),
                     ZV2X=lp.B2.reshape(q, -1), XV2X=lp.XV2X, XV3X=lp.XV3X, trV2=lp.trV2,
                     blocks=(lp.M, lp.B, lp.M2, lp.B2))


def one_term_pqk(vp: VProducts | LevelProducts, p: int
                 ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """pbkrtest's ``P_r``, ``Q_rs`` and ``K_rs`` of a one-term model, level by level.

    The generators are ``G_r = Z (I (x) E_r) Z'`` with ``E_r = E_aa`` or ``E_ab + E_ba``
    (``r`` over the template's lower triangle by column), and ``sigma^2``'s ``I`` last;
    with ``Z'V^-1 Z`` block diagonal every trace and product is a sum over levels of
    ``p x p`` blocks (``vp`` from :func:`level_products` or :func:`v_products_one_term`)::

        P_r = -sum_k B_k' E_r B_k,        Q_rs = sum_k B_k' E_r M_k E_s B_k,
        K_rs = sum_k tr(E_r M_k E_s M_k), Q_r,sigma = sum_k B_k' E_r B2_k,
        K_r,sigma = sum_k tr(E_r M2_k),

    ``M_k``, ``B_k``, ``M2_k``, ``B2_k`` the level's blocks of ``Z'V^-1 Z``, ``Z'V^-1 X``,
    ``Z'V^-2 Z`` and ``Z'V^-2 X``.  Returns ``P`` (length ``k``), ``Q`` (``k x k`` of
    ``p_X x p_X``, object) and ``K``.
    """
    if isinstance(vp, LevelProducts):
        M, B, M2, B2 = vp.M, vp.B, vp.M2, vp.B2
    else:
        assert vp.blocks is not None
        M, B, M2, B2 = vp.blocks
    E = TermLayout(p).generators()  # the generators' order (kenward_roger._generators)
    g = len(E)
    # the sums over levels as (l p)-long matrix products (BLAS): numpy's einsum loop
    # took 43 ms for Q_rs at l = 1000, p = 2, p_X = 20, the products 4 ms
    lp, pX = B.shape[0] * B.shape[1], B.shape[2]
    Bf = B.reshape(lp, pX)
    EB = np.einsum("rab,lbc->rlac", E, B).reshape(g, lp, pX)     # E_r B_k
    P = list(-(Bf.T @ EB)) + [-vp.XV2X]
    A = np.einsum("rab,lbc,scd->rslad", E, M, E, optimize=True)  # E_r M_k E_s
    k = g + 1
    Q = np.empty((k, k), dtype=object)
    K = np.zeros((k, k))
    Qrs = Bf.T @ (A @ B).reshape(g, g, lp, pX)
    Krs = np.einsum("rslab,lba->rs", A, M)
    Qr2 = np.swapaxes(EB, 1, 2) @ B2.reshape(lp, pX)
    Kr2 = np.einsum("rab,lba->r", E, M2)
    for r in range(k):
        for s_ in range(r, k):
            if s_ < g:
                Q[r, s_], K[r, s_] = Qrs[r, s_], float(Krs[r, s_])
            elif r < g:
                Q[r, s_], K[r, s_] = Qr2[r], float(Kr2[r])
            else:
                Q[r, s_], K[r, s_] = vp.XV3X, vp.trV2
            K[s_, r] = K[r, s_]
            Q[s_, r] = Q[r, s_].T
    return P, Q, K
