"""Conditional variances of the random effects at theta-hat.

``Var(b | y) = sigma^2 Lambda (L_Z L_Z')^{-1} Lambda'``, kept as its diagonal blocks, one
per level of each term.  For the first term, whose per-level blocks ``M`` are factored
level by level (``L1``),
``(Omega_ZZ^{-1})_11 = M^{-1} + M^{-1} C' S_ZZ^{-1} C M^{-1}`` with
``C = Lambda_R' A_R1 Lambda_1`` restricted to the random-effect rows and ``S_ZZ`` the
Schur complement's random-effect block (factor ``L_Z``); for the other terms the blocks
of ``S_ZZ^{-1} = L_Z^{-T} L_Z^{-1}``, scaled by each term's template.

The blocks ``H_k = C_k' S_ZZ^{-1} C_k`` are ``G_k'G_k`` with ``G = L_Z^{-1} C``.  While
``G`` is small (at most :data:`DENSE_G_BYTES`) it is formed whole; beyond that, level
by level from the sparse ``C`` (:mod:`hierlm.objective.jit.first_term_blocks`), since
``G`` has ``q_Z x l1 p1`` entries: 8 GB for 1,000 hospitals and 500,000 patients, 6 GB
for 10,677 items and 69,878 users.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from hierlm.design.terms import ModelDesign
from hierlm.objective.gram import GramBlocks

#: Largest ``G = L_Z^{-1} C`` (bytes) formed whole; larger ones are done level by level.
DENSE_G_BYTES = 1 << 26


def conditional_variances(design: ModelDesign, gram: GramBlocks, Ts: list[np.ndarray],
                          L1: np.ndarray, L_Z: np.ndarray, lam_rest: Any,
                          sigma2: float) -> list[np.ndarray]:
    """``Var(b | y)`` of each level of each term: ``(levels, p_i, p_i)`` per term.

    ``L1`` is the factor of the first term's per-level blocks ``M``, ``L_Z`` the
    random-effect rows of the Schur factor, ``lam_rest`` the relative factor of the other
    terms and ``sigma2`` the residual variance.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.estimate.conditional import ConditionalSampler
    >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> res, obj = m.fit(), m.objective
    >>> L1, L_R = obj.evaluate(res.theta, True)[2:]
    >>> f = ConditionalSampler(obj).factor_from(res.theta, L1, L_R)
    >>> qr = obj.gram.q_rest
    >>> cv = conditional_variances(m.design, obj.gram, f.Ts, L1, L_R[:qr, :qr], f.lam_rest,
    ...                            res.sigma**2)
    >>> cv[0].shape, round(float(np.sqrt(cv[0][0, 0, 0])), 3)
    ((18, 2, 2), 12.071)
    """
    first = design.terms[0]
    p1, l1, qr = first.p, first.n_levels, gram.q_rest
    eye = np.broadcast_to(np.eye(p1), (l1, p1, p1))
    L1inv = np.linalg.solve(L1, eye)
    Minv = np.swapaxes(L1inv, 1, 2) @ L1inv
    out = []
    if qr:
        mask = gram.nz_row < qr
        rows = np.repeat(gram.nz_row[mask], p1)
        cols = (gram.nz_level[mask][:, None] * p1 + np.arange(p1)[None, :]).ravel()
        A = sp.csr_matrix((gram.nz_val[mask].ravel(), (rows, cols)), shape=(qr, l1 * p1))
        lam1 = sp.kron(sp.identity(l1), sp.csr_matrix(Ts[0]))
        C = (lam_rest.T @ A @ lam1).tocsc()
        Linv = sla.solve_triangular(L_Z, np.eye(qr), lower=True)  # S_ZZ^{-1} = Linv'Linv
        if qr * l1 * p1 * 8 <= DENSE_G_BYTES:
            G = sla.solve_triangular(L_Z, C.toarray(), lower=True)  # L_Z^{-1} C
            G3 = G.reshape(qr, l1, p1)
            H = np.einsum("ika,ikb->kab", G3, G3)
        else:
            from hierlm.objective.jit.first_term_blocks import first_term_blocks

            C.sort_indices()
            H = first_term_blocks(np.ascontiguousarray(Linv.T), C.indptr.astype(np.int64),
                                  C.indices.astype(np.int64), C.data.astype(np.float64),
                                  l1, p1)
        block1 = Minv + Minv @ H @ Minv
        off = 0
        rest = []
        for term, T in zip(design.terms[1:], Ts[1:], strict=True):
            cols3 = Linv[:, off:off + term.q].reshape(qr, term.n_levels, term.p)
            blk = np.einsum("ika,ikb->kab", cols3, cols3)
            rest.append(sigma2 * (T @ blk @ T.T))
            off += term.q
    else:
        block1 = Minv
        rest = []
    out.append(sigma2 * (Ts[0] @ block1 @ Ts[0].T))
    out.extend(rest)
    return out
