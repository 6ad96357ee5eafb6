"""The blocked factor of ``Omega`` for two or more random-effects terms, without q x q.

Order the random effects as the first term's ``q_1 = l_1 p_1`` (``Lambda_1 = I (x) T``,
``Z_1'Z_1`` block diagonal with blocks ``A_k``) and the rest's ``q_r`` (``Lambda_r``).
With ``R = [Z_r X y]`` and ``B_k`` level ``k``'s rows of ``Z_1'R``, the factor of
``Omega = Lambda'Z'Z Lambda + I`` is blocked (a Schur complement onto the rest)::

    L_11 = diag_k(L_k),  L_k L_k' = T'A_k T + I,      L_21 = Omega_21 L_11^-T,
    L_22 L_22' = Lambda_r'Z_r'Z_r Lambda_r + I - L_21 L_21',

and ``Y = L^-1 Lambda'Z'[Z X y]`` has a block-diagonal first part ``Yd_k = L_k^-1 T'A_k``
beside ``YR_k = L_k^-1 T'B_k`` and a dense ``q_r``-row second part ``[Y_a Y_b] =
L_22^-1 (Lambda_r'Z_r'[Z_1 R] - L_21 Y_1)``.  So ``M = sigma^2 [Z X y]'V^-1 [Z X y]``
is, with ``G_k = A_k - Yd_k'Yd_k``::

    M_11 = diag_k(G_k) - Y_a'Y_a,     M_1R = Z_1'R - Yd'YR - Y_a'Y_b,
    M_RR = R'R - YR'YR - Y_b'Y_b.

``Z_1'Z_r`` is sparse (at most one entry per row of the data), and so are ``L_21`` and
``Xa = L_22 Y_a``: with ``Pm = (L_22 L_22')^-1``, ``Y_a'Y_a = Xa' Pm Xa`` and
``Y_a'Y_b = Xa' Pm L_22 Y_b``, so no ``q_1 x q_1`` (or ``q x q``) array is formed:
:class:`SchurBlocks` holds ``M_11 = diag_k(G_k) - U Pt U'`` (``U = [Xa', S']``,
``Pt = diag(Pm, I)``) by its parts, with the first term's diagonal blocks of
``U Pt U'`` for traces against block-diagonal matrices.  Used by
:mod:`hierlm.inference.varpar_schur` (Satterthwaite) and
:mod:`hierlm.inference.kr_schur` (Kenward-Roger).
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from hierlm.covariance.term_layout import TermLayout
from hierlm.inference.schur_blocks import (
    CrossBlock,
    SchurBlocks,
    apply_blocks,
    apply_e,
    block_diag,
    first_blocks,
)
from hierlm.objective.gram import GramBlocks

__all__ = ["CrossBlock", "SchurBlocks", "SchurFactor", "apply_blocks", "apply_e", "schur_factor"]

#: The last factor: (the Gram blocks, weakly; theta and p1; the factor).
_LAST: list[tuple[Any, tuple[bytes, int], SchurFactor]] = []
_block_diag = block_diag


def _fill_upper(a: np.ndarray) -> None:
    """Copy ``a``'s strict lower triangle onto its upper one, in place (no ``n x n``
    temporary)."""
    for i in range(a.shape[0] - 1):
        a[i, i + 1:] = a[i + 1:, i]


def _sub_sparse(a: np.ndarray, s: sp.spmatrix) -> None:
    """``a -= s`` for sparse ``s`` (``s``'s shape a leading block of ``a``'s), through
    flat indices of the contiguous ``a`` (no dense copy of ``s``)."""
    c = sp.csr_matrix(s)
    c.sum_duplicates()                                     # products are canonical already
    rows = np.repeat(np.arange(c.shape[0]), np.diff(c.indptr))
    if a.flags.c_contiguous:
        a.reshape(-1)[rows * a.shape[1] + c.indices] -= c.data
    elif a.flags.f_contiguous:
        a.T.reshape(-1)[c.indices * a.shape[0] + rows] -= c.data
    else:
        a[rows, c.indices] -= c.data


def _rest_lambda(gram: GramBlocks, theta: np.ndarray
                 ) -> tuple[sp.csr_matrix, list[tuple[int, sp.csr_matrix]]]:
    """``Lambda_r`` and, for each theta index of the rest, its 0/1 pattern."""
    qr = gram.q_rest
    keep = gram.lam_row < qr
    r, c, t = gram.lam_row[keep], gram.lam_col[keep], gram.lam_theta[keep]
    lam = sp.csr_matrix((theta[t], (r, c)), shape=(qr, qr))
    parts = []
    for i in np.unique(t):
        sel = t == i
        parts.append((int(i), sp.csr_matrix((np.ones(int(sel.sum())), (r[sel], c[sel])),
                                            shape=(qr, qr))))
    return lam, parts


@dataclass(frozen=True, eq=False)
class SchurFactor:
    """The blocked factor of ``Omega`` and ``M = sigma^2 [Z X y]'V^-1 [Z X y]`` by blocks.

    ``M_11 = diag_k(G_k) - Xa' Pm Xa`` (``Xa = L_22 Y_a`` sparse ``q_r x q_1``,
    ``Pm = (L_22 L_22')^-1``), ``M_1R`` (``q_1 x m``) and ``MRR`` (``m x m``) as in the
    module docstring; ``L11i`` the levels' ``L_k^-1`` and ``L21`` (sparse) for
    ``tr Omega^-1``.  ``M_1R = [C1 - Xa'Zb_r, M1X]`` is kept by its parts: ``C1``
    (sparse ``q_1 x q_r``, ``Z_1'Z_r - Yd'YR_r``), ``Zb = Omega~^-1 Xb`` (``q_r x m``) and
    its columns of ``X`` and ``y``, ``M1X`` (``q_1 x (m - q_r)``); :meth:`cross` gives
    the rest's columns as a :class:`hierlm.inference.schur_blocks.CrossBlock`.
    """

    T: np.ndarray
    G: np.ndarray
    Xa: sp.csr_matrix
    Pm: np.ndarray
    C1: sp.csc_matrix
    Zb: np.ndarray
    M1X: np.ndarray
    MRR: np.ndarray
    logdet_omega: float
    lam_r: sp.csr_matrix
    lam_rT: sp.csr_matrix
    parts_r: list[tuple[int, sp.csr_matrix]]
    L11i: np.ndarray
    L21: sp.csr_matrix

    def cross(self) -> CrossBlock:
        """``M_1r`` (``q_1 x q_r``) by its parts: ``C1 - Xa' Zb_r``."""
        return CrossBlock(self.C1, self.Xa, self.Zb[:, :self.C1.shape[1]])

    @functools.cached_property
    def H0(self) -> np.ndarray:
        """The diagonal blocks of ``Xa' Pm Xa`` (:func:`~hierlm.inference.schur_blocks.
        first_blocks`), shared by the tables."""
        return first_blocks(self.Xa, self.Pm, self.G.shape[0], self.G.shape[1])

    @functools.cached_property
    def M1R(self) -> np.ndarray:
        """``M_1R`` (``q_1 x m``) formed."""
        cross = self.cross()
        return np.hstack([cross.columns(slice(None)), self.M1X])

    def trace_omega_inv(self) -> float:
        """``tr Omega^-1 = |L^-1|_F^2``: ``|L_11^-1|^2 + tr(Pm X X') + tr Pm`` with
        ``X = L_21 L_11^-1`` (sparse)."""
        X = self.L21 @ _block_diag(self.L11i)
        return (float(np.sum(self.L11i ** 2)) + float((X @ X.T).multiply(self.Pm).sum())
                + float(np.trace(self.Pm)))


def schur_factor(gram: GramBlocks, theta: np.ndarray, p1: int) -> SchurFactor:
    """The blocked factor and ``M``'s blocks at ``theta`` (first term ``p1`` columns a level).

    The last one is kept (for the same Gram blocks, by identity, and theta): the
    Satterthwaite and Kenward-Roger tables of a fit share it.  Its arrays are read only.

    Examples
    --------
    >>> import hierlm, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> g, h = rng.integers(0, 20, 200), rng.integers(0, 6, 200)
    >>> data = pd.DataFrame({"y": rng.normal(size=200), "g": g.astype(str),
    ...                      "h": h.astype(str)})
    >>> res = hierlm.fit("y ~ 1 + (1 | g) + (1 | h)", data)
    >>> f = schur_factor(res.model.objective.gram, np.array([0.5, 0.3]), 1)
    >>> f.G.shape, f.Xa.shape, f.MRR.shape
    ((20, 1, 1), (6, 20), (8, 8))
    """
    theta = np.asarray(theta, dtype=float)
    key = (theta.tobytes(), p1)
    last = _LAST[0] if _LAST else None  # one read: another thread may replace it
    if last is not None and last[0]() is gram and last[1] == key:
        return last[2]
    f = _factor(gram, theta, p1)
    _LAST[:] = [(weakref.ref(gram), key, f)]
    return f


def _factor(gram: GramBlocks, theta: np.ndarray, p1: int) -> SchurFactor:
    qr, m = gram.q_rest, gram.m
    A = np.asarray(gram.A11, dtype=float)                  # (l1, p1, p1)
    l1 = A.shape[0]
    q1 = l1 * p1
    a, b = TermLayout(p1).template_index()
    g = len(a)
    T = np.zeros((p1, p1))
    T[a, b] = theta[:g]
    lam_r, parts_r = _rest_lambda(gram, theta)
    lam_rT = lam_r.T.tocsr()
    # Z_1'R from its nonzero (level, row) blocks: sparse in the rest's columns (Br),
    # dense in X and y (Bx)
    rz = gram.nz_row < qr
    Br = sp.csr_matrix((gram.nz_val[rz].ravel(), ((gram.nz_level[rz, None] * p1
                                                    + np.arange(p1)[None, :]).ravel(),
                                                   np.repeat(gram.nz_row[rz], p1))),
                       shape=(q1, qr))
    Bx = np.zeros((l1, p1, m - qr))
    Bx[gram.nz_level[~rz], :, gram.nz_row[~rz] - qr] = gram.nz_val[~rz]

    # the blocked factor of Omega and Y = L^-1 Lambda'Z'[Z X y], sparse where Z_1'Z_r is
    TA = np.einsum("ji,ljk->lik", T, A)                    # T'A_k
    L11 = np.linalg.cholesky(TA @ T + np.eye(p1))
    L11i = np.linalg.solve(L11, np.broadcast_to(np.eye(p1), L11.shape))
    Yd = L11i @ TA                                         # (l1, p1, p1)
    LT = L11i @ np.swapaxes(np.broadcast_to(T, L11.shape), 1, 2)  # L_k^-1 T'
    YRr = (_block_diag(LT) @ Br).tocsr()                   # YR's sparse rest columns
    YRx = (LT @ Bx).reshape(q1, m - qr)                    # ... and its X, y columns
    # L_21 = Omega_21 L_11^-T = Lambda_r'YR_r' and Xa = L_22 Y_a = Lambda_r'C1' with
    # C1 = Z_1'Z_r - Yd'YR_r (M_1R's sparse part), so with W = R'R - YR'YR (its rest
    # rows: YR'YR with the rest's columns sparse, O(nnz m) instead of O(q1 m^2)):
    # Omega~ = Lambda_r'W_rr Lambda_r + I = L22 L22', Xb = Lambda_r'W_r. = L22 Yb
    C1 = (Br - _block_diag(np.swapaxes(Yd, 1, 2)) @ YRr).tocsc()
    Xa = (lam_rT @ C1.T).tocsr()                           # (qr, q1)
    L21 = (lam_rT @ YRr.T).tocsr()
    MRR = np.array(gram.A_RR, dtype=float)                 # W, then M_RR = W - Yb'Yb
    _sub_sparse(MRR, YRr.T @ YRr)
    YRxr = np.asarray(YRr.T @ YRx)
    MRR[:qr, qr:] -= YRxr
    MRR[qr:, :qr] -= YRxr.T
    MRR[qr:, qr:] -= YRx.T @ YRx
    # Yb = L22^-1 Xb and Zb = L22^-T Yb in one (q_r, m) array: LAPACK and BLAS work in
    # place on the transposes (a C-order array is its transpose in Fortran order), U = L22'
    Xb = np.asarray(lam_rT @ MRR[:qr, :])                   # (qr, m)
    O22 = np.asarray(lam_rT @ Xb[:, :qr].T)                 # W_rr symmetric
    O22.flat[::qr + 1] += 1.0
    U, info = sla.lapack.dpotrf(O22.T, lower=0, clean=1, overwrite_a=1)
    if info:
        raise sla.LinAlgError(f"the rest's block of Omega is not positive definite ({info})")
    Yt = sla.blas.dtrsm(1.0, U, Xb.T, side=1, lower=0, overwrite_b=1)   # Yb' = Xb' U^-1
    # M_RR = W - Yb'Yb: one triangle (MRR.T in Fortran order), then mirrored
    c = sla.blas.dsyrk(-1.0, Yt, beta=1.0, c=MRR.T, lower=1, overwrite_c=1)
    if not np.shares_memory(c, MRR):                       # in place unless f2py copied
        MRR.T[...] = c
    _fill_upper(MRR.T)
    Zb = sla.blas.dtrsm(1.0, U, Yt, side=1, lower=0, trans_a=1, overwrite_b=1).T  # Omega~^-1 Xb
    Pm = sla.lapack.dpotri(U, lower=0)[0]                   # Omega~^-1 = (U'U)^-1, upper
    _fill_upper(Pm.T)
    logdet_omega = 2.0 * (float(np.log(np.diagonal(L11, axis1=1, axis2=2)).sum())
                          + float(np.log(np.diag(U)).sum()))
    G = A - np.swapaxes(Yd, 1, 2) @ Yd
    G = 0.5 * (G + np.swapaxes(G, 1, 2))
    # M_1R = Z_1'R - Yd'YR - Y_a'Y_b (Y_a'Y_b = Xa' Omega~^-1 Xb) by its parts: the
    # rest's columns C1 - Xa'Zb_r (C1 sparse), the columns of X and y formed
    M1X = (Bx - np.swapaxes(Yd, 1, 2) @ YRx.reshape(l1, p1, -1)).reshape(q1, -1)
    M1X -= np.asarray(Xa.T @ Zb[:, qr:])
    return SchurFactor(T=T, G=G, Xa=Xa, Pm=Pm, C1=C1, Zb=Zb, M1X=M1X, MRR=MRR,
                       logdet_omega=logdet_omega, lam_r=lam_r, lam_rT=lam_rT, parts_r=parts_r,
                       L11i=L11i, L21=L21)
