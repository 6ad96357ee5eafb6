"""Intraclass correlation and Nakagawa's R^2 of a linear mixed model (R's performance).

As ``insight::get_variance`` for a Gaussian lmer fit:

* fixed-effects variance ``s_f^2 = var(X beta-hat)`` over the fitting rows (``n - 1``
  denominator);
* random-effects variance, summed over the random terms whose grouping factor does not
  have one level per observation::

      s_r^2 = sum_k (1/n) sum_i z_ik' Sigma_k z_ik,        Sigma_k = sigma^2 T_k T_k',

  the mean of ``diag(Z_k Sigma_k Z_k')`` with ``z_ik`` the row of the *fixed-effects*
  matrix at the term's coefficient names (Johnson's 2014 extension of Nakagawa &
  Schielzeth to random slopes; a slope absent from the fixed part is left out, as
  insight does);
* residual variance ``s_e^2 = sigma^2``.

Then ``ICC_adjusted = s_r^2 / (s_r^2 + s_e^2)``, ``ICC_unadjusted = s_r^2 / (s_f^2 +
s_r^2 + s_e^2)``, ``R2_marginal = s_f^2 / (s_f^2 + s_r^2 + s_e^2)`` and
``R2_conditional = (s_f^2 + s_r^2) / (s_f^2 + s_r^2 + s_e^2)``.  Like performance, a
singular fit (a template diagonal below 1e-5) has no random-effects variance: the ICC
is NaN with a warning, the marginal R^2 is ``s_f^2 / (s_f^2 + s_e^2)`` and the conditional
R^2 NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hierlm.covariance.layout import templates
from hierlm.errors import MethodError, warn


def variance_components(res: Any) -> dict[str, float]:
    """``fixed``, ``random`` and ``residual`` variances (see the module docstring);
    ``random`` is NaN for a singular fit.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> {k: round(v, 1) for k, v in variance_components(res).items()}
    {'fixed': 909.0, 'random': 1698.1, 'residual': 654.9}
    """
    model = getattr(res, "model", None)
    if model is None:
        raise MethodError("ICC and R2 need the fitted model (FitResult.model), which a result "
                          "read from disk does not have; refit with hierlm.Model(...).fit()")
    design = model.design
    X = design.X
    names = list(design.fixef_names)
    if "(Intercept)" not in names:
        X = np.column_stack([np.ones(design.nobs), X])
        names = ["(Intercept)", *names]
    fixed = float(np.var(design.X @ res.fixef.to_numpy(), ddof=1))
    s2 = float(res.sigma) ** 2
    Ts = templates(design, res.theta)
    if any(np.min(np.abs(np.diag(T))) < 1e-5 for T in Ts):
        return {"fixed": fixed, "random": np.nan, "residual": s2}
    random = 0.0
    for t, T in zip(design.terms, Ts, strict=True):
        if t.n_levels == design.nobs:
            continue  # an observation-level term: insight counts it as dispersion
        keep = [j for j, c in enumerate(t.coef_names) if c in names]
        Sigma = s2 * (T @ T.T)[np.ix_(keep, keep)]
        Zk = X[:, [names.index(t.coef_names[j]) for j in keep]]
        random += float(np.sum((Zk @ Sigma) * Zk)) / design.nobs
    return {"fixed": fixed, "random": random, "residual": s2}


def icc(res: Any) -> pd.Series:
    """Adjusted and unadjusted ICC (``performance::icc``).

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> icc(res).round(3).to_dict()
    {'adjusted': 0.722, 'unadjusted': 0.521}
    """
    v = variance_components(res)
    if np.isnan(v["random"]):
        warn("the fit is singular (a variance component is zero): the ICC is undefined")
    total = v["fixed"] + v["random"] + v["residual"]
    return pd.Series({"adjusted": v["random"] / (v["random"] + v["residual"]),
                      "unadjusted": v["random"] / total}, name="icc")


def r2(res: Any) -> pd.Series:
    """Marginal and conditional R^2 (``performance::r2_nakagawa``).

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> r2(res).round(3).to_dict()
    {'marginal': 0.279, 'conditional': 0.799}
    """
    v = variance_components(res)
    if np.isnan(v["random"]):
        warn("the fit is singular (a variance component is zero): the marginal R2 leaves "
             "out the random effects and the conditional R2 is undefined")
        return pd.Series({"marginal": v["fixed"] / (v["fixed"] + v["residual"]),
                          "conditional": np.nan}, name="r2")
    total = v["fixed"] + v["random"] + v["residual"]
    return pd.Series({"marginal": v["fixed"] / total,
                      "conditional": (v["fixed"] + v["random"]) / total}, name="r2")
