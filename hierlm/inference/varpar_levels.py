"""The quantities of :mod:`hierlm.inference.varpar_dense` level by level, for one term.

With one random-effects term ``Lambda = I (x) T`` (``T`` the ``p_1 x p_1`` template,
lower triangular) and ``Z'Z`` is block diagonal, so ``Omega = Lambda'Z'Z Lambda + I``
is block diagonal with blocks ``Omega_k = T'A_k T + I = L_k L_k'`` (``A_k`` level
``k``'s block of ``Z'Z``, ``B_k`` its rows of ``Z'[X y]``).  With
``W_k = L_k^-1 T'A_k`` and ``w_k = L_k^-1 T'B_k`` the blocks of
``M = sigma^2 [Z X y]'V^-1 [Z X y]`` are::

    M_ZZ = diag_k(A_k - W_k'W_k) =: diag_k(G_k),    M_Zk,R = B_k - W_k'w_k,
    M_RR = [X y]'[X y] - sum_k w_k'w_k,

``log|Omega| = 2 sum_k log|L_k|``.  With ``L_X L_X' = M_XX``, ``F = L_X^-1 M_XZ``
(``F_k`` its ``p x p_1`` column block), ``N = L_X^-T F`` (``= M_XX^-1 M_XZ``) and
``D_i = I (x) E_i``, ``E_i = T_i T' + T T_i'`` (``T_i = dT/dtheta_i``)::

    sigma^2 Z'PZ = diag_k(G_k) - F'F,         sigma^2 Z'Py = (M_Zy)_k - F_k'L_X^-1 M_Xy,
    tr(D_i Z'QZ) = sum_k tr(E_i Q_k),         Q_k = G_k - REML F_k'F_k,
    tr(D_i Z'QZ D_j Z'QZ) = sum_k tr(E_i G_k E_j G_k)
                            - REML (2 sum_k tr(F_k E_i G_k E_j F_k') - tr(H_i H_j)),
    H_i = sum_k F_k E_i F_k',                 B'D_i B = sum_k N_k E_i N_k',

each a sum over levels of ``p_1 x p_1`` or ``p x p_1`` products: ``O(l k^2 p p_1^2)``
flops instead of :mod:`hierlm.inference.varpar_dense`'s ``O(q^3)`` and ``O(k q^2)``
memory.  The same idea as :mod:`hierlm.inference.kr_products` (one Cholesky factor per
level); the formulas of the deviance's derivatives are varpar_dense's.  Measured (one
BLAS thread, n = 10,000, p = 20, 2 busy cores, load 2-5): ``(1 | g)`` with ``q = 2000``
3-8 ms against the dense path's 0.22-0.31 s; ``(1 + x1 | g)`` ``q = 2000`` 5-7 ms
against 0.32-0.44 s, ``q = 10,000`` 30-40 ms.  The products with ``p`` in them are
BLAS contractions (``einsum(..., optimize=True)``): numpy's plain einsum loop took
0.16-0.24 s at ``q = 10,000``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sla

from hierlm.covariance.term_layout import TermLayout
from hierlm.objective.gram import GramBlocks


def level_blocks(gram: GramBlocks) -> tuple[np.ndarray, np.ndarray]:
    """Per-level blocks ``A_k`` of ``Z'Z`` and ``B_k`` of ``Z'[X y]`` of the first term.

    Returns ``(A (l, p_1, p_1), B (l, p_1, p + 1))``.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective.gram import compute_gram
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> [x.shape for x in level_blocks(compute_gram(d))]
    [(18, 2, 2), (18, 2, 3)]
    """
    l1, p1 = gram.A11.shape[0], gram.A11.shape[1]
    AR1 = np.zeros((gram.m, l1 * p1))
    rows = np.repeat(gram.nz_row, p1)
    cols = (gram.nz_level[:, None] * p1 + np.arange(p1)[None, :]).ravel()
    AR1[rows, cols] = gram.nz_val.ravel()
    return np.asarray(gram.A11, dtype=float), AR1.reshape(gram.m, l1, p1).transpose(1, 2, 0)


def one_term_varpar(design: Any, gram: GramBlocks, theta: np.ndarray, sigma: float,
                    reml: bool) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`hierlm.inference.varpar_dense.dense_varpar` for one random-effects term.

    Parameters
    ----------
    design : ModelDesign
        The model's design; it must have exactly one random-effects term.
    gram : GramBlocks
        The objective's Gram blocks.
    theta : ndarray
        Covariance parameters.
    sigma : float
        Residual standard deviation.
    reml : bool
        REML deviance (True) or ML deviance (False).

    Returns
    -------
    tuple
        ``(d, gradient (k,), hessian (k, k), C (p, p), jacobian (k, p, p))``.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> obj = res.model.objective
    >>> d, g, H, C, J = one_term_varpar(obj.design, obj.gram, res.theta, res.sigma, True)
    >>> round(d, 4), H.shape, J.shape
    (1743.6283, (4, 4), (4, 2, 2))
    """
    theta = np.asarray(theta, dtype=float)
    sigma = float(sigma)
    s2 = sigma * sigma
    n, p = float(gram.n), gram.p
    p1 = design.terms[0].p
    A, B = level_blocks(gram)
    l1 = A.shape[0]
    a, b = TermLayout(p1).template_index()
    g = len(a)
    T = np.zeros((p1, p1))
    T[a, b] = theta[:g]
    TA = np.einsum("ji,ljk->lik", T, A)                    # T'A_k
    TB = np.einsum("ji,ljk->lik", T, B)                    # T'B_k
    L = np.linalg.cholesky(TA @ T + np.eye(p1))
    W = np.linalg.solve(L, TA)
    w = np.linalg.solve(L, TB)
    Wt = np.swapaxes(W, 1, 2)
    G = A - Wt @ W                                         # blocks of sigma^2 Z'V^-1 Z
    G = 0.5 * (G + np.swapaxes(G, 1, 2))
    MZR = B - Wt @ w                                       # (l, p1, p + 1)
    MRR = gram.A_RR - np.einsum("lia,lib->ab", w, w)
    MRR = 0.5 * (MRR + MRR.T)
    logdet_omega = 2.0 * float(np.log(np.diagonal(L, axis1=1, axis2=2)).sum())
    if p:
        LX = sla.cholesky(MRR[:p, :p], lower=True)
        logdet_x = 2.0 * float(np.log(np.diag(LX)).sum())
        # L_X^-1 (p x p) once: solve_triangular with q right-hand sides copies them
        # into Fortran order, several times this product's cost.
        LXi = sla.solve_triangular(LX, np.eye(p), lower=True)
        F = np.einsum("pr,lar->lpa", LXi, MZR[:, :, :p], optimize=True)  # (l, p, p1)
        sy = LXi @ MRR[:p, p]
        N = np.einsum("rp,lra->lpa", LXi, F, optimize=True)  # L_X^-T F
        C = s2 * (LXi.T @ LXi)
        C = 0.5 * (C + C.T)
    else:
        logdet_x, sy = 0.0, np.zeros(0)
        F = N = np.zeros((l1, 0, p1))
        C = np.zeros((0, 0))
    wp = MZR[:, :, p] - np.einsum("lpa,p->la", F, sy, optimize=True)  # sigma^2 Z'Py
    yPy = (float(MRR[p, p]) - float(sy @ sy)) / s2
    Qd = G - np.swapaxes(F, 1, 2) @ F if reml else G      # diagonal blocks of sigma^2 Z'QZ
    d = (logdet_omega + (logdet_x if reml else 0.0) + (n - reml * p) * np.log(2 * np.pi * s2)
         + yPy)

    Ti = np.zeros((g, p1, p1))
    Ti[np.arange(g), a, b] = 1.0
    E = Ti @ T.T + T @ np.swapaxes(Ti, 1, 2)               # (g, p1, p1)
    Eij = np.einsum("iab,jcb->ijac", Ti, Ti)
    Eij = Eij + np.swapaxes(Eij, 0, 1)                     # T_i T_j' + T_j T_i'

    def zpz(x: np.ndarray) -> np.ndarray:                  # sigma^2 Z'PZ x, x (..., l, p1)
        Fx = np.einsum("lpb,...lb->...p", F, x, optimize=True)
        return (np.einsum("lab,...lb->...la", G, x)
                - np.einsum("lpa,...p->...la", F, Fx, optimize=True))

    Dw = np.einsum("iab,lb->ila", E, wp)
    wDw = np.einsum("la,ila->i", wp, Dw)
    EG = np.einsum("iab,lbc->ilac", E, G)                  # E_i G_k
    tr2 = np.einsum("ilac,jlca->ij", EG, EG)
    if reml and p:
        # optimize=True: BLAS contractions, 10-50x numpy's plain loop at p = 20
        FE = np.einsum("lpa,iab->ilpb", F, E, optimize=True)  # F_k E_i
        FEG = np.einsum("lpa,ilac->ilpc", F, EG, optimize=True)  # F_k E_i G_k
        Hm = np.einsum("ilpb,lqb->ipq", FE, F, optimize=True)  # sum_k F_k E_i F_k'
        tr2 = (tr2 - 2.0 * np.einsum("ilpc,jlpc->ij", FEG, FE)
               + np.einsum("ipq,jqp->ij", Hm, Hm))
    k = g + 1
    grad = np.zeros(k)
    H = np.zeros((k, k))
    J = np.zeros((k, p, p))
    grad[:g] = np.einsum("iab,lba->i", E, Qd) - wDw / s2
    H[:g, -1] = H[-1, :g] = 2.0 * wDw / (s2 * sigma)
    hw = 2.0 * np.einsum("ila,jla->ij", Dw, zpz(Dw)) / s2
    h_ij = (np.einsum("ijab,lba->ij", Eij, Qd)
            - np.einsum("la,ijab,lb->ij", wp, Eij, wp) / s2)
    Hg = -tr2 + hw + h_ij
    H[:g, :g] = 0.5 * (Hg + Hg.T)
    if p:
        Jg = s2 * np.einsum("lpa,iab,lqb->ipq", N, E, N, optimize=True)
        J[:g] = 0.5 * (Jg + np.swapaxes(Jg, 1, 2))
    n_eff = n - reml * p
    grad[-1] = 2.0 / sigma * (n_eff - yPy)
    H[-1, -1] = (6.0 * yPy - 2.0 * n_eff) / s2
    J[-1] = 2.0 * C / sigma
    return float(d), grad, H, C, J
