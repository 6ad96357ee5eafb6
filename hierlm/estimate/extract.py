"""Estimates read off the blocked Cholesky factor at theta-hat.

With ``L_R`` the factor of the Schur complement (rows ``[Z_rest, X, y]``)::

    sigma^2 = r_yy^2 / (n - reml * p)
    L_XX' (beta - a) = l_yX'                             (beta-hat; a = beta_offset)
    L_ZZ' u_R = l_yZ' - L_XZ' beta                       (rest of the spherical modes)
    u_1,k = -M_k^{-1} T1' (A_1R [Lambda_R u_R; beta; -1])_k    (block 1, level by level)
    b = Lambda u                                         (lme4's conditional modes)
    vcov(beta) = sigma^2 (L_XX L_XX')^{-1}
    Var(b | y) = sigma^2 Lambda (L_Z L_Z')^{-1} Lambda'  (diagonal blocks per level)

The conditional variances come from :mod:`hierlm.estimate.cond_var`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from hierlm.estimate.cond_var import conditional_variances
from hierlm.estimate.conditional import ConditionalSampler
from hierlm.estimate.lazy import lazy_fields
from hierlm.objective.profiled import ProfiledObjective


@dataclass(frozen=True, eq=False)
class Estimates:
    """Point estimates of a fitted model.

    ``b[i]`` has shape ``(levels, p_i)``; ``cond_var[i]`` has shape ``(levels, p_i, p_i)``.
    """

    beta: np.ndarray
    sigma: float
    vcov: np.ndarray
    b: list[np.ndarray]
    cond_var: list[np.ndarray]


lazy_fields(Estimates, "cond_var")  # computed on first read where it is deferred


def extract(objective: ProfiledObjective, theta: np.ndarray, L1: np.ndarray,
            L_R: np.ndarray, reml: bool, cond_var: bool = True) -> Estimates:
    """Compute beta, sigma, vcov, conditional modes and variances at theta.

    Parameters
    ----------
    objective : ProfiledObjective
        The model (design and Gram blocks).
    theta : ndarray
        Covariance parameters at which ``L1`` and ``L_R`` were computed.
    L1 : ndarray, shape (l1, p1, p1)
        Cholesky factors of the block-1 diagonal blocks ``M_k``.
    L_R : ndarray, shape (m, m)
        Cholesky factor of the Schur complement.
    reml : bool
        Divide the penalized RSS by ``n - p`` (REML) or ``n`` (ML).
    cond_var : bool
        Also compute the conditional variances of the random effects.

    Returns
    -------
    Estimates
    """
    design, gram = objective.design, objective.gram
    n, p, qr = gram.n, gram.p, gram.q_rest
    r2 = L_R[-1, -1] ** 2
    sigma2 = r2 / (n - p if reml else n)
    L_XX = L_R[qr:qr + p, qr:qr + p]
    l_yX = L_R[-1, qr:qr + p]
    beta = sla.solve_triangular(L_XX, l_yX, lower=True, trans="T") if p else np.zeros(0)
    beta = beta + gram.beta_offset  # the Gram blocks hold y - X beta_offset
    # Conditional modes: the conditional mean of u at beta-hat (z = 0), b = Lambda u.
    sampler = ConditionalSampler(objective)
    f = sampler.factor_from(theta, L1, L_R)
    b_list = sampler.to_b(f, sampler.draw(f, beta, 0.0, np.zeros(design.q)))

    L_XXinv = sla.solve_triangular(L_XX, np.eye(p), lower=True) if p else np.zeros((0, 0))
    vcov = sigma2 * (L_XXinv.T @ L_XXinv)

    cv: list[np.ndarray] = []
    if cond_var:
        cv = conditional_variances(design, gram, f.Ts, L1, L_R[:qr, :qr], f.lam_rest, sigma2)
    return Estimates(beta=beta, sigma=float(np.sqrt(sigma2)), vcov=vcov, b=b_list, cond_var=cv)
