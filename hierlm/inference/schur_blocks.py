"""A symmetric ``q x q`` matrix kept by blocks: block diagonal minus low rank, then dense.

Order the random effects as the first term's ``q_1 = l_1 p_1`` (level-major: effect
``a`` of level ``l`` is row ``l p_1 + a``) and the rest's ``q_r``.  The matrix::

    M = [[diag_k(G_k) - U Pt U',  N  ],
         [N',                     Mrr]],     U = [Xa', S'],  Pt = diag(Pm, I),

(``Xa`` sparse ``q_r x q_1``, ``S`` dense ``p' x q_1``) is ``sigma^2 Z'V^-1 Z`` or
``sigma^2 Z'PZ`` of :mod:`hierlm.inference.schur_factor`; its first block is never
formed.  The traces against ``D_i = I (x) E_i`` (first term) and sparse symmetric
``D_j`` (the rest) that Satterthwaite's and Kenward-Roger's quantities need:

* ``tr(Pt U' diag_k(B_k) U) = sum_k tr(B_k H_k)`` with ``H_k`` the diagonal blocks of
  ``U Pt U'``: ``H_k = Xa_k' Pm Xa_k + S_k'S_k`` summed over the pairs of nonzeros of
  ``Xa``'s columns of level ``k`` (``sum_k nnz_k^2`` products; ``Xa' Pm`` whole,
  ``q_1 x q_r``, when that count is larger).
* ``<D_i N, N D_j> = sum_(c,b) D_j[c,b] sum_ab E_i[a,b] Q[a,b,(c,b)]`` with
  ``Q[a,b,(c,b')] = sum_l N[l,a,c] N[l,b,b']`` over ``D_j``'s nonzeros: one pass over
  ``N`` for the diagonal ones, a gather of the columns for the others; neither
  ``D_i N`` nor ``N D_j`` (each ``q_1 x q_r``) is formed.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

#: The most nonzero pairs the diagonal blocks ``H_k`` are summed over (else ``Xa'Pm``).
MAX_PAIRS = 4_000_000
#: Multiply-adds of ``Xa'Pm`` one pair of nonzeros costs as much as (NumPy's gathers and
#: ``bincount``; one BLAS thread: 71,000 pairs 2.1 ms against 4.0 million
#: multiply-adds 2.5 ms, 126,000 pairs 8 ms against 1.9 million 0.9 ms).
PAIR_COST = 32
#: Entries of ``N`` formed at a time by :meth:`CrossBlock.chunks` (64 MiB): larger
#: ``N`` go a few columns at a time, smaller ones are formed once (one array, no copies).
CHUNK_ENTRIES = 1 << 23


def block_diag(blocks: np.ndarray) -> sp.csr_matrix:
    """The sparse block-diagonal ``diag_k(blocks[k])``, ``blocks`` of shape ``(l, a, b)``.

    Examples
    --------
    >>> block_diag(np.ones((2, 1, 2))).toarray()
    array([[1., 1., 0., 0.],
           [0., 0., 1., 1.]])
    """
    l1, ra, cb = blocks.shape
    rows = np.arange(l1)[:, None, None] * ra + np.arange(ra)[None, :, None]
    cols = np.arange(l1)[:, None, None] * cb + np.arange(cb)[None, None, :]
    rows, cols = np.broadcast_to(rows, blocks.shape), np.broadcast_to(cols, blocks.shape)
    return sp.csr_matrix((blocks.ravel(), (rows.ravel(), cols.ravel())),
                         shape=(l1 * ra, l1 * cb))


def apply_blocks(G: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``diag_k(G_k) X`` for blocks ``G`` (``l1 x p1 x p1``) and ``X`` with ``l1 p1`` rows.

    Examples
    --------
    >>> apply_blocks(2.0 * np.ones((2, 1, 1)), np.arange(2.0))
    array([0., 2.])
    """
    l1, p1 = G.shape[0], G.shape[1]
    return np.einsum("lab,lb...->la...", G, X.reshape(l1, p1, *X.shape[1:])).reshape(X.shape)


def apply_e(E: np.ndarray, X: np.ndarray, l1: int, p1: int) -> np.ndarray:
    """``(I (x) E) X`` for ``X`` with ``l1 p1`` rows.

    Examples
    --------
    >>> apply_e(np.array([[0.0, 1.0], [1.0, 0.0]]), np.arange(4.0), 2, 2)
    array([1., 0., 3., 2.])
    """
    shape = X.shape
    return np.einsum("ab,lb...->la...", E, X.reshape(l1, p1, *shape[1:])).reshape(shape)


