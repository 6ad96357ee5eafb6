"""Numba kernel of :mod:`hierlm.estimate.cond_var`: the first term's blocks ``G_k'G_k``.

For each level ``k`` of the first term, ``G_k = L_Z^{-1} C_k`` where ``C_k`` (``q_Z x
p1``, sparse: the rows of the other terms' levels that share observations with level
``k``) is column block ``k`` of ``C = Lambda_R' A_R1 Lambda_1``, and ``L_Z^{-1}`` is
lower triangular, so column ``r`` of it is zero above row ``r``.  So::

    G_k[:, j] = sum_{e in column j of C_k} v_e * Linv[r_e:, r_e]     (rows >= r_e)
    H_k       = G_k' G_k                                              (p1 x p1)

costs ``q_Z`` multiply-adds per nonzero of ``C`` and needs one ``p1 x q_Z`` work array,
where forming ``G = L_Z^{-1} C`` whole needs ``q_Z x l1 p1`` doubles (8 GB for 1,000
hospitals x 500,000 patients) and ``q_Z^2 l1 p1`` operations.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def first_term_blocks(LinvT: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                      data: np.ndarray, l1: int, p1: int) -> np.ndarray:  # pragma: no cover
    """``H[k] = G_k' G_k`` for every level ``k`` (see the module docstring).

    ``LinvT`` is ``L_Z^{-1}`` transposed (C-contiguous: row ``r`` is column ``r`` of the
    inverse); ``indptr, indices, data`` are ``C`` in CSC form, ``q_Z x l1 p1``.

    Examples
    --------
    >>> Linv = np.array([[1.0, 0.0], [-0.5, 2.0]])
    >>> C = np.array([[1.0], [3.0]])
    >>> H = first_term_blocks(np.ascontiguousarray(Linv.T), np.array([0, 2]),
    ...                       np.array([0, 1]), C[:, 0].copy(), 1, 1)
    >>> float(H[0, 0, 0]) == float(((Linv @ C) ** 2).sum())
    True
    """
    qz = LinvT.shape[0]
    H = np.zeros((l1, p1, p1))
    g = np.zeros((p1, qz))
    for k in range(l1):
        lo = qz
        for j in range(p1):
            col = k * p1 + j
            for e in range(indptr[col], indptr[col + 1]):
                if indices[e] < lo:
                    lo = indices[e]
        if lo == qz:
            continue
        for j in range(p1):
            for i in range(lo, qz):
                g[j, i] = 0.0
            col = k * p1 + j
            for e in range(indptr[col], indptr[col + 1]):
                r = indices[e]
                v = data[e]
                for i in range(r, qz):
                    g[j, i] += LinvT[r, i] * v
        for a in range(p1):
            for b in range(a, p1):
                s = 0.0
                for i in range(lo, qz):
                    s += g[a, i] * g[b, i]
                H[k, a, b] = s
                H[k, b, a] = s
    return H
