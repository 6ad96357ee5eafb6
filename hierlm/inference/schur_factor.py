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

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from hierlm.covariance.term_layout import TermLayout
from hierlm.objective.gram import GramBlocks

#: The last factor: (the Gram blocks, weakly; theta and p1; the factor).
_LAST: list[tuple[Any, tuple[bytes, int], SchurFactor]] = []


def _block_diag(blocks: np.ndarray) -> sp.csr_matrix:
    """The sparse block-diagonal ``diag_k(blocks[k])``, ``blocks`` of shape ``(l, a, b)``."""
    l1, ra, cb = blocks.shape
    rows = np.arange(l1)[:, None, None] * ra + np.arange(ra)[None, :, None]
    cols = np.arange(l1)[:, None, None] * cb + np.arange(cb)[None, None, :]
    rows, cols = np.broadcast_to(rows, blocks.shape), np.broadcast_to(cols, blocks.shape)
    return sp.csr_matrix((blocks.ravel(), (rows.ravel(), cols.ravel())),
                         shape=(l1 * ra, l1 * cb))


class SchurBlocks:
    """A symmetric ``q x q`` matrix ``[[diag(G) - U Pt U', N], [N', Mrr]]`` by its blocks.

    ``U = [Xa', S']`` (``Xa`` sparse ``q_r x q_1``, ``S`` dense ``p' x q_1``) and
    ``Pt = diag(Pm, I)``: the first term's block is never formed.
    """

    def __init__(self, G: np.ndarray, Xa: sp.csr_matrix, S: np.ndarray, Pm: np.ndarray,
                 N: np.ndarray, Mrr: np.ndarray):
        self.G, self.Xa, self.S, self.Pm, self.N, self.Mrr = G, Xa, S, Pm, N, Mrr
        self.XaT = Xa.T.tocsr()
        self.l1, self.p1 = G.shape[0], G.shape[1]
        # the diagonal blocks of U Pt U' = Xa' Pm Xa + S'S: tr(Pt U'BU) = sum_k tr(B_k H_k)
        # for block-diagonal B, O(nnz(Xa) q_r) instead of a q_r x q_r x r product
        W = np.asarray(self.XaT @ Pm)                      # (q1, qr)
        l1, p1 = self.l1, self.p1
        self.H = np.einsum("rla,rlb->lab", S.reshape(-1, l1, p1), S.reshape(-1, l1, p1))
        for a in range(p1):
            for b in range(p1):
                self.H[:, a, b] += np.asarray(
                    self.XaT[a::p1].multiply(W[b::p1]).sum(axis=1)).ravel()

    def trace(self, blocks: np.ndarray) -> float:
        """``tr(Pt U' diag_k(blocks[k]) U)`` (one ``p_1 x p_1`` block for all levels, or
        ``l_1`` of them)."""
        if blocks.ndim == 2:
            return float(np.einsum("ab,lba->", blocks, self.H))
        return float(np.einsum("lab,lba->", blocks, self.H))

    def kmat(self, blocks: np.ndarray) -> np.ndarray:
        """``Pt U' diag_k(blocks[k]) U`` (``r x r``): its trace and products give the
        traces of ``D_i M_11`` and of ``D_i M_11 D_j M_11``."""
        D = _block_diag(np.broadcast_to(blocks, self.G.shape) if blocks.ndim == 2 else blocks)
        DXa, DS = D @ self.XaT, D @ self.S.T
        top = np.hstack([(self.Xa @ DXa).toarray(), self.Xa @ DS])
        bottom = np.hstack([np.asarray(self.S @ DXa), self.S @ DS])
        K = np.vstack([top, bottom])
        qr = self.Pm.shape[0]
        K[:qr] = self.Pm @ K[:qr]
        return K

    def matmat(self, x1: np.ndarray, xr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``M X`` for ``X = [x1; xr]`` (``q_1 x c`` and ``q_r x c``)."""
        low = self.XaT @ (self.Pm @ (self.Xa @ x1)) + self.S.T @ (self.S @ x1)
        y1 = apply_blocks(self.G, x1) - low + self.N @ xr
        return y1, self.N.T @ x1 + self.Mrr @ xr

    def matvec(self, x1: np.ndarray, xr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``M x`` for ``x = (x1 (l1, p1), xr (q_r,))``."""
        v = x1.ravel()
        low = self.XaT @ (self.Pm @ (self.Xa @ v)) + self.S.T @ (self.S @ v)
        y1 = np.einsum("lab,lb->la", self.G, x1) - low.reshape(x1.shape) + (
            self.N @ xr).reshape(x1.shape)
        return y1, self.N.T @ v + self.Mrr @ xr


def apply_blocks(G: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``diag_k(G_k) X`` for blocks ``G`` (``l1 x p1 x p1``) and ``X`` with ``l1 p1`` rows."""
    l1, p1 = G.shape[0], G.shape[1]
    return np.einsum("lab,lb...->la...", G, X.reshape(l1, p1, *X.shape[1:])).reshape(X.shape)


def apply_e(E: np.ndarray, X: np.ndarray, l1: int, p1: int) -> np.ndarray:
    """``(I (x) E) X`` for ``X`` with ``l1 p1`` rows."""
    shape = X.shape
    return np.einsum("ab,lb...->la...", E, X.reshape(l1, p1, *shape[1:])).reshape(shape)


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
    ``Pm = (L_22 L_22')^-1``), ``M1R`` (``q_1 x m``) and ``MRR`` (``m x m``) as in the
    module docstring; ``L11i`` the levels' ``L_k^-1`` and ``L21`` (sparse) for
    ``tr Omega^-1``.
    """

    T: np.ndarray
    G: np.ndarray
    Xa: sp.csr_matrix
    Pm: np.ndarray
    M1R: np.ndarray
    MRR: np.ndarray
    logdet_omega: float
    lam_r: sp.csr_matrix
    lam_rT: sp.csr_matrix
    parts_r: list[tuple[int, sp.csr_matrix]]
    L11i: np.ndarray
    L21: sp.csr_matrix

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
    Ar1 = Br.T.tocsr()                                     # Z_r'Z_1, (qr, q1)
    YRr = (_block_diag(LT) @ Br).tocsr()                   # YR's sparse rest columns
    YRx = (LT @ Bx).reshape(q1, m - qr)                    # ... and its X, y columns
    O21 = lam_rT @ Ar1 @ _block_diag(np.broadcast_to(T, L11.shape))
    L21 = (O21 @ _block_diag(np.swapaxes(L11i, 1, 2))).tocsr()  # Omega_21 L_11^-T
    Xa = (lam_rT @ Ar1 - L21 @ _block_diag(Yd)).tocsr()   # L_22 Y_a, (qr, q1)
    Arr = gram.A_RR[:qr, :qr]
    O22 = np.asarray(lam_rT @ np.asarray(lam_rT @ Arr).T) + np.eye(qr)
    L22 = sla.cholesky(0.5 * (O22 + O22.T) - (L21 @ L21.T).toarray(), lower=True)
    Xb = np.asarray(lam_rT @ gram.A_RR[:qr, :]) - np.hstack(
        [(L21 @ YRr).toarray(), np.asarray(L21 @ YRx)])
    Yb = sla.solve_triangular(L22, Xb, lower=True)         # (qr, m)
    Zb = sla.solve_triangular(L22, Yb, lower=True, trans="T")  # Omega~^-1 Xb
    Pm = sla.lapack.dpotri(L22, lower=1)[0]                # Omega~^-1 = (L_22 L_22')^-1
    Pm = np.tril(Pm) + np.tril(Pm, -1).T
    logdet_omega = 2.0 * (float(np.log(np.diagonal(L11, axis1=1, axis2=2)).sum())
                          + float(np.log(np.diag(L22)).sum()))
    G = A - np.swapaxes(Yd, 1, 2) @ Yd
    G = 0.5 * (G + np.swapaxes(G, 1, 2))
    # M_1R = Z_1'R - Yd'YR - Y_a'Y_b (Y_a'Y_b = Xa' Omega~^-1 Xb), one q1 x m array
    M1R = -np.asarray(Xa.T @ Zb)
    M1R[:, qr:] += (Bx - np.swapaxes(Yd, 1, 2) @ YRx.reshape(l1, p1, -1)).reshape(q1, -1)
    sparse_r = (Br - _block_diag(np.swapaxes(Yd, 1, 2)) @ YRr).tocoo()
    M1R[sparse_r.row, sparse_r.col] += sparse_r.data
    # YR'YR with the rest's columns sparse: O(nnz m) instead of O(q1 m^2)
    YRxr = np.asarray(YRr.T @ YRx)
    YRtYR = np.block([[(YRr.T @ YRr).toarray(), YRxr], [YRxr.T, YRx.T @ YRx]])
    MRR = gram.A_RR - YRtYR - Yb.T @ Yb
    MRR = 0.5 * (MRR + MRR.T)
    return SchurFactor(T=T, G=G, Xa=Xa, Pm=Pm, M1R=M1R, MRR=MRR, logdet_omega=logdet_omega,
                       lam_r=lam_r, lam_rT=lam_rT, parts_r=parts_r, L11i=L11i, L21=L21)
