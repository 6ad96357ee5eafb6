"""``ranova`` on fits with a residual structure: the reduced models keep it.

Removing or reducing a random term refits the model with the same ``residual=`` /
``sigma=`` (nlme's ``anova(reduced, full)`` of two ``lme`` fits).  When no random term
is left the reduced model is nlme's ``gls``: ``y = X beta + e`` with ``Var(e) = sigma^2
R0(rho, delta)``.  With ``B' B = R0^-1`` (the whitening of
:mod:`hierlm.objective.residual_gram`) it is an ordinary linear model in ``B y, B X``,
so, with ``N = n - p`` (REML) or ``n`` (ML), ``r`` the whitened least-squares residuals
and ``R_X`` the R factor of ``B X``::

    -2 l(rho, delta) = N (log(2 pi) + 1 - log N + log r'r) + log|R0|
                       [+ 2 sum log|diag R_X|  (REML)]

beta and sigma profiled out; ``(rho, delta)`` are maximized numerically from
:data:`hierlm.estimate.residual_fit.RHO_STARTS`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.optimize

from hierlm.design.residual_design import ResidualDesign
from hierlm.design.terms import ModelDesign
from hierlm.estimate.residual_fit import RHO_STARTS, to_natural, to_unconstrained
from hierlm.objective.residual_gram import relative_sd, whiten


def _criterion(design: ModelDesign, rd: ResidualDesign, z: np.ndarray, reml: bool) -> float:
    y = design.y if design.offset is None else design.y - design.offset
    rho, delta = to_natural(rd, z)
    s = relative_sd(rd, delta, design.weights)
    BM, logdet = whiten(rd, rho, s, np.column_stack([y, design.X]))
    if not np.all(np.isfinite(BM)) or not np.isfinite(logdet):
        return np.inf
    by, BX = BM[:, 0], BM[:, 1:]
    n, p = BX.shape
    Q, R = np.linalg.qr(BX) if p else (np.zeros((n, 0)), np.zeros((0, 0)))
    r = by - Q @ (Q.T @ by)
    N = n - p if reml else n
    out = N * (np.log(2 * np.pi) + 1 - np.log(N) + np.log(float(r @ r))) + logdet
    if reml and p:
        out += 2.0 * float(np.sum(np.log(np.abs(np.diag(R)))))
    return float(out)


def gls_loglik(design: ModelDesign, rd: ResidualDesign, reml: bool) -> float:
    """The maximized (REML or ML) log-likelihood of nlme's ``gls``: the fixed effects
    of ``design`` (its random terms ignored) with the residual structure ``rd``.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.design.residual_design import build_residual
    >>> d = hierlm.load_sleepstudy()
    >>> des = hierlm.build_design("Reaction ~ Days + (1 | Subject)", d)
    >>> rd = build_residual("ar1(Days | Subject)", None, d, des)
    >>> bool(gls_loglik(des, rd, reml=False) > hierlm.fit(
    ...     "Reaction ~ Days + (1 | Subject)", d, method="ml").loglik)
    True
    """
    k = rd.n_params
    if k == 0:
        return -0.5 * _criterion(design, rd, np.zeros(0), reml)
    delta0 = np.zeros(rd.V.shape[1])
    rhos = RHO_STARTS if rd.spec is not None and rd.spec.kind != "car1" else (
        RHO_STARTS[1:] if rd.spec is not None else (0.0,))
    starts = [to_unconstrained(rd, rho, delta0) if rd.spec is not None else delta0
              for rho in rhos]
    vals = [_criterion(design, rd, z, reml) for z in starts]
    z0 = starts[int(np.argmin(vals))]
    fit = scipy.optimize.minimize(lambda z: _criterion(design, rd, z, reml), z0,
                                  method="Nelder-Mead",
                                  options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
    fit = scipy.optimize.minimize(lambda z: _criterion(design, rd, z, reml), fit.x,
                                  method="BFGS", options={"gtol": 1e-8})
    return -0.5 * float(fit.fun)


def refit_reduced(model: Any, design: ModelDesign, reml: bool) -> Any:
    """Refit ``design`` (the model's with fewer random terms) with the model's residual
    structure, by the result's own Model class (this layer lies below hierlm.model)."""
    return type(model)._from_design(design, residual=model.residual).fit(
        "reml" if reml else "ml")
