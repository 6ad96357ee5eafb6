"""The deviance's Hessian in psi = (theta, sigma) and vcov(beta)'s Jacobian, in closed form.

With ``K = Z Lambda`` the marginal covariance is ``V = sigma^2 (I + K K')``; ``theta``
enters through ``Lambda Lambda'``, whose derivatives are (``Lambda`` is linear in
theta, ``Lambda_i = dLambda/dtheta_i`` a 0/1 pattern)::

    D_i  = Lambda_i Lambda' + Lambda Lambda_i',     D_ij = Lambda_i Lambda_j' + Lambda_j Lambda_i'

so ``dV/dtheta_i = sigma^2 Z D_i Z'``.  With ``P = V^-1 - V^-1 X C X' V^-1``
(``C = (X'V^-1 X)^-1`` = vcov(beta-hat)) the deviance of :mod:`hierlm.inference.deviance`
is ``log|V| + REML log|X'V^-1 X| + y'Py + const``, and (Harville 1977; ``Q = P``
for REML, ``Q = V^-1`` for ML in the trace terms)::

    dd/dtheta_i         = tr(Q V_i) - y'P V_i P y
    d2d/dtheta_i dtheta_j = tr(Q V_ij) - tr(Q V_i Q V_j) + 2 y'P V_i P V_j P y - y'P V_ij P y
    d2d/dtheta_i dsigma  = 2 sigma w'D_i w,        w = Z'P y
    d2d/dsigma^2         = (6 y'Py - 2 (n - REML p)) / sigma^2
    dC/dtheta_i = sigma^2 C B' D_i B C,   B = Z'V^-1 X;     dC/dsigma = 2 C / sigma.

Every product goes through the Gram matrix ``A = [Z X y]'[Z X y]`` (the objective's
blocks, so weights and the centred ``y`` are as fitted): with ``Omega = Lambda'Z'Z
Lambda + I = L L'`` and ``Y = L^-1 Lambda' A_Z.``, ``sigma^2 [Z X y]'V^-1 [Z X y] = A - Y'Y``
(``M``); ``sigma^2 Z'PZ``, ``sigma^2 Z'Py`` and ``sigma^2 y'Py`` are ``M``'s Schur
complements in its ``X`` block.  ``A - Y'Y`` is formed blockwise when the first term is
large (:func:`_blocked_m`: its ``Omega`` block is block diagonal).  The cost is at most
``O(q^3)`` flops and ``O(k q^2)`` memory
(``q`` random effects, ``k`` variance parameters), whatever ``n``: dense LAPACK
instead of the ``k + p (p + 1) / 2`` evaluations of a second-order autodiff graph.

Measured (``summary()`` right after a REML fit in a fresh process, on this 2-core
machine while other jobs ran, load 6-9): sleepstudy 2.4 s (16.8 s when the graph was
not yet cached) -> 0.04-0.13 s; a design like lmerTest's ``ham`` (1,296 rows, 16
fixed-effect columns, crossed intercepts of 81 and 8 levels) 12-21 s -> 0.03-0.06 s;
with ``(1 | C) + (1 | C:P)`` instead (``q = 729``) 101 s -> 0.08-0.45 s.  The tables
agree with the graph's to 4e-12.  n = 10,000, p = 20, ``(x | g)`` with 500 levels
(``q = 1000``): ``summary()`` 1.37 s with the dense ``A - Y'Y``, 0.40 s blockwise
(``varpar_info`` itself 0.16 s); with 1,000 levels 1.5 s, so the 0.1 s target holds
up to a few hundred random effects.  With one random-effects term ``Omega`` is block
diagonal and :func:`dense_varpar` hands over to
:func:`hierlm.inference.varpar_levels.one_term_varpar` (every product level by level):
``python -m benchmarks.post_fit --slopes`` (n = 10,000, p = 20, load 4), ``summary()``
0.23-0.30 s -> 0.04-0.06 s at ``q = 1000`` and 0.7-1.4 s -> 0.05-0.07 s at
``q = 2000``; the function itself (one BLAS thread) 0.22-0.34 s -> 3-7 ms at
``q = 2000`` and 30-40 ms at ``q = 10,000`` (``(1 + x1 | g)``).  Models with two or
more terms and more than :data:`DENSE_MAX_Q` random effects keep the graph (its blocked
factor is sparse in the first term); one term goes level by level at any size.  Two
or more terms above :data:`SCHUR_MIN_Q` random effects go blockwise
(:mod:`hierlm.inference.varpar_schur`: a Schur complement onto the later terms, no
``q x q`` array), also above :data:`DENSE_MAX_Q` while the later terms are small
(:func:`schur_applies`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.term_layout import TermLayout
from hierlm.inference.varpar_levels import one_term_varpar
from hierlm.inference.varpar_schur import schur_varpar
from hierlm.objective.gram import GramBlocks

#: Largest number of random effects handled with dense ``q x q`` matrices (two or more terms).
DENSE_MAX_Q = 2000
#: Two or more terms with more random effects than this go blockwise
#: (:func:`hierlm.inference.varpar_schur.schur_varpar`; equal CPU time near ``q = 300``).
SCHUR_MIN_Q = 300
#: The blockwise path keeps ``q_1 x q_r`` arrays: the largest ``q_1 q_r`` it takes.
SCHUR_MAX_ENTRIES = 10_000_000


def schur_applies(design: Any, gram: GramBlocks) -> bool:
    """Whether two or more terms go blockwise (:data:`SCHUR_MIN_Q`, :data:`SCHUR_MAX_ENTRIES`).

    Examples
    --------
    >>> import hierlm, pandas as pd
    >>> from hierlm.objective.gram import compute_gram
    >>> rng = np.random.default_rng(0)
    >>> data = pd.DataFrame({"y": rng.normal(size=2000),
    ...                      "g": rng.integers(0, 500, 2000).astype(str),
    ...                      "h": rng.integers(0, 30, 2000).astype(str)})
    >>> d = hierlm.build_design("y ~ 1 + (1 | g) + (1 | h)", data)
    >>> schur_applies(d, compute_gram(d)), d.q
    (True, 521)
    """
    q1 = design.terms[0].q
    return (len(design.terms) > 1 and q1 + gram.q_rest > SCHUR_MIN_Q
            and gram.q_rest <= DENSE_MAX_Q and q1 * max(gram.q_rest, 1) <= SCHUR_MAX_ENTRIES)
#: First-term sizes ``l1 p1`` above which ``A - Y'Y`` is formed blockwise.
BLOCKED_MIN_Q1 = 200


def _blocked_m(A: np.ndarray, omega: np.ndarray, LtAZ: np.ndarray, l1: int, p1: int
               ) -> tuple[np.ndarray, float]:
    """``A - Y'Y`` and ``log|Omega|`` with ``Omega``'s first term block diagonal.

    ``Omega = [[O11, .], [O21, O22]]`` with ``O11`` block diagonal (``l1`` blocks of
    ``p1``): ``L11`` blockwise, ``L21 = O21 L11^-T``, ``L22 = chol(O22 - L21 L21')``;
    ``Y1 = L11^-1 G1`` is block diagonal in the first term's columns (``G = Lambda'A_Z.``),
    so ``Y1'Y1`` costs ``O(l1 p1^2 m + q1 m^2)`` instead of ``O(N^2 q1)``, and only the
    rest's ``q_r`` rows of ``Y2 = L22^-1 (G2 - L21 Y1)`` are dense.
    """
    N, q = A.shape[0], omega.shape[0]
    q1 = l1 * p1
    qr, m = q - q1, N - q1
    idx = np.arange(l1)[:, None] * p1 + np.arange(p1)[None, :]
    L11 = np.linalg.cholesky(omega[idx[:, :, None], idx[:, None, :]])
    Y1 = np.linalg.solve(L11, LtAZ[:q1].reshape(l1, p1, N))        # (l1, p1, N)
    Yd = Y1[np.arange(l1)[:, None, None], np.arange(p1)[None, :, None], idx[:, None, :]]
    YR = Y1[:, :, q1:]                                               # (l1, p1, m)
    M = A.copy()
    M[idx[:, :, None], idx[:, None, :]] -= np.einsum("kab,kac->kbc", Yd, Yd)
    ZR = np.einsum("kab,kam->kbm", Yd, YR).reshape(q1, m)
    M[:q1, q1:] -= ZR
    M[q1:, :q1] -= ZR.T
    YR2 = YR.reshape(q1, m)
    M[q1:, q1:] -= YR2.T @ YR2
    logdet = 2.0 * float(np.log(np.diagonal(L11, axis1=1, axis2=2)).sum())
    if qr:
        O21 = omega[q1:q, :q1].reshape(qr, l1, p1).transpose(1, 2, 0)
        L21 = np.linalg.solve(L11, O21).transpose(2, 0, 1)          # (qr, l1, p1)
        L21f = L21.reshape(qr, q1)
        L22 = sla.cholesky(omega[q1:q, q1:q] - L21f @ L21f.T, lower=True)
        rhs = LtAZ[q1:q].copy()
        rhs[:, :q1] -= np.einsum("rkp,kpc->rkc", L21, Yd).reshape(qr, q1)
        rhs[:, q1:] -= L21f @ YR2
        Y2 = sla.solve_triangular(L22, rhs, lower=True)
        M -= Y2.T @ Y2
        logdet += 2.0 * float(np.log(np.diag(L22)).sum())
    return M, logdet


def dense_gram(gram: GramBlocks) -> np.ndarray:
    """The full Gram matrix ``[Z1 Z_rest X y]'[Z1 Z_rest X y]`` from its blocks.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective.gram import compute_gram
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> dense_gram(compute_gram(d)).shape
    (39, 39)
    """
    l1, p1 = gram.A11.shape[0], gram.A11.shape[1]
    q1 = l1 * p1
    size = q1 + gram.m
    A = np.zeros((size, size))
    idx = np.arange(l1)[:, None, None] * p1
    A[(idx + np.arange(p1)[None, :, None]), (idx + np.arange(p1)[None, None, :])] = gram.A11
    rows = np.repeat(gram.nz_row, p1)
    cols = (gram.nz_level[:, None] * p1 + np.arange(p1)[None, :]).ravel()
    AR1 = np.zeros((gram.m, q1))
    AR1[rows, cols] = gram.nz_val.ravel()
    A[q1:, :q1] = AR1
    A[:q1, q1:] = AR1.T
    A[q1:, q1:] = gram.A_RR
    return A


def _lambda_parts(design: Any, gram: GramBlocks, theta: np.ndarray
                  ) -> tuple[sp.csr_matrix, list[sp.csr_matrix], list[list[int]]]:
    """``Lambda`` (q x q), each ``Lambda_i`` and, per term, its theta indices."""
    q1 = design.terms[0].q
    q = q1 + gram.q_rest
    rows, cols, th = [], [], []
    t0 = design.terms[0]
    a, b = TermLayout(t0.p).template_index()
    base = np.arange(t0.n_levels)[:, None] * t0.p
    rows.append((base + a[None, :]).ravel())
    cols.append((base + b[None, :]).ravel())
    th.append(np.tile(np.arange(len(a)), t0.n_levels))
    keep = gram.lam_row < gram.q_rest
    rows.append(q1 + gram.lam_row[keep])
    cols.append(q1 + gram.lam_col[keep])
    th.append(gram.lam_theta[keep])
    r, c, t = (np.concatenate(x).astype(np.int64) for x in (rows, cols, th))
    lam = sp.csr_matrix((theta[t], (r, c)), shape=(q, q))
    parts = []
    for i in range(theta.size):
        sel = t == i
        parts.append(sp.csr_matrix((np.ones(int(sel.sum())), (r[sel], c[sel])), shape=(q, q)))
    groups = [list(range(s.start, s.stop)) for s in DesignCovariance.of(design).theta_slices()]
    return lam, parts, groups


def dense_varpar(design: Any, gram: GramBlocks, theta: np.ndarray, sigma: float, reml: bool,
                 levels: bool = True
                 ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Deviance, gradient, Hessian in ``(theta, sigma)``, ``C`` and ``dC/dpsi``.

    Parameters
    ----------
    design : ModelDesign
        The model's design (its terms give the shape of ``Lambda``).
    gram : GramBlocks
        The objective's Gram blocks.
    theta : ndarray
        Covariance parameters.
    sigma : float
        Residual standard deviation.
    reml : bool
        REML deviance (True) or ML deviance (False).
    levels : bool
        With one random-effects term, compute level by level
        (:func:`hierlm.inference.varpar_levels.one_term_varpar`), with more, where
        :func:`schur_applies`, blockwise
        (:func:`hierlm.inference.varpar_schur.schur_varpar`); False forces the dense
        ``q x q`` path.

    Returns
    -------
    tuple
        ``(d, gradient (k,), hessian (k, k), C (p, p), jacobian (k, p, p))``.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> obj = res.model.objective
    >>> d, g, H, C, J = dense_varpar(obj.design, obj.gram, res.theta, res.sigma, True)
    >>> round(d, 4), H.shape, J.shape
    (1743.6283, (4, 4), (4, 2, 2))
    """
    if levels and len(design.terms) == 1 and gram.q_rest == 0:
        return one_term_varpar(design, gram, theta, sigma, reml)
    if levels and schur_applies(design, gram):
        return schur_varpar(design, gram, theta, sigma, reml)
    theta = np.asarray(theta, dtype=float)
    sigma = float(sigma)
    s2 = sigma * sigma
    n, p = float(gram.n), gram.p
    A = dense_gram(gram)
    q = A.shape[0] - p - 1
    lam, parts, groups = _lambda_parts(design, gram, theta)
    lamT = lam.T.tocsr()
    AZ = A[:q]                                      # Z'[Z X y]
    LtAZ = np.asarray(lamT @ AZ)                    # Lambda'Z'[Z X y]
    omega = np.asarray(lamT @ LtAZ[:, :q].T)        # Lambda'Z'Z Lambda
    omega = 0.5 * (omega + omega.T) + np.eye(q)
    t0 = design.terms[0]
    if t0.q > BLOCKED_MIN_Q1:
        M, logdet_omega = _blocked_m(A, omega, LtAZ, t0.n_levels, t0.p)
    else:
        L = sla.cholesky(omega, lower=True)
        Y = sla.solve_triangular(L, LtAZ, lower=True)
        M = A - Y.T @ Y                             # sigma^2 [Z X y]'V^-1 [Z X y]
        logdet_omega = 2.0 * float(np.log(np.diag(L)).sum())
    M = 0.5 * (M + M.T)
    xs = slice(q, q + p)
    if p:
        LX = sla.cholesky(M[xs, xs], lower=True)
        logdet_x = 2.0 * float(np.log(np.diag(LX)).sum())
        S = sla.solve_triangular(LX, M[xs, :], lower=True)        # LX^-1 X'V^-1 [Z X y]
        MP = M - S.T @ S                                          # sigma^2 [Z . y]'P[Z . y]
        Minv_XZ = sla.solve_triangular(LX, S[:, :q], lower=True, trans="T")
    else:
        logdet_x, MP, Minv_XZ = 0.0, M, np.zeros((0, q))
    MZZ = MP[:q, :q]                                # sigma^2 Z'PZ
    wp = MP[:q, -1]                                 # sigma^2 Z'Py
    yPy = float(MP[-1, -1]) / s2
    Mt = MZZ if reml else M[:q, :q]                 # sigma^2 Z'QZ for the trace terms
    d = (logdet_omega + (logdet_x if reml else 0.0) + (n - reml * p) * np.log(2 * np.pi * s2)
         + yPy)

    k = theta.size + 1
    grad = np.zeros(k)
    H = np.zeros((k, k))
    J = np.zeros((k, p, p))
    C = s2 * _inv_from_chol(M[xs, xs]) if p else np.zeros((0, 0))
    D = [(Pi @ lamT + lam @ Pi.T).tocsr() for Pi in parts]
    DM = [np.asarray(Di @ Mt) for Di in D]          # D_i Z'QZ sigma^2
    Dw = [np.asarray(Di @ wp) for Di in D]
    MPw = [MZZ @ x for x in Dw]
    for i in range(k - 1):
        grad[i] = float(np.trace(DM[i])) - float(wp @ Dw[i]) / s2
        H[i, -1] = H[-1, i] = 2.0 * float(wp @ Dw[i]) / (s2 * sigma)
        for j in range(i + 1):
            h = -float(np.sum(DM[i] * DM[j].T)) + 2.0 * float(Dw[i] @ MPw[j]) / s2
            if any(i in g and j in g for g in groups):
                Dij = (parts[i] @ parts[j].T + parts[j] @ parts[i].T).tocsr()
                h += float((Dij.multiply(Mt)).sum()) - float(wp @ (Dij @ wp)) / s2
            H[i, j] = H[j, i] = h
        if p:
            BD = Minv_XZ @ D[i].T                   # M_XX^-1 M_XZ D_i
            J[i] = s2 * (BD @ Minv_XZ.T)
            J[i] = 0.5 * (J[i] + J[i].T)
    n_eff = n - reml * p
    grad[-1] = 2.0 / sigma * (n_eff - yPy)
    H[-1, -1] = (6.0 * yPy - 2.0 * n_eff) / s2
    J[-1] = 2.0 * C / sigma
    return float(d), grad, H, C, J


def _inv_from_chol(a: np.ndarray) -> np.ndarray:
    c = sla.cho_factor(a, lower=True)
    out = sla.cho_solve(c, np.eye(a.shape[0]))
    return np.asarray(0.5 * (out + out.T))
