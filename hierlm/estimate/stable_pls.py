"""The penalized least squares at theta-hat, solved from the data (not the Gram matrix).

The optimizer reads ``r^2`` off the Cholesky factor of the Gram matrix of
``[Z X y]``: ``r^2 = y'y - (projections)``, which loses about ``eps * ||y||^2``.  When
the fit is nearly exact (``sigma`` far below the signal) that cancellation is most of
``r^2``: at ``sigma ~ 1e-6`` of the signal the criterion moves by 0.05.  As lme4 does,
the reported criterion and estimates come from residuals instead.  At the final theta,
with ``A = Z Lambda`` and ``M = A'A + I`` (factored blockwise by the objective)::

    min_U || [B; 0] - [A; I] U ||,    B = [X, y - X a]          (p + 1 right-hand sides)

is solved by the semi-normal equations ``M U = A'B`` with iterative refinement: each
step forms the residual ``R = B - A U`` from the data (``O(n)``, sparse products with
the terms' columns) and the correction ``M dU = A'R - U``.  The error shrinks by about
``eps cond(M)`` a step, so a few steps reach the least-squares solution to working
precision whenever ``eps cond(M) < 1``.  The stacked residuals ``W = [B - A U; -U]``
are orthogonal to ``[A; I]``, so ``W'W`` is the Schur complement of ``M`` in the
augmented Gram matrix, and a Householder QR ``W = Q R`` gives it without squaring::

    R = [[R_XX, r_Xy], [0, r_yy]]:   beta = a + R_XX^{-1} r_Xy,   r^2 = r_yy^2,
    u = U_y - U_X (beta - a),        b = Lambda u,
    log|L_XX|^2 = 2 sum log|diag R_XX|,   vcov(beta) = sigma^2 (R_XX'R_XX)^{-1}.

Only ``log|L_theta|^2`` (a sum of logs of well-conditioned diagonals) is taken from the
factor.  The work is a few products with ``Z`` and solves with the factor, done once
per fit.  Small models with few rows solve the same problem by one dense Householder QR
instead (:mod:`hierlm.estimate.stable_dense`, about 0.1 ms against 0.3-0.9 ms here).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from hierlm.design.terms import ModelDesign
from hierlm.design.weights import working_design
from hierlm.estimate.cond_var import conditional_variances
from hierlm.estimate.conditional import ConditionalSampler
from hierlm.estimate.extract import Estimates
from hierlm.estimate.lazy import deferred
from hierlm.estimate.stable_dense import dense_estimates, suits_dense
from hierlm.objective.gram import working_term_matrices
from hierlm.objective.profiled import ProfiledObjective

#: Refinement steps at most; it stops earlier once a correction is below working precision.
MAX_REFINE = 6


#: Per model: the working design and its terms' sparse ``Z_i`` (refits of one model
#: reuse them; neither refers back to the objective, so the entry goes with it).
_SETUP: weakref.WeakKeyDictionary[ProfiledObjective, tuple[ModelDesign, list[sp.csr_matrix],
                                                           list[Any]]]
_SETUP = weakref.WeakKeyDictionary()


def _setup(objective: ProfiledObjective) -> tuple[ModelDesign, list[sp.csr_matrix], list[Any]]:
    got = _SETUP.get(objective)
    if got is None:
        wd = working_design(objective.design)
        Z = list(working_term_matrices(objective.design))  # (compute_gram's)
        got = _SETUP[objective] = (wd, Z, [z.T for z in Z])  # the transposes made once
    return got


class _PLS:
    """Products with ``A = Z Lambda`` and solves with ``M = A'A + I`` at one theta."""

    def __init__(self, objective: ProfiledObjective, theta: np.ndarray, L1: np.ndarray,
                 L_R: np.ndarray) -> None:
        self.design, self.Z, self.ZT = _setup(objective)
        self.s = ConditionalSampler(objective)
        self.f = self.s.factor_from(theta, L1, L_R)
        self.qr = qr = objective.gram.q_rest
        # the sparse slice and transposes every solve uses, made once (the same matrices)
        A1Z: Any = self.s.A1R[:, :qr] if qr else None  # A_1R on the random-effect rows
        self.A1Z, self.A1Zt = A1Z, (A1Z.T if qr else None)
        self.lam_t: Any = self.f.lam_rest.T if qr else None
        # L_R' of the C-ordered factor is Fortran-ordered: SciPy's triangular solves use
        # it in place, where the slice L_Z was copied and scanned for NaN on every call
        # (8 calls: 0.46 -> 0.1 s on the 1M-row crossed design, m = 3,708)
        self.L_Rt: Any = self.f.L_R.T

    def apply(self, U: np.ndarray) -> np.ndarray:
        """``Z Lambda U`` for ``U`` of shape ``(q, k)``."""
        out = np.zeros((self.design.nobs, U.shape[1]))
        off = 0
        for Z, term, T in zip(self.Z, self.design.terms, self.f.Ts, strict=True):
            b = np.einsum("ij,ljk->lik", T, U[off:off + term.q].reshape(term.n_levels, term.p, -1))
            out += Z @ b.reshape(term.q, -1)
            off += term.q
        return out

    def adjoint(self, R: np.ndarray) -> np.ndarray:
        """``Lambda' Z' R`` for ``R`` of shape ``(n, k)``."""
        parts = []
        for ZT, term, T in zip(self.ZT, self.design.terms, self.f.Ts, strict=True):
            zr = np.asarray(ZT @ R).reshape(term.n_levels, term.p, -1)
            parts.append(np.einsum("ji,ljk->lik", T, zr).reshape(term.q, -1))
        return np.concatenate(parts)

    def _solve_Z(self, rhs: np.ndarray) -> np.ndarray:
        """``L_Z^{-T} L_Z^{-1} rhs`` with the whole factor ``L_R`` (``L_Z`` is its leading
        block): forward substitution on ``[rhs; 0]`` gives ``L_Z^{-1} rhs`` in the first
        ``q`` rows whatever follows, and back substitution on ``[z; 0]`` has zeros in the
        last rows, so its first ``q`` rows solve with ``L_Z'`` alone."""
        qr, Lt = self.qr, self.L_Rt  # finite: the factor the optimizer evaluated
        pad = np.zeros((Lt.shape[0], rhs.shape[1]))
        pad[:qr] = rhs
        z = sla.solve_triangular(Lt, pad, trans="T", check_finite=False)
        z[qr:] = 0.0
        return sla.solve_triangular(Lt, z, check_finite=False)[:qr]

    def solve(self, G: np.ndarray) -> np.ndarray:
        """``M^{-1} G`` by the blocked factor: block 1 level by level, the rest dense."""
        s, f, qr = self.s, self.f, self.qr
        l1, p1, k = s.l1, s.p1, G.shape[1]
        q1 = l1 * p1
        L1, L1t = f.L1, np.swapaxes(f.L1, 1, 2)

        def m1_solve(v: np.ndarray) -> np.ndarray:
            w = np.linalg.solve(L1, v.reshape(l1, p1, k))
            return np.linalg.solve(L1t, w).reshape(q1, k)

        y1 = m1_solve(G[:q1])
        if not qr:
            return y1
        A1Z = self.A1Z

        def lam1(v: np.ndarray, trans: bool) -> np.ndarray:
            T = f.Ts[0].T if trans else f.Ts[0]
            return np.einsum("ij,ljk->lik", T, v.reshape(l1, p1, k)).reshape(q1, k)

        rhs = G[q1:] - self.lam_t @ (self.A1Zt @ lam1(y1, False))  # g_R - C y1
        x_R = self._solve_Z(rhs)
        x1 = m1_solve(G[:q1] - lam1(A1Z @ (f.lam_rest @ x_R), True))  # M1^{-1}(g1 - C'x_R)
        return np.concatenate([x1, x_R])


