"""Kenward-Roger's adjusted covariance and degrees of freedom (pbkrtest), without n x n matrices.

pbkrtest parameterizes ``V = sum_k gamma_k G_k`` by the entries of each term's
covariance ``Sigma_i`` (lower triangle by column) and ``sigma^2``:
``G = Z_i (I_l (x) E) Z_i'`` with ``E = E_aa`` or ``E_ab + E_ba``, and ``G = I_n``
for ``sigma^2``.  With ``Phi = vcov(beta-hat)`` it forms (``vcovAdj_internal``)::

    P_r  = -X'V^-1 G_r V^-1 X,      Q_rs = X'V^-1 G_r V^-1 G_s V^-1 X,
    K_rs = tr(G_r V^-1 G_s V^-1),
    I_rs = K_rs - 2 tr(Phi Q_rs) + tr(P_r Phi P_s Phi),     W = 2 I^-1,
    U = sum_rs W_rs (Q_rs - P_r Phi P_s),    Phi_A = Phi + 2 Phi U Phi,

and for a hypothesis ``L`` (``q`` rows) the scaled F and its df from ``A1``, ``A2``
(``.KR_adjust``, ``Lb_ddf``).

Here every product goes through ``q x q`` blocks: ``V = sigma^2 (I + K K')`` with
``K = Z Lambda``, so ``V^-k = sigma^-2k (I - K T_k K')`` with ``S = K'K``,
``R = (S + I)^-1``, ``T_1 = R``, ``T_2 = 2R - RSR``, ``T_3 = T_2 + R - R S T_2``, and
``F'V^-k H = sigma^-2k (F'H - (K'F)' T_k (K'H))`` for ``F, H`` in ``{Z, X}``, from the
Gram matrices ``Z'Z``, ``Z'X``, ``X'X``, all from one Cholesky factor of ``S + I``
(:mod:`hierlm.inference.kr_products`).  The cost is ``O(q^3)`` and memory ``O(q^2)``,
whatever ``n``; models with more than :data:`MAX_Q` random effects are refused.  With
one random-effects term every product is a sum over levels of ``p_1 x p_1`` blocks,
``O(l p_1^3)`` time and ``O(l p_1^2)`` memory, and no ``q x q`` array is formed.

A structured covariance (:mod:`hierlm.covariance`) makes ``gamma`` a function of the
structures' ``(psi, sigma^2)``; with ``J = d gamma / d (psi, sigma^2)``
(:func:`hierlm.inference.varpar_structured.gamma_jacobian`) the information of
``(psi, sigma^2)`` is ``J' I J`` and ``W = 2 J (J' I J)^-1 J'`` replaces ``2 I^-1`` in
``U``, ``A1`` and ``A2`` (all bilinear in the ``P_r`` and ``Q_rs``).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.layout import templates
from hierlm.covariance.term_layout import TermLayout
from hierlm.design.weights import working_design
from hierlm.errors import MethodError
from hierlm.heap import large_temporaries_reused
from hierlm.inference.blas import one_blas_thread
from hierlm.inference.fitted import require_model
from hierlm.inference.kr_products import level_gram, level_products, one_term_pqk, v_products
from hierlm.inference.kr_schur import schur_pqk
from hierlm.inference.varpar_dense import schur_applies
from hierlm.inference.varpar_structured import gamma_jacobian
from hierlm.objective.gram import term_matrix

#: Largest number of random effects (columns of Z) handled: dense q x q blocks.
MAX_Q = 4000
_CACHE: weakref.WeakKeyDictionary[Any, KRInfo] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, eq=False)
class KRInfo:
    """``Phi``, ``Phi_A`` and pbkrtest's ``P`` and ``W`` for one REML fit."""

    phi: np.ndarray
    phi_adj: np.ndarray
    P: list[np.ndarray]
    W: np.ndarray

    def _a12(self, L: np.ndarray) -> tuple[float, float]:
        Theta = L.T @ np.linalg.solve(L @ self.phi @ L.T, L)
        TP = Theta @ self.phi
        u = [TP @ P @ self.phi for P in self.P]
        A1 = A2 = 0.0
        for i in range(len(u)):
            for j in range(i, len(u)):
                e = 1.0 if i == j else 2.0
                A1 += e * self.W[i, j] * np.trace(u[i]) * np.trace(u[j])
                A2 += e * self.W[i, j] * float(np.sum(u[i] * u[j].T))
        return A1, A2

    def ddf(self, L: np.ndarray) -> tuple[float, float]:
        """pbkrtest's denominator df and F scaling of ``L beta = 0`` (``L`` full row rank)."""
        q = L.shape[0]
        A1, A2 = self._a12(L)
        B = (A1 + 6 * A2) / (2 * q)
        g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
        den = 3 * q + 2 * (1 - g)
        c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
        V0, V1, V2 = 1 + c1 * B, 1 - c2 * B, 1 - c3 * B
        V0 = 0.0 if abs(V0) < 1e-10 else V0
        ratio = 1.0 if abs(1 - A2 / q) < 1e-14 and abs(V1) < 1e-14 else (1 - A2 / q) / V1
        rho = ratio**2 * V0 / V2 / q
        df2 = 4 + (q + 2) / (q * rho - 1)
        scale = 1.0 if abs(df2 - 2) < 1e-2 else df2 * (1 - A2 / q) / (df2 - 2)
        return float(df2), float(scale)

    def contrast(self, c: np.ndarray) -> tuple[float, float]:
        """Adjusted variance of ``c beta-hat`` and its df (lmerTest's ``get_KR1D``)."""
        c = np.asarray(c, dtype=float)
        return float(c @ self.phi_adj @ c), self.ddf(c[None, :])[0]

    def f_test(self, beta: np.ndarray, L: np.ndarray) -> tuple[int, float, float]:
        """``(q, ddf, F)``: F of pbkrtest's ``Ftest`` (scaled, with ``Phi_A``)."""
        q = L.shape[0]
        d = L @ beta
        F = float(d @ np.linalg.solve(L @ self.phi_adj @ L.T, d)) / q
        df2, scale = self.ddf(L)
        return q, df2, scale * F


