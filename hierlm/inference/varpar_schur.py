"""The quantities of :mod:`hierlm.inference.varpar_dense` for two or more terms, without q x q.

With the blocked factor of :mod:`hierlm.inference.schur_factor` (``M = sigma^2
[Z X y]'V^-1 [Z X y]`` by blocks), the REML ``P`` of
:mod:`hierlm.inference.varpar_dense` subtracts ``S'S``, ``S = L_X^-1 M_X.``.  The first
term's block of ``sigma^2 Z'QZ`` is then always ``diag_k(G_k) - U U'`` with
``U = [Y_a', S_1']`` (REML) or ``Y_a'`` (ML), ``q_1 x r``, ``r <= q_r + p``; it is never
formed.  With ``D_i = I (x) E_i`` for the first term's parameters
(``E_i = T_i T' + T T_i'``) and ``V_i = D_i U``::

    tr(D_i M_11)             = sum_k tr(E_i G_k) - <U, V_i>,
    tr(D_i M_11 D_j M_11)    = sum_k tr(E_i G_k E_j G_k) - 2 <V_i, G V_j>
                               + <U'V_i, U'V_j>,
    tr(D_i M_1r D_j M_r1)    = <D_i M_1r, M_1r D_j>      (i first, j rest),

the rest's products are dense ``q_r x q_r``, and every product with a vector uses
``M_11 x = G x - U (U'x)``.  ``M_1r = C1 - Xa'Zb_r - S_1'S_r`` (REML) is kept by its
parts (:class:`hierlm.inference.schur_blocks.CrossBlock`): products with vectors go
through them, and the last trace needs only ``sum_l M_1r[l,a,c] M_1r[l,b,c']`` at
``D_j``'s nonzeros (:meth:`hierlm.inference.schur_blocks.SchurBlocks.cross_traces`), so
``D_i M_1r`` and ``M_1r D_j`` are never formed and ``M_1r`` itself once.  The cost is
``O(q_1 p_1^2 m + q_1 r^2 + q_r^3)`` flops and ``O(q_1 q_r)`` memory, against the dense
path's ``O(q^3)`` and ``O(k q^2)``.  The formulas of the deviance's derivatives are
varpar_dense's.

Measured (n = 10,000, p = 20; CPU seconds of one call, one BLAS thread, against
:func:`hierlm.inference.varpar_dense.dense_varpar`'s ``q x q`` path): crossed
``(1 | g) + (1 | h)`` with 1,596 and 400 levels 0.71 s -> 0.08 s, nested
``(1 | g) + (1 | g:h)`` with 200 and 1,794 levels 0.55 s -> 0.026 s.
``python -m benchmarks.post_fit --slopes --two-terms``, ``summary()`` in a new process
at ``q = 2000`` (load 8-10 on 2 cores, both runs): crossed 1.90 s -> 0.25 s, nested
1.86 s -> 0.09 s; ``q = 1000``: 0.57 s -> 0.13 s and 0.26 s -> 0.065 s.  The crossed
model stays above 0.1 s under that load: its ``q_r = 400`` rest costs
``O(q_r^2 m)`` flops in five dense products (about 20 ms at this machine's 17 GFlop/s
per core), the rest is sparse bookkeeping.  InstEval (``y ~ 1 + service + (1 | s) +
(1 | d) + (1 | dept:service)``, 73,421 rows, ``q = 4128``, above
:data:`hierlm.inference.varpar_dense.DENSE_MAX_Q`): the second-order graph took 37 s,
this 1.75 s (0.83 CPU seconds, load 8), equal to it to 2e-15 (Hessian) and 2e-13
(Jacobian).

The crossed model at ``q = 2000`` (``(1 | g) + (1 | h)``, 1,596 and 400 levels), its
first ``summary()`` in a new process after the fit, as ``python -m benchmarks.post_fit
--slopes --two-terms`` times it (that model alone, old and new code in turn in new
processes, 6 each, load 4-5): 0.204 s median (0.144 s fastest) -> 0.102 s (0.089 s);
at load 1.6-1.9, 4 each: 0.118 s (0.088 s) -> 0.059 s (0.056 s).  CPU seconds of
``summary()`` in 5 new processes each (load 4-5): 0.12-0.18 s -> 0.058-0.086 s.  Where
the old time went (cProfile, line profiles, ``python -X importtime``, page-fault counts
and ``gc.callbacks`` in the new process): a middle-generation pass of the garbage
collector over the ~100,000 objects the fit had left (Numba's import; 35-80 ms, now
in the fit's own young pass, :func:`hierlm.heap.gc_paused`); 16,000-20,000 pages of
new memory faulted in for the ``q_1 x m`` and ``q_r x m`` temporaries (about 2.5
microseconds each on this machine; now 4,300-5,400: ``M_1r`` and ``D_i M_1r`` not
formed as above, the rest's factor and solves in place in
:mod:`hierlm.inference.schur_factor`, temporaries kept in the heap where the fit has
set glibc's thresholds, :func:`hierlm.heap.large_temporaries_reused`); the factor
itself (22 -> 14 ms CPU, a warm call, one BLAS thread; this function 38 -> 28.5 ms).
The imports on the first table (``hierlm.inference.anova`` and what it loads) cost
about 8 ms and were kept.  The numbers equal the old path's to 7e-14 (df and SEs of
the tables, Hessian, Jacobian).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sla

from hierlm.covariance.term_layout import TermLayout
from hierlm.inference.schur_blocks import CrossBlock, SchurBlocks
from hierlm.inference.schur_factor import schur_factor
from hierlm.objective.gram import GramBlocks


def schur_varpar(design: Any, gram: GramBlocks, theta: np.ndarray, sigma: float, reml: bool
                 ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`hierlm.inference.varpar_dense.dense_varpar` for two or more terms, blockwise.

    Parameters
    ----------
    design : ModelDesign
        The model's design (two or more random-effects terms).
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
    >>> import hierlm, pandas as pd
    >>> from hierlm.inference.varpar_dense import dense_varpar
    >>> rng = np.random.default_rng(0)
    >>> g, h = rng.integers(0, 20, 200), rng.integers(0, 6, 200)
    >>> y = rng.normal(size=20)[g] + rng.normal(size=6)[h] + rng.normal(size=200)
    >>> data = pd.DataFrame({"y": y, "g": g.astype(str), "h": h.astype(str)})
    >>> res = hierlm.fit("y ~ 1 + (1 | g) + (1 | h)", data)
    >>> obj = res.model.objective
    >>> a = schur_varpar(obj.design, obj.gram, res.theta, res.sigma, True)
    >>> b = dense_varpar(obj.design, obj.gram, res.theta, res.sigma, True)
    >>> bool(np.allclose(a[2], b[2], rtol=1e-10)), a[2].shape
    (True, (3, 3))
    """
    theta = np.asarray(theta, dtype=float)
    sigma = float(sigma)
    s2 = sigma * sigma
    n, p = float(gram.n), gram.p
    qr, m = gram.q_rest, gram.m
    p1 = design.terms[0].p
    f = schur_factor(gram, theta, p1)
    G, Xa, Pm, M1X, MRR = f.G, f.Xa, f.Pm, f.M1X, f.MRR
    lam_r, parts_r, lam_rT, T = f.lam_r, f.parts_r, f.lam_rT, f.T
    logdet_omega = f.logdet_omega
    l1 = G.shape[0]
    q1 = l1 * p1
    a, b = TermLayout(p1).template_index()
    g = len(a)

    # the fixed effects' Schur complement (REML's P)
    xs = slice(qr, qr + p)
    if p:
        LX = sla.cholesky(MRR[xs, xs], lower=True)
        logdet_x = 2.0 * float(np.log(np.diag(LX)).sum())
        S1 = sla.solve_triangular(LX, M1X[:, :p].T, lower=True)   # (p, q1)
        SR = sla.solve_triangular(LX, MRR[xs, :], lower=True)     # (p, m)
        NX = sla.solve_triangular(LX, np.hstack([S1, SR[:, :qr]]), lower=True, trans="T")
        C = s2 * sla.cho_solve((LX, True), np.eye(p))
        C = 0.5 * (C + C.T)
    else:
        logdet_x = 0.0
        S1, SR, NX, C = np.zeros((0, q1)), np.zeros((0, m)), np.zeros((0, qr + q1)), \
            np.zeros((0, 0))
    # sigma^2 Z'PZ's blocks N = M_1r - S1'SR_r (by its parts) and M_rr - SR_r'SR_r
    # (the factor may be shared: a new array), and sigma^2 Z'Py
    MPRR = SR.T @ SR
    np.subtract(MRR, MPRR, out=MPRR)
    c1, zr = f.C1, f.Zb[:, :qr]
    mzz = SchurBlocks(G, Xa, S1, Pm, CrossBlock(c1, Xa, zr, S1, SR[:, :qr]), MPRR[:qr, :qr],
                      f.H0)
    mt = mzz if reml else SchurBlocks(G, Xa, np.zeros((0, q1)), Pm, f.cross(), MRR[:qr, :qr],
                                      f.H0)
    w1 = (M1X[:, -1] - S1.T @ SR[:, -1]).reshape(l1, p1)  # sigma^2 Z'Py
    wr = MPRR[:qr, -1]
    yPy = float(MPRR[-1, -1]) / s2
    d = (logdet_omega + (logdet_x if reml else 0.0) + (n - reml * p) * np.log(2 * np.pi * s2)
         + yPy)

    # the parameters' D_i: the first term's E_i, the rest's sparse D_i
    Ti = np.zeros((g, p1, p1))
    Ti[np.arange(g), a, b] = 1.0
    E = Ti @ T.T + T @ np.swapaxes(Ti, 1, 2)
    k = theta.size + 1
    rest_idx = [i for i, _ in parts_r]
    Dr = {i: (P @ lam_rT + lam_r @ P.T).tocsr() for i, P in parts_r}
    Pr = dict(parts_r)
    first = list(range(g))

    Mrr = mt.Mrr
    KE = {i: mt.kmat(E[i]) for i in first}                 # Pt U'D_i U
    rows = MPRR[:qr] if reml else MRR[:qr]                 # M_rr's rows, contiguous
    DM = {j: np.asarray(Dr[j] @ rows)[:, :qr] for j in rest_idx}   # D_j M_rr
    cross = mt.cross_traces([E[i] for i in first], [Dr[j] for j in rest_idx])
    col = {j: c for c, j in enumerate(rest_idx)}

    def dvec(i: int) -> tuple[np.ndarray, np.ndarray]:     # D_i w
        if i < g:
            return np.einsum("ab,lb->la", E[i], w1), np.zeros(qr)
        return np.zeros((l1, p1)), np.asarray(Dr[i] @ wr)

    Dw = [dvec(i) for i in range(k - 1)]
    MPw = [mzz.matvec(*x) for x in Dw]
    wDw = [float(np.sum(w1 * x1) + wr @ xr) for x1, xr in Dw]
    trD = np.zeros(k - 1)
    for i in first:
        trD[i] = float(np.einsum("ab,lba->", E[i], G)) - mt.trace(E[i])
    for i in rest_idx:
        trD[i] = float(Dr[i].multiply(Mrr).sum())
    EG = np.einsum("iab,lbc->ilac", E, G)
    tr2 = np.einsum("ilac,jlca->ij", EG, EG)

    def trace2(i: int, j: int) -> float:                   # tr(D_i Mt D_j Mt)
        if i < g and j < g:
            EGE = np.einsum("lac,cd->lad", EG[i], E[j])    # blocks of D_i G D_j
            return float(tr2[i, j] - 2.0 * mt.trace(EGE)
                         + np.einsum("ab,ba->", KE[i], KE[j]))
        if i < g:                                          # tr(D_i M_1r D_j M_r1)
            return float(cross[i, col[j]])
        if j < g:
            return float(cross[j, col[i]])
        return float(np.einsum("ab,ba->", DM[i], DM[j]))

    def second(i: int, j: int) -> float:                   # tr(D_ij Mt) - w'D_ij w / s2
        if i < g:
            Eij = Ti[i] @ Ti[j].T + Ti[j] @ Ti[i].T
            return (float(np.einsum("ab,lba->", Eij, G)) - mt.trace(Eij)
                    - float(np.einsum("la,ab,lb->", w1, Eij, w1)) / s2)
        Dij = (Pr[i] @ Pr[j].T + Pr[j] @ Pr[i].T).tocsr()
        return float(Dij.multiply(Mrr).sum()) - float(wr @ (Dij @ wr)) / s2

    groups, start = [], 0
    for term in design.terms:
        groups.append(set(range(start, start + term.n_theta)))
        start += term.n_theta
    grad = np.zeros(k)
    H = np.zeros((k, k))
    J = np.zeros((k, p, p))
    for i in range(k - 1):
        grad[i] = trD[i] - wDw[i] / s2
        H[i, -1] = H[-1, i] = 2.0 * wDw[i] / (s2 * sigma)
        for j in range(i + 1):
            h = -trace2(i, j) + 2.0 * float(np.sum(Dw[i][0] * MPw[j][0])
                                             + Dw[i][1] @ MPw[j][1]) / s2
            if any(i in grp and j in grp for grp in groups):
                h += second(i, j)
            H[i, j] = H[j, i] = h
        if p:
            N1, Nr = NX[:, :q1].reshape(p, l1, p1), NX[:, q1:]
            if i < g:
                Ji = s2 * np.einsum("pla,ab,qlb->pq", N1, E[i], N1, optimize=True)
            else:
                Ji = s2 * (Nr @ np.asarray(Dr[i] @ Nr.T))
            J[i] = 0.5 * (Ji + Ji.T)
    n_eff = n - reml * p
    grad[-1] = 2.0 / sigma * (n_eff - yPy)
    H[-1, -1] = (6.0 * yPy - 2.0 * n_eff) / s2
    J[-1] = 2.0 * C / sigma
    return float(d), grad, H, C, J
