"""Satterthwaite's df for fits with a residual structure: the residual parameters are
variance parameters.

The variance parameters are ``psi = (theta, sigma, rho, delta)`` (``rho`` the
correlation of ``residual=``, ``delta`` the log SD ratios of ``sigma=``).  The
unprofiled deviance is the whitened model's (:mod:`hierlm.objective.residual_gram`)::

    d(psi) = d_iid(theta, sigma; B(rho, delta)[Z X y]) + log|R0(rho, delta)|

and ``vcov(beta) = C(psi)`` is the whitened model's.  In ``(theta, sigma)`` the
Hessian, gradient and Jacobian of ``C`` are the exact ones of
:func:`hierlm.inference.deviance.varpar_info` on the whitened model; the rows and
columns of the residual parameters are central differences (step :data:`STEP`):
``d^2 d / d(theta, sigma) d rho`` from the exact gradients at ``rho +- h``,
``d^2 d / d rho^2`` from deviances, ``dC / d rho`` from ``C`` at ``rho +- h``.
lmerTest's formula then applies unchanged (:mod:`hierlm.inference.satterthwaite`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hierlm.errors import MethodError
from hierlm.inference.deviance import VarparInfo, _info, varpar_info
from hierlm.objective.profiled import compile_objective
from hierlm.objective.residual_gram import whitened_design

#: Central-difference step in the residual parameters (natural scale).
STEP = 1e-4


def residual_varpar_info(res: Any) -> VarparInfo:
    """:class:`~hierlm.inference.deviance.VarparInfo` at the estimate of a fit with
    ``residual=`` / ``sigma=`` (module docstring).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.load_sleepstudy()
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", d, residual="ar1(Days | Subject)")
    >>> info = residual_varpar_info(res)
    >>> info.hessian.shape, info.jacobian.shape
    ((3, 3), (3, 2, 2))
    """
    model = getattr(res, "model", None)
    rd = None if model is None else getattr(model, "residual", None)
    if model is None or rd is None:
        raise MethodError("Satterthwaite's df of a fit with residual= / sigma= need its "
                          "model (FitResult.model), which a result read from disk lacks")
    design, reml = model.design, res.is_reml
    theta, sigma = np.asarray(res.theta, dtype=float), float(res.sigma)
    rpar = res.residual_parameters.to_numpy(dtype=float)
    n_corr = rd.n_corr

    def at(r: np.ndarray) -> tuple[VarparInfo, float]:
        rho = float(r[0]) if n_corr else 0.0
        wd, logdet = whitened_design(design, rd, rho, r[n_corr:])
        return varpar_info(compile_objective(wd), theta, sigma, reml), logdet

    center, logdet0 = at(rpar)
    k0, kr = len(center.psi), len(rpar)
    k = k0 + kr
    H = np.zeros((k, k))
    H[:k0, :k0] = center.hessian
    p = center.vcov_beta.shape[0]
    J = np.zeros((k, p, p))
    J[:k0] = center.jacobian
    dev0 = center.deviance + logdet0
    grad = np.zeros(k)
    grad[:k0] = center.gradient

    def dev(r: np.ndarray) -> float:
        info, logdet = at(r)
        return info.deviance + logdet

    for i in range(kr):
        e = np.zeros(kr)
        e[i] = STEP
        (plus, lp), (minus, lm) = at(rpar + e), at(rpar - e)
        H[:k0, k0 + i] = H[k0 + i, :k0] = (plus.gradient - minus.gradient) / (2 * STEP)
        J[k0 + i] = (plus.vcov_beta - minus.vcov_beta) / (2 * STEP)
        d_plus, d_minus = plus.deviance + lp, minus.deviance + lm
        grad[k0 + i] = (d_plus - d_minus) / (2 * STEP)
        H[k0 + i, k0 + i] = (d_plus - 2 * dev0 + d_minus) / STEP**2
        for j in range(i):
            f = np.zeros(kr)
            f[j] = STEP
            H[k0 + i, k0 + j] = H[k0 + j, k0 + i] = (
                dev(rpar + e + f) - dev(rpar + e - f) - dev(rpar - e + f)
                + dev(rpar - e - f)) / (4 * STEP**2)
    psi = np.concatenate([center.psi, rpar])
    return _info(psi, dev0, grad, H, center.vcov_beta, J, reml)
