"""Predictions from a fitted model, with confidence and prediction intervals.

For a row with fixed-effect row ``x``, offset ``o`` and, for each random term ``k``
kept by ``re_form``, model row ``z_k`` and level ``g_k``::

    fit = o + x'beta-hat + sum_k z_k' b-hat_k[g_k]        (b-hat = 0 for a new level)

Intervals are ``fit -/+ z_{(1+level)/2} sqrt(V)`` given theta-hat and sigma-hat:

* ``"confidence"``: ``V = Var(x'beta-hat + z'b-hat - x'beta - z'b | theta, sigma)``, the
  prediction-error variance of the conditional mean from the full factor
  (:mod:`hierlm.predict.intervals`); at population level it is ``x' vcov x``;
* ``"prediction"`` (for one new observation of that row): ``V`` plus ``sigma^2 / w``
  plus ``z_k' Sigma_k z_k`` for every term whose random effect is not conditioned on
  (terms left out by ``re_form``, and levels not seen in fitting).

Both treat theta and sigma as known (their uncertainty is not propagated), as lme4's
conditional variances do.  Fits with ``residual=`` / ``sigma=`` use the whitened
model's factor and each row's own residual SD; what they condition on is set out in
:mod:`hierlm.predict.residual_intervals`.  For NUTS fits the same quantities are computed per
posterior draw (``b`` drawn exactly given each draw, new levels drawn from
``N(0, Sigma_k)``, a new observation adds ``N(0, sigma^2 / w)``, or under ``sigma=``
``N(0, sigma^2 exp(2 v'delta))`` with each draw's ``delta``, the marginal residual
variance as for REML/ML); the fit is the posterior mean and the interval the central
posterior interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.stats

from hierlm.design.frames import as_pandas
from hierlm.design.newdata import CodedRows
from hierlm.errors import MethodError
from hierlm.predict.terms import (
    coder_of,
    coder_templates,
    fitted_objective,
    ranef_arrays,
    select_terms,
)

INTERVALS = (None, "confidence", "prediction")


def code_rows(res: Any, newdata: pd.DataFrame | None, re_form: str | None,
              allow_new_levels: bool) -> CodedRows:
    """The rows to predict, coded, with the caller's row labels."""
    coder = coder_of(res)
    ks = select_terms(coder, re_form)
    rows = coder.code(newdata, terms=ks, allow_new_levels=allow_new_levels)
    if newdata is None and res.row_labels is not None:
        rows = CodedRows(X=rows.X, terms=rows.terms, Z_X=rows.Z_X, codes=rows.codes,
                         offset=rows.offset, weights=rows.weights, index=res.row_labels)
    return rows


def linear_predictor(rows: CodedRows, beta: np.ndarray, b: list[np.ndarray]) -> np.ndarray:
    """``o + X beta + sum_k z_k' b_k[g_k]`` (0 for new levels); ``b`` indexed by term."""
    out = rows.offset + rows.X @ beta
    for k, zx, codes in zip(rows.terms, rows.Z_X, rows.codes, strict=True):
        bk = np.vstack([b[k], np.zeros((1, b[k].shape[1]))])  # row -1: a new level
        out = out + np.einsum("ij,ij->i", zx, bk[codes])
    return out


def unconditioned_variance(res: Any, rows: CodedRows, theta: np.ndarray, sigma: float,
                           coded_all: CodedRows) -> np.ndarray:
    """``sum_k z_k' Sigma_k z_k`` over the terms a row's prediction does not condition on."""
    coder = coder_of(res)
    Ts = coder_templates(coder, theta)
    out = np.zeros(rows.X.shape[0])
    for k, (zx, codes) in enumerate(zip(coded_all.Z_X, coded_all.codes, strict=True)):
        S = sigma**2 * Ts[k] @ Ts[k].T
        free = np.ones(len(out), bool) if k not in rows.terms else codes < 0
        out += free * np.einsum("ij,jk,ik->i", zx, S, zx)
    return out


