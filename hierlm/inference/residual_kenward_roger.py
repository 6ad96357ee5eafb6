"""Kenward-Roger's adjusted covariance and df for fits with a residual structure.

The marginal covariance is ``V = Z G Z' + V_R`` with ``V_R = sigma^2 S C(rho) S``
(``S = diag(s)``, ``s_i = exp(v_i' delta) / sqrt(w_i)``; see
:mod:`hierlm.objective.residual_gram`).  Kenward & Roger (1997, eq. 2-5) with ``V``
nonlinear in its parameters ``gamma``::

    P_r  = -X'V^-1 V_r V^-1 X,     Q_rs = X'V^-1 V_r V^-1 V_s V^-1 X,
    R_rs =  X'V^-1 V_rs V^-1 X,    K_rs = tr(V_r V^-1 V_s V^-1),
    I_rs = K_rs - 2 tr(Phi Q_rs) + tr(Phi P_r Phi P_s),    W = 2 I^-1,
    Phi_A = Phi + 2 Phi [sum_rs W_rs (Q_rs - P_r Phi P_s - R_rs / 4)] Phi,

(``V_r = dV/dgamma_r``, ``V_rs`` the second derivatives) and pbkrtest's ``A1``, ``A2``,
df and F scaling from ``P``, ``W`` and ``Phi``
(:class:`hierlm.inference.kenward_roger.KRInfo`).  The second-derivative terms
``R_rs`` are included in full.  ``W`` is the inverse expected REML information, as in
pbkrtest.  What is approximated is what Kenward and Roger approximate: ``W`` is the
expected, not the observed, information (in a misspecified model the df can differ
much from Satterthwaite's, which use the observed Hessian), and the small bias of the
REML estimates of ``gamma`` is ignored.

The parameters ``gamma`` (the adjustment depends on how ``V`` is written when ``V`` is
nonlinear in them; the df do not, since ``P`` and ``W`` transform together):

* the random-effects covariance entries, pbkrtest's: ``V_r = Z_i (I (x) E) Z_i'``;
* ``cs``: ``a = sigma^2 (1 - rho)`` and ``b = sigma^2 rho``, so that ``V_R = S (a I +
  b J) S`` is linear in them (SAS's ``type=CS``), and a compound-symmetric residual is
  pbkrtest's random-intercept model;
* ``ar1`` / ``car1``: ``sigma^2`` and ``rho`` (``C_ij = rho^|t_i - t_j|``), with
  ``dC/drho = |dt| rho^(|dt| - 1)``, ``d^2C/drho^2 = |dt| (|dt| - 1) rho^(|dt| - 2)``;
* no correlation: ``sigma^2``;
* then each ``delta_k``, with ``dM/ddelta_k = D_k M + M D_k`` (``D_k = diag(v_.k)``)
  for any ``M = S N S``.

A random-effect variance estimated at zero (lme4's singular fit; relative SD at most
:data:`BOUNDARY_TOL`) lies on the boundary of the parameter space, where the
asymptotic covariance ``W`` of an interior estimate does not apply.  Its entries of
``gamma`` (its variance and its covariances) are held fixed at their estimates: their
``V_r`` and ``V_rs`` are dropped, as SAS's PROC MIXED does for covariance parameters on
a boundary (their rows and columns of the asymptotic covariance are zero).  pbkrtest
0.5.2 keeps them (``.get_SigmaG`` takes every entry of ``VarCorr``; ``vcovAdj_internal``
switches to a generalized inverse only when the smallest ``|eigenvalue|`` of the
information is below 1e-10).  Without a residual structure that makes little
difference, since a zero variance's ``V_r = Z_i Z_i'`` is far from the others; but with
AR(1) errors whose ``rho`` nears 1 the residual covariance becomes a random intercept,
the information is nearly singular (BodyWeight's ``car1(Time | Rat)`` with ``(1 |
Rat)``: ``W`` of order 1e8) and ``Phi_A`` is not a covariance (negative variances, NaN
SEs).  Dropping the boundary parameters gives pbkrtest's formulas in the remaining
ones.

The products use sparse ``n x n`` matrices: ``V_R`` is block diagonal by correlation
group, ``V^-1 = sigma^-2 (R0^-1 - A T A')`` with ``A = R0^-1 Z Lambda`` (sparse, as the
groups are nested in every grouping factor) and ``T = (I + Lambda'Z'R0^-1 Z Lambda)^-1``
(``q x q``).  The random-effects generators ``Z_i (I (x) E) Z_i'`` have one entry per
pair of rows in a level, the residual ones per pair of rows in a correlation group;
fits where these exceed :data:`MAX_NNZ` are refused (Satterthwaite's df remain).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import scipy.sparse as sp

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.layout import templates
from hierlm.covariance.term_layout import TermLayout
from hierlm.errors import MethodError
from hierlm.inference.blas import one_blas_thread
from hierlm.inference.fitted import has_residual_structure
from hierlm.inference.kenward_roger import MAX_Q, KRInfo, kr_info
from hierlm.objective.gram import term_matrix
from hierlm.objective.residual_gram import relative_sd

#: Largest number of stored entries of one ``n x n`` generator.
MAX_NNZ = 20_000_000
#: A random effect whose relative SD (row norm of its template) is at most this is
#: on the boundary, and its variance and covariances leave ``gamma``.
BOUNDARY_TOL = 1e-6
_CACHE: weakref.WeakKeyDictionary[Any, KRInfo] = weakref.WeakKeyDictionary()


def kr_info_for(res: Any) -> KRInfo:
    """Kenward-Roger's quantities of any REML fit: :func:`residual_kr_info` for fits
    with ``residual=`` / ``sigma=``, else :func:`hierlm.inference.kenward_roger.kr_info`.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", hierlm.load_sleepstudy(),
    ...                  residual="ar1(Days | Subject)")
    >>> round(kr_info_for(res).contrast([0.0, 1.0])[1], 1) > 17
    True
    """
    return residual_kr_info(res) if has_residual_structure(res) else kr_info(res)


def residual_kr_info(res: Any) -> KRInfo:
    """Kenward-Roger's ``Phi``, ``Phi_A``, ``P`` and ``W`` of a REML fit with a residual
    structure (module docstring; cached while the result lives).

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", hierlm.load_sleepstudy(),
    ...                  residual="ar1(Days | Subject)")
    >>> kr = residual_kr_info(res)
    >>> bool(kr.phi_adj[1, 1] >= kr.phi[1, 1]), len(kr.P)
    (True, 3)
    """
    if not res.is_reml:
        raise MethodError(f"Kenward-Roger df need a REML fit, not {res.method}")
    model = getattr(res, "model", None)
    if model is None or getattr(model, "residual", None) is None:
        raise MethodError("Kenward-Roger's df of a fit with residual= / sigma= need its "
                          "model (FitResult.model), which a result read from disk lacks")
    if DesignCovariance.of(model.design).structured:
        # the generators below are the random effects' covariance entries; a structured
        # term's parameters psi would need d gamma / d psi and its second derivatives
        raise MethodError("Kenward-Roger's df of a fit with residual= / sigma= and a "
                          "structured random-effects term (diag(), cs(), ar1(), toep()) "
                          "are not available: use ddf='satterthwaite'")
    hit = _CACHE.get(res)
    if hit is not None:
        return hit
    with one_blas_thread():
        first, second = residual_generators(res)
        info = kr_from_generators(res.model.design, res, first, second)
    _CACHE[res] = info
    return info


def _blocks(rd: Any, n: int) -> list[np.ndarray]:
    """Row indices of each correlation group, sorted by time (one row each without a
    correlation structure)."""
    if rd.spec is None:
        return [np.array([i]) for i in range(n)]
    order = np.lexsort((rd.time, rd.group))
    cuts = np.flatnonzero(np.diff(rd.group[order])) + 1
    return np.split(order, cuts)


def _block_sparse(blocks: list[np.ndarray], mats: list[np.ndarray], n: int) -> sp.csr_matrix:
    rows = np.concatenate([np.repeat(b, len(b)) for b in blocks])
    cols = np.concatenate([np.tile(b, len(b)) for b in blocks])
    vals = np.concatenate([m.ravel() for m in mats])
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


def _corr_blocks(rd: Any, rho: float, blocks: list[np.ndarray]
                 ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """``C``, ``dC/drho`` and ``d^2C/drho^2`` of each group."""
    C, C1, C2 = [], [], []
    for b in blocks:
        k = len(b)
        if rd.spec is None:
            C.append(np.ones((1, 1)))
            C1.append(np.zeros((1, 1)))
            C2.append(np.zeros((1, 1)))
        elif rd.spec.kind == "cs":
            C.append((1 - rho) * np.eye(k) + rho * np.ones((k, k)))
            C1.append(np.ones((k, k)) - np.eye(k))
            C2.append(np.zeros((k, k)))
        else:
            d = np.abs(np.subtract.outer(rd.time[b], rd.time[b]))
            with np.errstate(divide="ignore", invalid="ignore"):
                C.append(np.where(d > 0, np.power(rho, d), 1.0))
                C1.append(np.where(d > 0, d * np.power(rho, d - 1), 0.0))
                C2.append(np.where((d > 0) & (d != 1), d * (d - 1) * np.power(rho, d - 2),
                                   0.0))
    return C, C1, C2


def residual_generators(res: Any) -> tuple[list[Any], dict[tuple[int, int], Any]]:
    """``V_r`` for every parameter (random-effects entries, then the residual ones; see
    the module docstring) as sparse ``n x n`` matrices, and the nonzero second
    derivatives ``V_rs`` (``r <= s``).

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", hierlm.load_sleepstudy(),
    ...                  residual="ar1(Days | Subject)")
    >>> first, second = residual_generators(res)
    >>> len(first), sorted(second)
    (3, [(1, 2), (2, 2)])
    """
    design, rd = res.model.design, res.model.residual
    n = design.nobs
    first: list[Any] = []
    for term, T in zip(design.terms, templates(design, res.theta), strict=True):
        Zi = term_matrix(term).tocsc()
        base = np.arange(term.n_levels) * term.p
        zero = np.linalg.norm(T, axis=1) <= BOUNDARY_TOL
        for a, b in zip(*TermLayout(term.p).template_index(), strict=True):
            if zero[a] or zero[b]:
                continue  # a variance on its boundary: held fixed (module docstring)
            src = np.concatenate([base + a, base + b]) if a != b else base + a
            dst = np.concatenate([base + b, base + a]) if a != b else base + a
            D = sp.csr_matrix((np.ones(len(src)), (dst, src)), shape=(term.q, term.q))
            G = (Zi @ D @ Zi.T).tocsr()
            if G.nnz > MAX_NNZ:
                raise MethodError(
                    f"Kenward-Roger's df with residual=: the random effects of "
                    f"'{term.group}' couple more than {MAX_NNZ} pairs of rows; use "
                    f"ddf='satterthwaite'")
            first.append(G)
    k0 = len(first)
    rpar = res.residual_parameters.to_numpy(dtype=float)
    rho = float(rpar[0]) if rd.n_corr else 0.0
    delta = rpar[rd.n_corr:]
    s2 = float(res.sigma) ** 2
    blocks = _blocks(rd, n)
    if sum(len(b) ** 2 for b in blocks) > MAX_NNZ:
        raise MethodError(f"Kenward-Roger's df with residual=: the correlation groups couple "
                          f"more than {MAX_NNZ} pairs of rows; use ddf='satterthwaite'")
    C, C1, C2 = _corr_blocks(rd, rho, blocks)
    s = relative_sd(rd, delta, design.weights)
    S = sp.diags(s)
    Ds = [sp.diags(rd.V[:, j]) for j in range(rd.V.shape[1])]

    def dd(M: Any, j: int) -> Any:
        return (Ds[j] @ M + M @ Ds[j]).tocsr()

    def scaled(mats: list[np.ndarray]) -> Any:
        return (S @ _block_sparse(blocks, mats, n) @ S).tocsr()

    R0 = scaled(C)
    second: dict[tuple[int, int], Any] = {}
    if rd.spec is not None and rd.spec.kind == "cs":
        Ia = (S @ S).tocsr()
        Jb = scaled([np.ones((len(b), len(b))) for b in blocks])
        base_mats = [Ia, Jb]
    elif rd.spec is not None:
        V_rho = s2 * scaled(C1)
        base_mats = [R0, V_rho]
        second[(k0, k0 + 1)] = scaled(C1)
        second[(k0 + 1, k0 + 1)] = s2 * scaled(C2)
    else:
        base_mats = [R0]
    first += base_mats
    VR = s2 * R0
    kd = len(first)
    for j in range(len(Ds)):
        first.append(dd(VR, j))
        for i, M in enumerate(base_mats):
            # d/ddelta_j of each V_i = S N S
            second[(k0 + i, kd + j)] = dd(M, j)
        for j2 in range(j + 1):
            second[(kd + j2, kd + j)] = dd(dd(VR, j), j2)
    return first, second


def kr_from_generators(design: Any, res: Any, first: list[Any],
                       second: dict[tuple[int, int], Any]) -> KRInfo:
    """Kenward-Roger's quantities from ``V_r`` and ``V_rs`` (module docstring), with
    ``V^-1`` applied through the correlation blocks and the ``q x q`` Woodbury
    identity.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", hierlm.load_sleepstudy(),
    ...                  residual="cs(1 | Subject)")
    >>> kr = kr_from_generators(res.model.design, res, *residual_generators(res))
    >>> bool(np.allclose(kr.phi, res.vcov.to_numpy(), rtol=1e-6))
    True
    """
    rd = res.model.residual
    n, q = design.nobs, design.q
    if q > MAX_Q:
        raise MethodError(f"Kenward-Roger's df are computed with dense {q} x {q} blocks; "
                          f"this model has more than {MAX_Q} random effects: use "
                          f"ddf='satterthwaite'")
    rpar = res.residual_parameters.to_numpy(dtype=float)
    rho = float(rpar[0]) if rd.n_corr else 0.0
    blocks = _blocks(rd, n)
    C, _, _ = _corr_blocks(rd, rho, blocks)
    s = relative_sd(rd, rpar[rd.n_corr:], design.weights)
    Si = sp.diags(1.0 / s)
    N0 = (Si @ _block_sparse(blocks, [np.linalg.inv(c) for c in C], n) @ Si).tocsr()
    s2 = float(res.sigma) ** 2
    if q:
        Z = sp.hstack([term_matrix(t) for t in design.terms], format="csr")
        Lam = sp.block_diag([sp.kron(sp.identity(t.n_levels), sp.csr_matrix(T))
                             for t, T in zip(design.terms, templates(design, res.theta),
                                             strict=True)], format="csr")
        A = (N0 @ Z @ Lam).tocsr()
        M = np.asarray((Lam.T @ Z.T @ A).toarray())
        T = np.linalg.inv(np.eye(q) + 0.5 * (M + M.T))
    else:
        A, T = sp.csr_matrix((n, 0)), np.zeros((0, 0))

    def vinv(F: Any) -> np.ndarray:
        F = np.asarray(F.toarray() if sp.issparse(F) else F)
        return np.asarray(N0 @ F - A @ (T @ (A.T @ F))) / s2

    X = design.X
    Y = vinv(X)
    phi = np.linalg.inv(X.T @ Y)
    phi = 0.5 * (phi + phi.T)
    GY = [np.asarray(G @ Y) for G in first]
    VGY = [vinv(g) for g in GY]
    P = [-(Y.T @ g) for g in GY]
    H = [(G @ N0).tocsr() for G in first]
    # T F_r = (F_r T)' with F_r = A'V_r A sparse (one block per level): sparse x dense
    TF = [np.asarray(sp.csr_matrix(A.T @ G @ A) @ T).T if q else np.zeros((0, 0))
          for G in first]
    k = len(first)
    IE = np.zeros((k, k))
    Q = np.empty((k, k), dtype=object)
    for r in range(k):
        for t in range(r, k):
            Q[r, t] = GY[r].T @ VGY[t]
            Q[t, r] = Q[r, t].T
            K = float(H[r].multiply(H[t].T).sum())
            if q:
                E = np.asarray((A.T @ H[r] @ first[t] @ A).toarray())
                K += -2 * float(np.sum(T * E.T)) + float(np.sum(TF[r] * TF[t].T))
            K /= s2 * s2
            IE[r, t] = IE[t, r] = (K - 2 * float(np.sum(phi * Q[r, t]))
                                   + float(np.sum((phi @ P[r]) * (P[t] @ phi))))
    ev = np.abs(np.linalg.eigvalsh(IE))
    W = 2 * (np.linalg.inv(IE) if ev.min() > 1e-10 else np.linalg.pinv(IE))
    U = np.zeros_like(phi)
    for r in range(k):
        for t in range(k):
            U += W[r, t] * (Q[r, t] - P[r] @ phi @ P[t])
    for (r, t), G2 in second.items():
        Rrt = Y.T @ np.asarray(G2 @ Y)
        U -= 0.25 * W[r, t] * Rrt * (1.0 if r == t else 2.0)
    U = 0.5 * (U + U.T)
    return KRInfo(phi=phi, phi_adj=phi + 2 * phi @ U @ phi, P=P, W=W)
