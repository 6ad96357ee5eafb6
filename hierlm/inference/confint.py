"""Confidence intervals of all parameters: Wald, profile likelihood, bootstrap.

Rows are lme4's ``confint(fit, oldNames = FALSE)`` names: the sd/cor parameters and
``sigma`` (:func:`hierlm.covariance.parameters.parameter_names`), then the fixed effects.

* ``"wald"``: ``beta-hat -/+ z se`` for the fixed effects; NaN for the variance
  parameters, as lme4 gives (a Wald interval for an SD is a poor one).
* ``"profile"``: :mod:`hierlm.inference.profile`; for a fit with ``residual=`` /
  ``sigma=``, :mod:`hierlm.inference.residual_profiler` (the residual parameters'
  rows follow sigma's).
* ``"bootstrap"``: :mod:`hierlm.inference.bootstrap` (``n`` replicates, ``seed``,
  ``kind`` ``"percentile"`` or ``"shortest"``, ``progressbar``, ``n_jobs``); for a fit
  with ``residual=`` / ``sigma=``, :mod:`hierlm.inference.residual_bootstrap` (the
  residual parameters too; replicates refitted in this process).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.parameters import parameter_names
from hierlm.errors import MethodError

METHODS = ("profile", "wald", "bootstrap")


def wald_confint(res: Any, level: float = 0.95) -> pd.DataFrame:
    """Wald intervals of the fixed effects (NaN rows for the variance parameters).

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> wald_confint(res).loc["(Intercept)"].round(2).tolist()
    [238.03, 264.78]
    """
    z = float(scipy.stats.norm.ppf(0.5 + level / 2))
    est, se = res.fixef.to_numpy(), res.fixef_se.to_numpy()
    fixed = pd.DataFrame({"lower": est - z * se, "upper": est + z * se}, index=res.fixef.index)
    names = []
    if res.model is not None:
        cov = DesignCovariance.of(res.model.design)
        names = (cov.names() + ["sigma"] if cov.structured
                 else parameter_names(res.model.design))
    var = pd.DataFrame(np.nan, index=names, columns=["lower", "upper"])
    return pd.concat([var, fixed]) if names else fixed


def confint(res: Any, method: str = "profile", level: float = 0.95, **kwargs: Any
            ) -> pd.DataFrame:
    """Confidence intervals ``lower, upper`` by parameter (see the module docstring).

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> confint(res, "wald").index.tolist()[-2:]
    ['(Intercept)', 'Days']
    """
    key = method.lower() if isinstance(method, str) else method
    if key not in METHODS:
        raise MethodError(f"unknown confint method {method!r}; use one of {', '.join(METHODS)}")
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
        raise MethodError(f"level must be between 0 and 1, got {level!r}")
    if not res.is_likelihood_fit:
        raise MethodError(f"confint needs a REML or ML fit, not {res.method}")
    if key == "wald":
        if kwargs:
            raise MethodError(f"unexpected argument(s) for Wald intervals: {', '.join(kwargs)}")
        return wald_confint(res, level)
    if key == "profile" and len(getattr(res, "residual_parameters", ())):
        from hierlm.inference.residual_profiler import residual_confint

        if kwargs:
            raise MethodError(f"unexpected argument(s) for profile intervals: "
                              f"{', '.join(kwargs)}")
        return residual_confint(res, level)
    if key == "profile":
        from hierlm.inference.profile import profile_confint

        if kwargs:
            raise MethodError(f"unexpected argument(s) for profile intervals: "
                              f"{', '.join(kwargs)}")
        return profile_confint(res, level)
    from hierlm.inference.bootstrap import bootstrap
    from hierlm.inference.fitted import has_residual_structure
    from hierlm.inference.residual_bootstrap import residual_bootstrap

    extra = set(kwargs) - {"n", "seed", "kind", "progressbar", "n_jobs"}
    if extra:
        raise MethodError(f"unexpected argument(s) for bootstrap intervals: "
                          f"{', '.join(sorted(extra))}")
    if has_residual_structure(res):
        boot = residual_bootstrap(res, int(kwargs.get("n", 1000)), seed=kwargs.get("seed"))
    else:
        boot = bootstrap(res, int(kwargs.get("n", 1000)), seed=kwargs.get("seed"),
                         progressbar=bool(kwargs.get("progressbar", True)),
                         n_jobs=kwargs.get("n_jobs"))
    return boot.confint(level, kind=kwargs.get("kind", "percentile"))