def _generators(design: Any) -> list[tuple[int, np.ndarray]]:
    """For each ``gamma_k`` of a term: the term index and the row permutation-with-mask of
    ``D = I (x) E`` as ``(src, dst)`` index pairs within the term's columns."""
    out = []
    for i, term in enumerate(design.terms):
        rows, cols = TermLayout(term.p).template_index()
        base = np.arange(term.n_levels) * term.p
        for a, b in zip(rows, cols, strict=True):
            if a == b:
                pairs = np.stack([base + a, base + a])
            else:
                pairs = np.stack([np.concatenate([base + a, base + b]),
                                  np.concatenate([base + b, base + a])])
            out.append((i, pairs))
    return out


def _apply_d(pairs: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``D M`` for ``D = I (x) E``: row ``dst`` of the result is row ``src`` of ``M``."""
    out = np.zeros_like(M)
    out[pairs[1]] = M[pairs[0]]
    return out


def kr_info(res: Any) -> KRInfo:
    """Kenward-Roger's quantities of a REML fit (cached while the result lives).

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> kr = kr_info(res)
    >>> round(kr.contrast([0.0, 1.0])[1], 3)
    17.0
    """
    if not res.is_reml:
        raise MethodError(f"Kenward-Roger df need a REML fit, not {res.method}")
    hit = _CACHE.get(res)
    if hit is not None:
        return hit
    q = res.model.design.q if res.model is not None else 0
    with one_blas_thread(), large_temporaries_reused(q, once_set=True):  # as varpar_info
        info = _kr_info(res)
    _CACHE[res] = info
    return info


def _kr_info(res: Any, levels: bool = True) -> KRInfo:
    """:func:`kr_info` uncached; ``levels=False`` forces the dense ``q x q`` path."""
    # the working problem W^1/2 [Z X y-o] (prior weights): V becomes sigma^2 (I + K K')
    # and pbkrtest's G for sigma^2 the identity, with every quantity unchanged
    design = working_design(require_model(res, "Kenward-Roger's df").design)
    q = design.q
    if q > MAX_Q:
        raise MethodError(f"Kenward-Roger's df are computed with dense {q} x {q} blocks; "
                          f"this model has more than {MAX_Q} random effects: use "
                          f"ddf='satterthwaite'")
    X = design.X
    XX = X.T @ X
    Ts = templates(design, res.theta)
    s2 = res.sigma**2
    phi = res.vcov.to_numpy()
    Jg = (gamma_jacobian(design, res.theta, res.sigma)
          if DesignCovariance.of(design).structured else None)
    if levels and len(design.terms) == 1:
        # block diagonal: P, Q, K level by level, no q x q array (kr_products)
        t0 = design.terms[0]
        A, B = level_gram(t0.codes, t0.X, X, t0.n_levels)
        lp = level_products(A, B, XX, Ts[0], s2, design.nobs)
        P, Q, K = one_term_pqk(lp, t0.p)
        return _kr_from(phi, P, Q, K, Jg)
    gram = res.model.objective.gram
    if levels and schur_applies(design, gram):
        # two or more terms, blockwise: no q x q array (kr_schur)
        P, Q, K = schur_pqk(design, gram, res.theta, res.sigma, Ts)
        return _kr_from(phi, P, Q, K, Jg)
    Z = sp.hstack([term_matrix(t) for t in design.terms], format="csc")
    ZZ = np.asarray((Z.T @ Z).toarray())
    ZX = np.asarray(Z.T @ X)
    # the V^-k products from one Cholesky factor (hierlm.inference.kr_products)
    Lam = sp.block_diag([sp.kron(sp.identity(t.n_levels), sp.csr_matrix(T))
                         for t, T in zip(design.terms, Ts, strict=True)], format="csr")
    KZ = np.asarray(Lam.T @ ZZ)        # K'Z = Lambda'Z'Z
    KX = np.asarray(Lam.T @ ZX)          # K'X
    S = np.asarray(Lam.T @ KZ.T)         # K'K = Lambda'Z'Z Lambda
    vp = v_products(ZZ, ZX, XX, KZ, KX, 0.5 * (S + S.T), s2, design.nobs)
    ZVZ, ZVX, ZV2Z, ZV2X = vp.ZVZ, vp.ZVX, vp.ZV2Z, vp.ZV2X
    XV2X, XV3X, trV2 = vp.XV2X, vp.XV3X, vp.trV2
    offs = np.concatenate([[0], np.cumsum([t.q for t in design.terms])])
    gens = _generators(design)
    k = len(gens) + 1
    sl = [slice(offs[i], offs[i + 1]) for i, _ in gens]
    DZX = [_apply_d(pr, ZVX[s]) for (_, pr), s in zip(gens, sl, strict=True)]
    P = [-(ZVX[s].T @ d) for d, s in zip(DZX, sl, strict=True)] + [-XV2X]
    Q = np.empty((k, k), dtype=object)
    K = np.zeros((k, k))
    for r in range(k):
        for s_ in range(r, k):
            if r < k - 1 and s_ < k - 1:
                (_, pr), (_, ps) = gens[r], gens[s_]
                A = _apply_d(pr, ZVZ[sl[r], sl[s_]])                 # D_r Z_i'V^-1 Z_j
                A = _apply_d(ps, A.T).T                             # ... D_s
                Q[r, s_] = ZVX[sl[r]].T @ A @ ZVX[sl[s_]]
                K[r, s_] = float(np.sum(A * ZVZ[sl[s_], sl[r]].T))
            elif r < k - 1:  # s is sigma^2
                Q[r, s_] = DZX[r].T @ ZV2X[sl[r]]
                K[r, s_] = float(np.trace(_apply_d(gens[r][1], ZV2Z[sl[r], sl[r]])))
            else:
                Q[r, s_] = XV3X
                K[r, s_] = trV2
            K[s_, r] = K[r, s_]
            Q[s_, r] = Q[r, s_].T
    return _kr_from(phi, P, Q, K, Jg)


def _kr_from(phi: np.ndarray, P: list[np.ndarray], Q: np.ndarray, K: np.ndarray,
             Jg: np.ndarray | None = None) -> KRInfo:
    """``W`` and ``Phi_A`` from pbkrtest's ``P``, ``Q`` and ``K`` (module docstring).

    ``Jg``: ``d gamma / d (psi, sigma^2)`` of a structured model (None: unstructured).
    """
    k = len(P)
    IE = np.empty((k, k))
    for r in range(k):
        for s_ in range(k):
            IE[r, s_] = (K[r, s_] - 2 * float(np.sum(phi * Q[r, s_]))
                         + float(np.sum((phi @ P[r]) * (P[s_] @ phi))))
    IE = 0.5 * (IE + IE.T)
    if Jg is not None:
        # the variance parameters are (psi, sigma^2): W = 2 J (J' I J)^-1 J' in gamma's
        # coordinates (every later use of W is bilinear in the P_r, Q_rs)
        IP = Jg.T @ IE @ Jg
        IP = 0.5 * (IP + IP.T)
        ev = np.abs(np.linalg.eigvalsh(IP))
        W = 2 * Jg @ (np.linalg.inv(IP) if ev.min() > 1e-10 else np.linalg.pinv(IP)) @ Jg.T
    else:
        ev = np.abs(np.linalg.eigvalsh(IE))
        W = 2 * (np.linalg.inv(IE) if ev.min() > 1e-10 else np.linalg.pinv(IE))
    U = np.zeros_like(phi)
    for r in range(k):
        for s_ in range(k):
            U += W[r, s_] * (Q[r, s_] - P[r] @ phi @ P[s_])
    U = 0.5 * (U + U.T)
    return KRInfo(phi=phi, phi_adj=phi + 2 * phi @ U @ phi, P=P, W=W)