def stable_estimates(objective: ProfiledObjective, theta: np.ndarray, L1: np.ndarray,
                     L_R: np.ndarray, reml: bool) -> tuple[Estimates, float]:
    """Estimates and lme4's criterion at theta from the residuals (module docstring).

    Parameters
    ----------
    objective : ProfiledObjective
        The model.
    theta : ndarray
        Covariance parameters (the optimum).
    L1, L_R : ndarray
        The blocked factor at theta (from ``objective.evaluate``).
    reml : bool
        REML criterion and ``n - p`` divisor (True) or ML (False).

    Returns
    -------
    estimates : Estimates
    criterion : float
        The REML criterion or ML deviance at theta.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective import compile_objective
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> obj = compile_objective(d)
    >>> th = np.array([0.96676, 0.01516, 0.23091])
    >>> est, crit = stable_estimates(obj, th, *obj.evaluate(th, True)[2:], reml=True)
    >>> round(crit, 4), est.beta.round(3).tolist()
    (1743.6283, [251.405, 10.467])
    """
    if suits_dense(objective):  # a small model: one dense QR (hierlm.estimate.stable_dense)
        return dense_estimates(objective, theta, L1, L_R, reml)
    g = objective.gram
    n, p, qr = g.n, g.p, g.q_rest
    theta = np.asarray(theta, dtype=float)
    pls = _PLS(objective, theta, L1, L_R)
    wd, f, sampler = pls.design, pls.f, pls.s
    B = np.column_stack([wd.X, wd.y - wd.X @ g.beta_offset])
    U = pls.solve(pls.adjoint(B))
    for _ in range(MAX_REFINE):
        dU = pls.solve(pls.adjoint(B - pls.apply(U)) - U)
        U = U + dU
        if np.max(np.abs(dU), initial=0.0) <= 4 * np.finfo(float).eps * max(
                np.max(np.abs(U), initial=0.0), 1.0):
            break
    W = np.vstack([B - pls.apply(U), -U])
    R = np.linalg.qr(W, mode="r")
    R_XX, r_Xy, r_yy = R[:p, :p], R[:p, p], float(R[p, p])
    dbeta = sla.solve_triangular(R_XX, r_Xy) if p else np.zeros(0)
    u = U[:, p] - U[:, :p] @ dbeta
    r2 = r_yy**2
    nr = n - p if reml else n
    sigma2 = r2 / nr
    logdet_Z = (2.0 * np.log(np.diagonal(L1, axis1=1, axis2=2)).sum()
                + 2.0 * np.log(np.diag(L_R)[:qr]).sum())
    logdet_X = 2.0 * np.log(np.abs(np.diag(R_XX))).sum() if p else 0.0
    crit = float(logdet_Z + (logdet_X if reml else 0.0)
                 + nr * (1.0 + np.log(2.0 * np.pi * r2 / nr))) - g.sum_log_w
    R_inv = sla.solve_triangular(R_XX, np.eye(p)) if p else np.zeros((0, 0))
    vcov = sigma2 * (R_inv @ R_inv.T)
    design = objective.design
    cv = deferred(lambda: conditional_variances(design, g, f.Ts, L1, L_R[:qr, :qr],
                                                f.lam_rest, sigma2))  # read by ranef() only
    est = Estimates(beta=dbeta + g.beta_offset, sigma=float(np.sqrt(sigma2)), vcov=vcov,
                    b=sampler.to_b(f, u), cond_var=cv)
    return est, crit
