"""The one place a :class:`~hierlm.estimate.record.FitRecord` is assembled.

Every estimator (REML/ML in :mod:`hierlm.estimate.frequentist` and
:mod:`hierlm.estimate.residual_fit`, NUTS in :mod:`hierlm.estimate.nuts`) hands its
point estimates here.  What they share is computed once, with lme4's conventions::

    logLik = -objective / 2,   AIC = objective + 2 k,   BIC = objective + k log n,
    k = p + len(psi) + 1 + len(residual_parameters),

``psi`` the covariance structures' parameters (theta itself for unstructured terms)
and ``residual_parameters`` those of ``residual=`` / ``sigma=`` (nlme counts them the
same way).  ``fixef_se`` is the square root of ``vcov``'s diagonal: standard errors for
REML/ML, posterior SDs for NUTS.

``fixef``, ``fixef_se`` and ``vcov`` (sharing one Index) are built when first read
(:mod:`hierlm.estimate.lazy`), as are the covariance parameters
(:func:`hierlm.estimate.frequentist.result_from_estimates`) and the empty residual
parameters: pandas takes 0.05-0.4 ms for each, and a loop of fits that reads only
``objective`` or ``theta`` never needs them.  Building a REML record of sleepstudy
went from 1.10 to 0.31 ms CPU time (penicillin 1.14 to 0.34 ms; medians of 150 fits,
2 cores at load 6-7, the old and new code one after the other).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hierlm.covariance.design import DesignCovariance
from hierlm.design.terms import ModelDesign
from hierlm.estimate.lazy import Deferred, deferred
from hierlm.estimate.record import FitRecord


def n_parameters(design: ModelDesign, n_residual: int = 0) -> int:
    """``k`` of AIC and BIC (module docstring).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> n_parameters(d), n_parameters(d, n_residual=1)
    (6, 7)
    """
    return design.p + DesignCovariance.of(design).n_psi + 1 + n_residual


def build_record(design: ModelDesign, *, method: str, beta: np.ndarray, vcov: np.ndarray,
                 sigma: float, theta: np.ndarray, varcorr: Any, ranef_table: Any,
                 fitted_values: Any, objective: float, is_singular: bool,
                 residual_parameters: pd.Series | None = None,
                 **fields: Any) -> FitRecord:
    """The fit record of a design's estimates (module docstring).

    Parameters
    ----------
    design : ModelDesign
        The fitted design.
    method : str
        The estimator's kind's label (:mod:`hierlm.estimate.kind`): ``"REML"``, ``"ML"``,
        ``"NUTS"``, ...
    beta, vcov : ndarray
        Fixed effects and their covariance (NUTS: posterior mean and covariance).
    sigma : float
        Residual SD (of the reference level under ``sigma=``).
    theta : ndarray
        lme4's theta (the template of the covariance estimates).
    varcorr, ranef_table, fitted_values
        The values, or deferred functions of :mod:`hierlm.estimate.lazy`.
    objective : float
        The criterion (REML criterion or deviance) at the estimates.
    is_singular : bool
        lme4's ``isSingular``.
    residual_parameters : pandas.Series, optional
        The ``residual=`` / ``sigma=`` parameters (counted in ``k``).
    **fields
        The record's other fields (``converged``, ``n_evals``, ``optimizer``, ...).

    Returns
    -------
    FitRecord

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (1 | Subject)", hierlm.load_sleepstudy())
    >>> rec = build_record(d, method="ML", beta=np.array([251.4, 10.5]), vcov=np.eye(2),
    ...                    sigma=31.0, theta=np.array([1.2]), varcorr=None, ranef_table=None,
    ...                    fitted_values=None, objective=1802.0, is_singular=False,
    ...                    converged=True, n_evals=0)
    >>> rec.aic, rec.fixef_se.tolist()
    (1810.0, [1.0, 1.0])
    """
    names = list(design.fixef_names)
    vcov = np.array(vcov, dtype=float).reshape(len(names), len(names))
    n_res = 0 if residual_parameters is None else len(residual_parameters)
    if residual_parameters is not None:
        fields["residual_parameters"] = residual_parameters
    k = n_parameters(design, n_res)
    groups: dict[str, int] = {}
    for t in design.terms:
        groups.setdefault(t.group, t.n_levels)
    beta = np.array(beta, dtype=float)
    index = Deferred(lambda: pd.Index(names))  # one Index for the three tables

    return FitRecord(
        formula=design.formula, method=method,
        fixef=deferred(lambda: pd.Series(beta, index=index.get(), name="fixef")),
        fixef_se=deferred(lambda: pd.Series(np.sqrt(np.diag(vcov)), index=index.get(),
                                            name="fixef_se")),
        vcov=deferred(lambda: pd.DataFrame(vcov, index=index.get(), columns=index.get())),
        sigma=float(sigma), theta=np.asarray(theta, dtype=float), varcorr=varcorr,
        loglik=-objective / 2, aic=objective + 2 * k, bic=objective + k * np.log(design.nobs),
        objective=objective, nobs=design.nobs, n_dropped=design.n_dropped,
        is_singular=is_singular, ranef_table=ranef_table, y=design.y.copy(),
        fitted_values=fitted_values, groups=groups, **fields)
