"""REML / ML fit: optimize theta, read the estimates off the factor, build the result.

lme4's conventions (logLik, AIC and BIC with ``k = p + len(psi) + 1``, ``psi`` the
covariance structures' parameters, theta itself for unstructured terms) are applied by
:mod:`hierlm.estimate.assemble`; a fit is singular when a template diagonal is below
1e-4.  A model with a structured term is fitted over psi
(:mod:`hierlm.estimate.optimize_structured`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.identifiability import unidentified_terms
from hierlm.covariance.layout import templates
from hierlm.design.terms import ModelDesign
from hierlm.errors import ConvergenceWarning, IdentifiabilityWarning, SingularFitWarning, warn
from hierlm.estimate.assemble import build_record
from hierlm.estimate.degenerate import check_exact_fit
from hierlm.estimate.extract import Estimates, extract
from hierlm.estimate.kind import ML, REML
from hierlm.estimate.lazy import deferred
from hierlm.estimate.optimize import optimize_theta
from hierlm.estimate.optimize_structured import optimize_psi
from hierlm.estimate.record import FitRecord
from hierlm.estimate.stable_pls import stable_estimates
from hierlm.estimate.stable_polish import NOISE_TOL, gram_noise, polish
from hierlm.objective.profiled import ProfiledObjective
from hierlm.objective.varcorr import varcorr_table

SINGULAR_TOL = 1e-4
#: A residual SD below this fraction of the response's SD triggers the exact-fit check.
EXACT_FIT_SIGMA = 1e-4
#: A structured fit that stops with sigma below this fraction of sd(y) is reported as
#: stopping near the boundary sigma = 0.
SIGMA_BOUNDARY = 1e-3


def is_singular(design: ModelDesign, theta: np.ndarray, tol: float = SINGULAR_TOL) -> bool:
    """lme4's ``isSingular`` rule, made scale-free: a template diagonal entry below ``tol``.

    lme4 applies the rule to theta itself, whose entries scale like ``1 / x`` for a
    slope on ``x``: a slope on ``x ~ 1e5`` would be flagged for no reason.  hierlm
    applies it to theta in units of each column's root mean square
    (``theta / theta_scale``, see :func:`hierlm.estimate.optimize.theta_scale`);
    for intercepts and unit-scale columns that is lme4's rule.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> is_singular(d, np.array([1.0, 0.3, 0.0])), is_singular(d, np.array([1.0, 0.3, 0.2]))
    (True, False)
    """
    cov = DesignCovariance.of(design)
    # the template diagonals (theta_lower's zeros) and theta_scale's factors, as the
    # design's covariance objects keep them
    scaled = np.asarray(theta) / cov.theta_scale()
    # (the array's own ``any``: np.any's dispatch cost several us between fits)
    return bool((scaled[cov.diagonal_index()] < tol).any())


def ranef_frame(design: ModelDesign, b: list[np.ndarray], sd: list[np.ndarray]) -> pd.DataFrame:
    """Tidy table ``group, level, term, value, cond_sd`` (term-major within a group, as lme4)."""
    group, level, term_name, value, cond_sd = [], [], [], [], []
    for term, bk, sk in zip(design.terms, b, sd, strict=True):
        nl = term.n_levels
        for j, name in enumerate(term.coef_names):
            group.append(np.full(nl, term.group, dtype=object))
            level.append(pd.Series(term.values))
            term_name.append(np.full(nl, name, dtype=object))
            value.append(bk[:, j])
            cond_sd.append(sk[:, j])
    # the levels keep the grouping columns' dtype where the groups share one
    levels = pd.concat(level, ignore_index=True)
    return pd.DataFrame({"group": np.concatenate(group), "level": levels,
                         "term": np.concatenate(term_name), "value": np.concatenate(value),
                         "cond_sd": np.concatenate(cond_sd)})


def fitted_values(design: ModelDesign, beta: np.ndarray, b: list[np.ndarray]) -> np.ndarray:
    """``offset + X beta + Z b`` without forming ``Z``."""
    out = design.X @ beta
    if design.offset is not None:
        out = out + design.offset
    for term, bk in zip(design.terms, b, strict=True):
        out = out + np.einsum("ij,ij->i", term.X, bk[term.codes])
    return out


def result_from_estimates(design: ModelDesign, est: Estimates, theta: np.ndarray,
                          objective: float, method: str, psi: np.ndarray | None = None,
                          singular: bool | None = None, **fields: Any) -> FitRecord:
    """The record of REML/ML point estimates (through
    :func:`hierlm.estimate.assemble.build_record`, as every method's).

    ``psi`` holds the structures' parameters of a structured model (None: theta);
    ``singular``, :func:`is_singular` at theta where the caller has it.
    The variance components, the random-effects table, the fitted values and the
    covariance parameters are computed when first read (:mod:`hierlm.estimate.lazy`);
    their numbers are the same.
    """
    cov = DesignCovariance.of(design)
    psi_or_theta = np.array(theta if psi is None else psi, dtype=float)

    def varcorr() -> pd.DataFrame:
        covs = [est.sigma**2 * T @ T.T for T in templates(design, theta)]
        return varcorr_table(design, covs, est.sigma)

    def ranef() -> pd.DataFrame:
        sd = [np.sqrt(np.clip(np.diagonal(v, axis1=1, axis2=2), 0.0, None))
              for v in est.cond_var]
        return ranef_frame(design, est.b, sd)

    return build_record(
        design, method=method, beta=est.beta, vcov=est.vcov, sigma=est.sigma, theta=theta,
        varcorr=deferred(varcorr), ranef_table=deferred(ranef),
        fitted_values=deferred(lambda: fitted_values(design, est.beta, est.b)),
        objective=objective,
        is_singular=is_singular(design, theta) if singular is None else singular,
        covariance_parameters=deferred(lambda: cov.natural(psi_or_theta, est.sigma)),
        **fields)


def fit_profiled(objective: ProfiledObjective, reml: bool, start: np.ndarray | None = None,
                 options: dict[str, Any] | None = None) -> FitRecord:
    """Fit by REML or ML and return the result (stage 3 + 4).

    Parameters
    ----------
    objective : ProfiledObjective
        The compiled objective of the model.
    reml : bool
        REML (True) or ML (False).
    start : ndarray, optional
        Starting theta.
    options : dict, optional
        Optimizer options (see :func:`hierlm.estimate.optimize.optimize_theta`).

    Returns
    -------
    FitResult

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective import compile_objective
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> round(fit_profiled(compile_objective(d), reml=True).objective, 4)
    1743.6283
    """
    design = objective.design
    for message in unidentified_terms(design):
        warn(message, IdentifiabilityWarning)
    structured = DesignCovariance.of(design).structured
    if structured:
        opt = optimize_psi(objective, reml, start=start, options=options)
    else:
        opt = optimize_theta(objective, reml, start=start, options=options)
    L1, L_R = opt.factor if opt.factor is not None else objective.evaluate(opt.theta, reml)[2:]
    if len(design.y) == design.nobs:
        # the criterion and estimates from residuals, not the Gram matrix (stable_pls)
        est, criterion = stable_estimates(objective, opt.theta, L1, L_R, reml)
        # (sd(y) <= max |y - mean| <= ptp(y): sigma at or above 1e-4 ptp(y) needs no sd)
        y = design.y  # (np.ptp's own max - min, without its wrapper)
        if (not structured and est.sigma < EXACT_FIT_SIGMA * float(y.max() - y.min())
                and est.sigma < EXACT_FIT_SIGMA * float(np.std(design.y))):
            # (a structured Sigma stays bounded as sigma -> 0: sigma = 0 is a boundary
            # estimate there, e.g. ar1 with one observation per cell and no nugget)
            check_exact_fit(design)  # sigma -> 0 without bound: no estimate
        if not structured and gram_noise(objective, L_R, reml) > NOISE_TOL:
            # a nearly exact fit: the optimizer's criterion is too noisy to place theta
            polished = polish(objective, opt, reml, criterion,
                              lambda th: stable_estimates(
                                  objective, th, *objective.evaluate(th, reml)[2:], reml))
            if polished is not None:
                opt, (est, criterion) = polished
    else:  # rows read in chunks and not kept: the Gram blocks are all there is
        est, criterion = extract(objective, opt.theta, L1, L_R, reml), opt.objective
    messages = []
    if not opt.converged and structured and (
            est.sigma < SIGMA_BOUNDARY * float(np.std(design.y))):
        # theta is relative to sigma, so sigma = 0 lies at infinity: the search stops
        # near it (tests/estimate/test_sigma_boundary.py: within 1e-6 of the criterion
        # and 2e-3 of the parameters at sigma = 0, by a dense fit without a residual)
        msg = (f"optimizer stopped near the boundary sigma = 0 (sigma = {est.sigma:.2g}): "
               f"the structured term's variances take all of the residual variance, which "
               f"the criterion reaches only in the limit; the estimates are close to that "
               f"limit, but a model with both is not identified well by these data (one "
               f"observation per group and column?): use replicated observations or a "
               f"structure with fewer variances (largest gradient "
               f"{np.max(np.abs(opt.gradient), initial=0.0):.2g})")
        warn(msg, ConvergenceWarning)
        messages.append(msg)
    elif not opt.converged:
        msg = (f"optimizer did not converge: largest gradient "
               f"{np.max(np.abs(opt.gradient), initial=0.0):.2g} ({opt.message}); try rescaling "
               f"predictors, "
               f"simplifying the random effects, or options={{'maxiter': ...}}")
        warn(msg, ConvergenceWarning)
        messages.append(msg)
    singular = is_singular(design, opt.theta)
    if singular:
        warn("boundary (singular) fit: a variance component is estimated as zero or "
             "a correlation as +/-1; see FitResult.varcorr", SingularFitWarning)
    optimizer = {"method": opt.method, "message": opt.message,
                 "gradient": opt.gradient.tolist(),
                 "phases": [list(ph) for ph in opt.phases],
                 "trace": [list(th) + [f] for th, f in opt.trace]}
    return result_from_estimates(
        design, est, opt.theta, criterion, (REML if reml else ML).label, psi=opt.psi,
        singular=singular, converged=opt.converged, n_evals=opt.n_evals, optimizer=optimizer,
        messages=tuple(messages))
