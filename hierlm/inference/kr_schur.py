"""Kenward-Roger's ``P``, ``Q`` and ``K`` for two or more random-effects terms, blockwise.

pbkrtest's generators (:mod:`hierlm.inference.kenward_roger`) are ``G_r = Z D_r Z'``
(``D_r = I (x) E_r`` on term ``t(r)``'s columns) and ``I`` for ``sigma^2``, with
``V = sum_r gamma_r G_r + sigma^2 I`` (``gamma_r`` the entries of each term's
``Sigma_t = sigma^2 T_t T_t'``).  With ``M = sigma^2 Z'V^-1 [Z X]`` from the blocked
factor of :func:`hierlm.inference.schur_factor.schur_factor` (the first term's block
``diag_k(G_k) - Xa' Pm Xa``, never formed) and ``B = Z'V^-1 X``::

    P_r  = -B' D_r B,           Q_rs = (D_r B)' Z'V^-1 Z (D_s B),
    K_rs = tr(D_r Z'V^-1 Z D_s Z'V^-1 Z)

(``K_rs`` by the four block cases of :func:`hierlm.inference.varpar_schur.schur_varpar`'s
traces).  The ``sigma^2`` row needs ``V^-2`` and ``V^-3``; ``V V^-1 = I`` gives them
from the rest instead (``sum_s gamma_s G_s = V - sigma^2 I``)::

    sigma^2 K_r,sigma = tr(D_r Z'V^-1 Z) - sum_s gamma_s K_rs,
    sigma^2 Q_r,sigma = -P_r - sum_s gamma_s Q_rs,
    sigma^2 X'V^-2 X  = X'V^-1 X + sum_s gamma_s P_s          (P_sigma = -X'V^-2 X),
    sigma^2 Q_sigma,sigma = X'V^-2 X - sum_s gamma_s Q_s,sigma,
    sigma^2 K_sigma,sigma = tr V^-1 - sum_s gamma_s K_s,sigma,
    tr V^-1 = sigma^-2 (n - q + tr Omega^-1).

No ``q x q`` array: ``O(q_1 q_r + q_r^3)`` like the Satterthwaite quantities.
Measured (``python -m benchmarks.post_fit --slopes --two-terms``, n = 10,000, p = 20,
``coef_table(ddf="kenward-roger")`` in a new process, load 8-10 on 2 cores, both
runs): ``q = 2000`` crossed ``(1 | g) + (1 | h)`` 4.4 s -> 0.23 s, nested
``(1 | g) + (1 | g:h)`` 4.2 s -> 0.044 s; ``q = 1000`` 0.74 s -> 0.10 s and
0.64 s -> 0.021 s (CPU seconds of one call at ``q = 2000`` crossed, one BLAS thread:
4.1 s -> 0.10 s).  With the factor of ``summary()`` shared
(:func:`hierlm.inference.schur_factor.schur_factor` keeps the last one), the same run
at load 8-9: crossed 0.11 s, nested 0.041 s at ``q = 2000``, 0.03 s and 0.013 s at
``q = 1000``.  Equal to the dense path to about 1e-14.  With ``M_1r`` by its parts and
the diagonal blocks of ``Xa' Pm Xa`` shared with ``summary()`` (the factor's ``H0``):
CPU seconds after ``summary()`` in a new process, the crossed model at ``q = 2000``,
5 processes each (load 4-5): 0.040-0.054 s -> 0.026-0.041 s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from hierlm.covariance.term_layout import TermLayout
from hierlm.inference.schur_blocks import SchurBlocks, apply_e
from hierlm.inference.schur_factor import schur_factor
from hierlm.objective.gram import GramBlocks


def _patterns(p: int) -> list[np.ndarray]:
    """The template patterns ``E_aa`` and ``E_ab + E_ba``, lower triangle by column."""
    out = []
    for a, b in zip(*TermLayout(p).template_index(), strict=True):
        E = np.zeros((p, p))
        E[a, b] = E[b, a] = 1.0
        out.append(E)
    return out


def schur_pqk(design: Any, gram: GramBlocks, theta: np.ndarray, sigma: float,
              templates: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """pbkrtest's ``P`` (length ``k``), ``Q`` (``k x k`` of ``p x p``) and ``K``, blockwise.

    ``templates``: each term's ``T_t`` (``gamma`` from ``sigma^2 T_t T_t'``).

    Examples
    --------
    >>> import hierlm, pandas as pd
    >>> from hierlm.covariance.layout import templates
    >>> rng = np.random.default_rng(0)
    >>> g, h = rng.integers(0, 20, 200), rng.integers(0, 6, 200)
    >>> y = rng.normal(size=20)[g] + rng.normal(size=6)[h] + rng.normal(size=200)
    >>> data = pd.DataFrame({"y": y, "g": g.astype(str), "h": h.astype(str)})
    >>> res = hierlm.fit("y ~ 1 + (1 | g) + (1 | h)", data)
    >>> obj = res.model.objective
    >>> P, Q, K = schur_pqk(obj.design, obj.gram, res.theta, res.sigma,
    ...                     templates(obj.design, res.theta))
    >>> len(P), Q.shape, K.shape
    (3, (3, 3), (3, 3))
    """
    s2 = float(sigma) ** 2
    terms = design.terms
    p1 = terms[0].p
    f = schur_factor(gram, theta, p1)
    qr, p = gram.q_rest, gram.p
    l1 = f.G.shape[0]
    q1 = l1 * p1
    xs = slice(qr, qr + p)
    M = SchurBlocks(f.G, f.Xa, np.zeros((0, q1)), f.Pm, f.cross(), f.MRR[:qr, :qr], f.H0)
    B1, Br = f.M1X[:, :p], f.MRR[:qr, xs]                 # sigma^2 Z'V^-1 X
    XVX = f.MRR[xs, xs] / s2

    # the generators: the first term's E_r, the rest's sparse D_r, and gamma_r
    first: dict[int, np.ndarray] = {}
    rest: dict[int, sp.csr_matrix] = {}
    gamma = []
    off = 0
    for t, (term, T) in enumerate(zip(terms, templates, strict=True)):
        Sig = s2 * (T @ T.T)
        index = zip(*TermLayout(term.p).template_index(), strict=True)
        for E, (a, b) in zip(_patterns(term.p), index, strict=True):
            gamma.append(Sig[a, b])
            if t == 0:
                first[len(gamma) - 1] = E
                continue
            r, c = np.nonzero(E)
            base = off + np.arange(term.n_levels)[:, None] * term.p
            rows, cols = (base + r[None, :]).ravel(), (base + c[None, :]).ravel()
            rest[len(gamma) - 1] = sp.csr_matrix((np.ones(rows.size), (rows, cols)),
                                                 shape=(qr, qr))
        off += 0 if t == 0 else term.q
    g = len(gamma)
    gam = np.asarray(gamma)

    # P_r, Q_rs: (D_r B)' (sigma^2 Z'V^-1 Z) (D_s B)
    Y = []
    for r in range(g):
        if r in first:
            Y.append((apply_e(first[r], B1, l1, p1), np.zeros_like(Br)))
        else:
            Y.append((np.zeros_like(B1), np.asarray(rest[r] @ Br)))
    MY = [M.matmat(*y) for y in Y]
    P = [-(B1.T @ y1 + Br.T @ yr) / s2**2 for y1, yr in Y]
    k = g + 1
    Q = np.empty((k, k), dtype=object)
    K = np.zeros((k, k))
    for r in range(g):
        for s_ in range(r, g):
            Q[r, s_] = (Y[r][0].T @ MY[s_][0] + Y[r][1].T @ MY[s_][1]) / s2**3
            Q[s_, r] = Q[r, s_].T

    # K_rs = tr(D_r Z'V^-1 Z D_s Z'V^-1 Z) and tr(D_r Z'V^-1 Z)
    G, Mrr = f.G, M.Mrr
    KE = {r: M.kmat(E) for r, E in first.items()}
    EG = {r: np.einsum("ab,lbc->lac", E, G) for r, E in first.items()}
    DM = {r: np.asarray(D @ f.MRR[:qr])[:, :qr] for r, D in rest.items()}   # D_r M_rr
    cross = M.cross_traces(list(first.values()), list(rest.values()))   # tr(D_r M_1r D_s M_r1)
    row, col = {r: i for i, r in enumerate(first)}, {r: j for j, r in enumerate(rest)}
    trD = np.zeros(g)
    for r in first:
        trD[r] = float(np.einsum("laa->", EG[r])) - M.trace(first[r])
    for r, D in rest.items():
        trD[r] = float(D.multiply(Mrr).sum())
    for r in range(g):
        for s_ in range(r, g):
            if r in EG and s_ in EG:
                EGE = EG[r] @ first[s_]                           # blocks of D_r G D_s
                v = (float(np.einsum("lac,lca->", EG[r], EG[s_])) - 2.0 * M.trace(EGE)
                     + float(np.einsum("ab,ba->", KE[r], KE[s_])))
            elif r in EG:
                v = float(cross[row[r], col[s_]])
            elif s_ in EG:
                v = float(cross[row[s_], col[r]])
            else:
                v = float(np.einsum("ab,ba->", DM[r], DM[s_]))
            K[r, s_] = K[s_, r] = v / s2**2
    trD /= s2

    # the sigma^2 row from V V^-1 = I (module docstring)
    Kg = K[:g, :g]
    for r in range(g):
        K[r, g] = K[g, r] = (trD[r] - float(gam @ Kg[r])) / s2
        Q[r, g] = (-P[r] - sum(gam[s_] * Q[r, s_] for s_ in range(g))) / s2
        Q[g, r] = Q[r, g].T
    XV2X = (XVX + sum(gam[s_] * P[s_] for s_ in range(g))) / s2
    P.append(-XV2X)
    Q[g, g] = (XV2X - sum(gam[s_] * Q[s_, g] for s_ in range(g))) / s2
    trVinv = (gram.n - q1 - qr + f.trace_omega_inv()) / s2
    K[g, g] = (trVinv - float(gam @ K[:g, g])) / s2
    return P, Q, K
