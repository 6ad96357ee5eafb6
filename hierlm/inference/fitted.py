"""The fitted model behind a result, and the deviance's curvature at its estimate.

The post-fit tests need the compiled objective (``FitResult.model``) and, for
Satterthwaite's df, the Hessian of the deviance in the variance parameters and the
Jacobian of vcov(beta) (:func:`hierlm.inference.deviance.varpar_info`).  That
curvature is computed once per result and kept while the result lives.
"""

from __future__ import annotations

import weakref
from typing import Any

from hierlm.errors import MethodError
from hierlm.inference.deviance import VarparInfo, varpar_info

_INFO: weakref.WeakKeyDictionary[Any, VarparInfo] = weakref.WeakKeyDictionary()


def has_residual_structure(res: Any) -> bool:
    """Whether a fit has ``residual=`` / ``sigma=`` parameters."""
    return len(getattr(res, "residual_parameters", ())) > 0


def require_model(res: Any, what: str, residual_ok: bool = False) -> Any:
    """The fitted model of a REML/ML result, or MethodError naming what is missing.

    Fits with ``residual=`` / ``sigma=`` have Satterthwaite's and Kenward-Roger's df,
    likelihood-ratio tests, ranova, emmeans, profiles and cluster-robust SEs (callers that handle
    them pass ``residual_ok=True``);
    everything else that needs the model is not supported yet.
    """
    if not res.is_likelihood_fit:
        raise MethodError(f"{what} needs a REML or ML fit, not {res.method}")
    if has_residual_structure(res) and not residual_ok:
        raise MethodError(f"{what} is not supported yet for fits with residual= or sigma=; "
                          f"Satterthwaite's and Kenward-Roger's df, Wald intervals, "
                          f"likelihood-ratio tests (hierlm.anova, ranova), emmeans, profiles "
                          f"and cluster-robust SEs are")
    if res.model is None:
        raise MethodError(f"{what} needs the fitted model (FitResult.model), which a result "
                          f"read from disk does not have; refit with hierlm.Model(...).fit()")
    return res.model


def info_of(res: Any) -> VarparInfo:
    """The deviance's Hessian and vcov(beta)'s Jacobian at the estimate (cached)."""
    info = _INFO.get(res)
    if info is None and has_residual_structure(res):
        from hierlm.inference.residual_satterthwaite import residual_varpar_info

        if not res.is_likelihood_fit:
            raise MethodError(f"Satterthwaite's df needs a REML or ML fit, not {res.method}")
        info = _INFO[res] = residual_varpar_info(res)
    if info is None:
        model = require_model(res, "Satterthwaite's df")
        info = varpar_info(model.objective, res.theta, res.sigma, reml=res.is_reml)
        _INFO[res] = info
    return info
