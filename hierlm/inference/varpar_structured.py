"""The variance parameters of a structured model: ``(psi, sigma)`` instead of ``(theta, sigma)``.

A structured covariance restricts theta to ``theta(psi)``
(:class:`hierlm.covariance.design.DesignCovariance`); Satterthwaite's and Kenward-Roger's
variance parameters are then ``(psi, sigma)``.  From the deviance's gradient ``g``,
Hessian ``H`` and vcov(beta)'s Jacobian ``dC/dtheta`` in ``(theta, sigma)`` and the exact
``J = d theta / d psi``::

    grad_psi d   = J' g_theta
    H_psi,psi    = J' H_theta,theta J + sum_i (g_theta)_i d^2 theta_i / d psi^2
    H_psi,sigma  = J' H_theta,sigma
    dC/dpsi_m    = sum_i J_im dC/dtheta_i

The second-order term of ``H_psi,psi`` does not vanish at a structured optimum: there
only ``J' g_theta`` is zero, not ``g_theta``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hierlm.covariance.design import DesignCovariance


def to_psi(design: Any, theta: np.ndarray, grad: np.ndarray, H: np.ndarray,
           J: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(psi with sigma's slot, gradient, Hessian, dC/dpsi)`` from the theta versions.

    ``grad``, ``H`` and ``J`` are in ``(theta, sigma)`` order; the result is in
    ``(psi, sigma)`` order, the first array holding psi only.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> g, H, J = np.ones(4), np.eye(4), np.zeros((4, 2, 2))
    >>> psi, g2, H2, J2 = to_psi(res.model.design, res.theta, g, H, J)
    >>> bool(np.allclose(psi, res.theta)), bool(np.allclose(H2, H))
    (True, True)
    """
    cov = DesignCovariance.of(design)
    psi = cov.psi_from_theta(theta)
    Jt = cov.jacobian(psi)
    k = Jt.shape[0]
    g_t = grad[:k]
    m = cov.n_psi
    H2 = np.zeros((m + 1, m + 1))
    H2[:m, :m] = cov.hessian_psi(psi, g_t, H[:k, :k])
    H2[:m, m] = H2[m, :m] = Jt.T @ H[:k, k]
    H2[m, m] = H[k, k]
    g2 = np.append(Jt.T @ g_t, grad[k])
    J2 = np.concatenate([np.einsum("im,iab->mab", Jt, J[:k]), J[k:]])
    return psi, g2, H2, J2


def gamma_jacobian(design: Any, theta: np.ndarray, sigma: float) -> np.ndarray:
    """``d gamma / d (psi, sigma^2)`` for Kenward-Roger's linear parameters ``gamma``.

    pbkrtest's ``gamma`` are the entries of each term's ``Sigma_i = sigma^2 T T'`` (lower
    triangle by column), then ``sigma^2``.  A structured model's variance parameters are
    ``(psi, sigma^2)``; with ``T`` depending on psi,
    ``d Sigma_i / d psi_m = sigma^2 (T_m T' + T T_m')`` (``T_m = d T / d psi_m``) and
    ``d Sigma_i / d sigma^2 = T T'``.  The expected information of ``(psi, sigma^2)`` is
    then ``J' I_gamma J`` (Kenward-Roger's second-derivative term, which pbkrtest omits
    for its linear ``gamma``, is omitted here too).

    Examples
    --------
    >>> import hierlm
    >>> data = hierlm.load_sleepstudy().query("Days < 4").astype({"Days": str})
    >>> res = hierlm.fit("Reaction ~ Days + cs(0 + Days | Subject, hom=True)", data)
    >>> gamma_jacobian(res.model.design, res.theta, res.sigma).shape
    (11, 3)
    """
    cov = DesignCovariance.of(design)
    psi = cov.psi_from_theta(np.asarray(theta, dtype=float))
    Jt = cov.jacobian(psi)
    s2 = float(sigma) ** 2
    n_gamma = cov.n_theta + 1
    out = np.zeros((n_gamma, cov.n_psi + 1))
    c0 = 0
    for term, part, T in zip(cov.terms, cov.theta_slices(), cov.templates(theta), strict=True):
        S = T @ T.T
        for m in range(term.n_psi):
            dT = term.unpack(Jt[part, c0 + m])
            dS = dT @ T.T + T @ dT.T
            out[part, c0 + m] = s2 * term.pack(dS)
        out[part, -1] = term.pack(S)
        c0 += term.n_psi
    out[-1, -1] = 1.0
    return out