def _level_pairs(Xa: sp.csc_matrix, p1: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair ``(u, v)`` of nonzeros of ``Xa`` (CSC) in the same level's
    columns: the level's nonzeros are contiguous, ``sum_k nnz_k^2`` pairs."""
    level = np.repeat(np.arange(Xa.shape[1]) // p1, np.diff(Xa.indptr))
    count = np.bincount(level, minlength=Xa.shape[1] // p1)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    ku = count[level]
    u = np.repeat(np.arange(level.size), ku)
    v = np.arange(u.size) - np.repeat(np.cumsum(ku) - ku, ku) + start[level[u]]
    return u, v


def first_blocks(Xa: sp.spmatrix, Pm: np.ndarray, l1: int, p1: int) -> np.ndarray:
    """The diagonal ``p_1 x p_1`` blocks of ``Xa' Pm Xa`` (``l_1 x p_1 x p_1``).

    Summed over the pairs of nonzeros of each level's columns when that is cheaper
    (about :data:`PAIR_COST` multiply-adds a pair, measured) than ``Xa' Pm`` whole
    (``nnz(Xa) q_r`` multiply-adds and a ``q_1 x q_r`` array).

    Examples
    --------
    >>> Xa = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 1.0]]))
    >>> Pm = np.array([[2.0, 1.0], [1.0, 2.0]])
    >>> first_blocks(Xa, Pm, 3, 1).ravel()
    array([ 2., 18., 14.])
    """
    Xc = sp.csc_matrix(Xa)
    Xc.sum_duplicates()
    qr = Pm.shape[0]
    count = np.bincount(np.repeat(np.arange(Xc.shape[1]) // p1, np.diff(Xc.indptr)),
                        minlength=l1)
    pairs = int(np.sum(count.astype(np.int64) ** 2))
    if pairs <= MAX_PAIRS and pairs * PAIR_COST <= Xc.nnz * qr:
        # sum_(u,v) Xa[i_u, c_u] Pm[i_u, i_v] Xa[i_v, c_v] into H[l, a_u, a_v]
        u, v = _level_pairs(Xc, p1)
        rows, data = Xc.indices, Xc.data
        col = np.repeat(np.arange(Xc.shape[1]), np.diff(Xc.indptr))
        w = data[u] * data[v] * Pm[rows[u], rows[v]]
        cu = col[u]
        flat = cu if p1 == 1 else (cu // p1) * p1 * p1 + (cu % p1) * p1 + col[v] % p1
        return np.bincount(flat, weights=w, minlength=l1 * p1 * p1).reshape(l1, p1, p1)
    XaT = Xc.T.tocsr()
    W = np.asarray(XaT @ Pm)                               # (q1, qr)
    H = np.empty((l1, p1, p1))
    for a in range(p1):
        for b in range(p1):
            H[:, a, b] = np.asarray(XaT[a::p1].multiply(W[b::p1]).sum(axis=1)).ravel()
    return H


class CrossBlock:
    """The first-by-rest block ``N = C - Xa'Z - S'R`` (``q_1 x q_r``) kept by its parts.

    ``C`` sparse or dense ``q_1 x q_r``; ``Xa`` sparse ``k x q_1`` with ``Z`` dense
    ``k x q_r``; ``S`` dense ``p' x q_1`` with ``R`` dense ``p' x q_r`` (either pair may
    be left out).  Products with vectors go through the parts; :meth:`columns` forms a
    few columns at a time, so ``N`` itself (``q_1 x q_r``) never is.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> C, Xa = sp.random(6, 3, density=0.5, random_state=1), sp.random(2, 6, density=0.5)
    >>> Z, S, R = rng.normal(size=(2, 3)), rng.normal(size=(1, 6)), rng.normal(size=(1, 3))
    >>> N = CrossBlock(C, Xa, Z, S, R)
    >>> dense = C.toarray() - Xa.T @ Z - S.T @ R
    >>> bool(np.allclose(N.columns(np.array([2, 0])), dense[:, [2, 0]]))
    True
    >>> bool(np.allclose(N.matmul(np.ones(3)), dense @ np.ones(3)))
    True
    """

    def __init__(self, C: np.ndarray | sp.spmatrix, Xa: sp.spmatrix | None = None,
                 Z: np.ndarray | None = None, S: np.ndarray | None = None,
                 R: np.ndarray | None = None):
        self.C: sp.csc_matrix | np.ndarray = (sp.csc_matrix(C) if sp.issparse(C)
                                               else np.asarray(C))
        self.shape: tuple[int, int] = self.C.shape
        both = Xa is not None and Z is not None
        self.Xa: sp.spmatrix | None = Xa if both else None
        self.Z: np.ndarray | None = Z if both else None
        self.XaT: sp.spmatrix | None = Xa.T if both and Xa is not None else None
        low = S is not None and R is not None and S.size > 0
        self.S: np.ndarray | None = S if low else None
        self.R: np.ndarray | None = R if low else None

    def matmul(self, x: np.ndarray) -> np.ndarray:
        """``N x``."""
        y = np.asarray(self.C @ x)
        if self.XaT is not None and self.Z is not None:
            y = y - self.XaT @ (self.Z @ x)
        if self.S is not None and self.R is not None:
            y = y - self.S.T @ (self.R @ x)
        return y

    def rmatmul(self, x: np.ndarray) -> np.ndarray:
        """``N' x``."""
        y = np.asarray(self.C.T @ x)
        if self.Xa is not None and self.Z is not None:
            y = y - self.Z.T @ (self.Xa @ x)
        if self.S is not None and self.R is not None:
            y = y - self.R.T @ (self.S @ x)
        return y

    def columns(self, idx: np.ndarray | slice) -> np.ndarray:
        """``N[:, idx]``, dense (a new array)."""
        C = self.C[:, idx]
        if self.XaT is None or self.Z is None:
            out = (sp.csc_matrix(C).toarray(order="C") if sp.issparse(C)
                   else np.array(C, order="C"))
        else:
            out = np.asarray(self.XaT @ np.ascontiguousarray(self.Z[:, idx]))
            np.negative(out, out=out)
            if sp.issparse(C):                                # C's entries, no dense copy
                Cc = sp.csc_matrix(C)
                cols = np.repeat(np.arange(Cc.shape[1]), np.diff(Cc.indptr))
                out.reshape(-1)[Cc.indices * Cc.shape[1] + cols] += Cc.data
            else:
                out += C
        if self.S is not None and self.R is not None:         # out' -= R_idx' S, in place
            sla.blas.dgemm(-1.0, np.ascontiguousarray(self.R[:, idx]).T, self.S.T, beta=1.0,
                           c=out.T, trans_b=1, overwrite_c=1)
        return out

    def chunks(self, idx: np.ndarray) -> list[np.ndarray]:
        """``idx`` split so that each chunk's columns hold about :data:`CHUNK_ENTRIES`."""
        size = max(1, CHUNK_ENTRIES // max(self.shape[0], 1))
        return [idx[i:i + size] for i in range(0, idx.size, size)]


class SchurBlocks:
    """A symmetric ``q x q`` matrix ``[[diag(G) - U Pt U', N], [N', Mrr]]`` by its blocks.

    ``U = [Xa', S']`` (``Xa`` sparse ``q_r x q_1``, ``S`` dense ``p' x q_1``) and
    ``Pt = diag(Pm, I)``: the first term's block is never formed (module docstring);
    ``N`` an array or a :class:`CrossBlock`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> G = np.ones((3, 1, 1)) * 4.0
    >>> Xa = sp.csr_matrix(rng.normal(size=(2, 3)))
    >>> S, Pm = rng.normal(size=(1, 3)), np.eye(2)
    >>> M = SchurBlocks(G, Xa, S, Pm, rng.normal(size=(3, 2)), np.eye(2))
    >>> dense = np.diag(np.full(3, 4.0)) - Xa.T @ Xa - S.T @ S
    >>> bool(np.allclose(M.H[:, 0, 0], 4.0 - np.diag(dense)))
    True
    """

    def __init__(self, G: np.ndarray, Xa: sp.csr_matrix, S: np.ndarray, Pm: np.ndarray,
                 N: np.ndarray | CrossBlock, Mrr: np.ndarray, H0: np.ndarray | None = None):
        self.G, self.Xa, self.S, self.Pm, self.Mrr = G, Xa, S, Pm, Mrr
        self.N = N if isinstance(N, CrossBlock) else CrossBlock(N)
        self.XaT = Xa.T.tocsr()
        self.l1, self.p1 = G.shape[0], G.shape[1]
        self._H0 = H0

    @functools.cached_property
    def H(self) -> np.ndarray:
        """The diagonal blocks of ``U Pt U' = Xa' Pm Xa + S'S`` (``l_1 x p_1 x p_1``;
        ``Xa' Pm Xa``'s given as ``H0``, or :func:`first_blocks`)."""
        l1, p1 = self.l1, self.p1
        H0 = self._H0 if self._H0 is not None else first_blocks(self.Xa, self.Pm, l1, p1)
        S3 = self.S.reshape(-1, l1, p1)
        return H0 + np.einsum("rla,rlb->lab", S3, S3)

    def trace(self, blocks: np.ndarray) -> float:
        """``tr(Pt U' diag_k(blocks[k]) U)`` (one ``p_1 x p_1`` block for all levels, or
        ``l_1`` of them)."""
        if blocks.ndim == 2:
            return float(np.einsum("ab,lba->", blocks, self.H))
        return float(np.einsum("lab,lba->", blocks, self.H))

    def kmat(self, blocks: np.ndarray) -> np.ndarray:
        """``Pt U' diag_k(blocks[k]) U`` (``r x r``): its trace and products give the
        traces of ``D_i M_11`` and of ``D_i M_11 D_j M_11``."""
        D = block_diag(np.broadcast_to(blocks, self.G.shape) if blocks.ndim == 2 else blocks)
        DXa, DS = D @ self.XaT, D @ self.S.T
        qr, ps = self.Pm.shape[0], self.S.shape[0]
        K = np.zeros((qr + ps, qr + ps))
        top = (self.Xa @ DXa).tocoo()
        K[top.row, top.col] = top.data
        K[:qr, qr:] = self.Xa @ DS
        K[qr:, :qr] = np.asarray(DXa.T @ self.S.T).T
        K[qr:, qr:] = self.S @ DS
        K[:qr] = self.Pm @ K[:qr]
        return K

    def cross_traces(self, E: list[np.ndarray], D: list[sp.csr_matrix]) -> np.ndarray:
        """``<(I (x) E_i) N, N D_j>`` (``= tr(D_i M_1r D_j M_r1)``) for every pair.

        ``E``: the first term's ``p_1 x p_1`` symmetric blocks; ``D``: sparse symmetric
        ``q_r x q_r`` matrices of the rest.  Neither product with ``N`` is formed
        (module docstring).
        """
        out = np.zeros((len(E), len(D)))
        if not E or not D:
            return out
        l1, p1 = self.l1, self.p1
        pattern = abs(D[0])
        for Dj in D[1:]:
            pattern = pattern + abs(Dj)
        pattern = pattern.tocoo()
        rows, cols = pattern.row, pattern.col
        diag = rows == cols
        Ed = np.stack(E)                                          # (g, p1, p1)
        F = np.zeros((len(E), rows.size))                         # sum_ab E_i Q at (c, b)
        whole = self.N.shape[0] * self.N.shape[1] <= CHUNK_ENTRIES
        Nd = self.N.columns(slice(None)) if whole else None

        def cols_of(idx: np.ndarray) -> np.ndarray:
            return (Nd[:, idx] if Nd is not None else self.N.columns(idx)).reshape(
                l1, p1, idx.size)

        if diag.any():
            cd = np.unique(rows[diag])
            Q = np.zeros((p1, p1, self.N.shape[1]))
            if Nd is not None and cd.size == Nd.shape[1]:          # every column: no gather
                N3 = Nd.reshape(l1, p1, -1)
                Q[:] = np.einsum("lac,lbc->abc", N3, N3)
            else:
                for ch in self.N.chunks(cd):                      # N's columns c: blocks
                    N3 = cols_of(ch)
                    Q[:, :, ch] = np.einsum("lac,lbc->abc", N3, N3)
            F[:, diag] = np.einsum("iab,abc->ic", Ed, Q[:, :, rows[diag]])
        off = np.flatnonzero(~diag)
        for ch in self.N.chunks(off):                             # pairs (c, b), c != b
            Nc, Nb = cols_of(rows[ch]), cols_of(cols[ch])
            F[:, ch] = np.einsum("iab,lak,lbk->ik", Ed, Nc, Nb, optimize=True)
        for j, Dj in enumerate(D):
            out[:, j] = F @ np.asarray(Dj[rows, cols]).ravel()
        return out

    def matmat(self, x1: np.ndarray, xr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``M X`` for ``X = [x1; xr]`` (``q_1 x c`` and ``q_r x c``)."""
        low = self.XaT @ (self.Pm @ (self.Xa @ x1)) + self.S.T @ (self.S @ x1)
        y1 = apply_blocks(self.G, x1) - low + self.N.matmul(xr)
        return y1, self.N.rmatmul(x1) + self.Mrr @ xr

    def matvec(self, x1: np.ndarray, xr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``M x`` for ``x = (x1 (l1, p1), xr (q_r,))``."""
        v = x1.ravel()
        low = self.XaT @ (self.Pm @ (self.Xa @ v)) + self.S.T @ (self.S @ v)
        y1 = np.einsum("lab,lb->la", self.G, x1) - low.reshape(x1.shape) + (
            self.N.matmul(xr)).reshape(x1.shape)
        return y1, self.N.rmatmul(v) + self.Mrr @ xr