def predict(res: Any, newdata: pd.DataFrame | None = None, re_form: str | None = None,
            allow_new_levels: bool = False, interval: str | None = None,
            level: float = 0.95, draws: bool = False) -> Any:
    """Predictions for the fitting rows or ``newdata`` (see the module docstring).

    Returns a Series ``fit`` indexed like the rows, or with ``interval`` a DataFrame
    ``fit, lower, upper``; for NUTS with ``draws=True`` also the ``(draws, rows)``
    array of posterior(-predictive) draws.
    """
    if interval not in INTERVALS:
        raise MethodError(f"unknown interval {interval!r}; use None, 'confidence' or "
                          f"'prediction'")
    if not 0 < level < 1:
        raise MethodError(f"level must be in (0, 1), got {level!r}")
    if newdata is not None:
        newdata = as_pandas(newdata, "newdata")  # polars, pyarrow, ... through narwhals
    rows = code_rows(res, newdata, re_form, allow_new_levels)
    if res.is_posterior:
        return _predict_nuts(res, newdata, rows, allow_new_levels, interval, level, draws)
    if draws:
        raise MethodError("draws=True needs a NUTS fit; REML/ML predictions have no draws")
    beta = res.fixef.to_numpy(dtype=np.float64)
    fit = linear_predictor(rows, beta, ranef_arrays(res))
    if interval is None:
        return pd.Series(fit, index=rows.index, name="fit")
    from hierlm.predict.intervals import prediction_error_variance
    from hierlm.predict.residual_intervals import residual_pev, residual_row_scale

    structured = len(getattr(res, "residual_parameters", ())) > 0
    var = (residual_pev(res, rows) if structured else
           prediction_error_variance(fitted_objective(res), res.theta, res.sigma, rows))
    if interval == "prediction":
        all_rows = coder_of(res).code(newdata, allow_new_levels=True)
        scale2 = (residual_row_scale(res, newdata, rows) ** 2 if structured
                  else 1.0 / rows.weights)
        var = var + res.sigma**2 * scale2 + unconditioned_variance(
            res, rows, res.theta, res.sigma, all_rows)
    half = scipy.stats.norm.ppf(0.5 + level / 2) * np.sqrt(var)
    return pd.DataFrame({"fit": fit, "lower": fit - half, "upper": fit + half},
                        index=rows.index)


def _predict_nuts(res: Any, newdata: pd.DataFrame | None, rows: CodedRows,
                  allow_new_levels: bool, interval: str | None, level: float,
                  draws: bool) -> Any:
    from hierlm.predict.posterior import posterior_draws

    post = posterior_draws(res)
    rng = np.random.default_rng(0)
    coder = coder_of(res)
    D = post.beta.shape[0]
    sims = np.empty((D, rows.X.shape[0]))
    all_rows = coder.code(newdata, allow_new_levels=True) if interval == "prediction" else None
    V, ratios = None, post.log_sd_ratio
    if all_rows is not None and ratios is not None:  # sigma=: each row's SD
        from hierlm.predict.residual_cov import residual_design_of

        rd = residual_design_of(res)
        V = rd.V if newdata is None else rd.v_of(newdata)
    for d in range(D):
        b = [bk[d] for bk in post.b]
        sims[d] = linear_predictor(rows, post.beta[d], b)
        if all_rows is not None:
            scale2 = (1.0 / rows.weights if V is None or ratios is None else
                      np.exp(2.0 * V @ ratios[d]) / rows.weights)
            var = post.sigma[d] ** 2 * scale2 + unconditioned_variance(
                res, rows, post.theta[d], float(post.sigma[d]), all_rows)
            sims[d] += np.sqrt(var) * rng.standard_normal(len(var))
    fit = sims.mean(axis=0)
    if interval is None:
        out: Any = pd.Series(fit, index=rows.index, name="fit")
    else:
        lo, hi = np.quantile(sims, [0.5 - level / 2, 0.5 + level / 2], axis=0)
        out = pd.DataFrame({"fit": fit, "lower": lo, "upper": hi}, index=rows.index)
    return (out, sims) if draws else out
