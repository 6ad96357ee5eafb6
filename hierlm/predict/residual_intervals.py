"""Prediction variances of a fit with a residual structure (``residual=`` / ``sigma=``).

With residual covariance ``sigma^2 R0`` and any ``B`` with ``B'B = R0^-1``, Henderson's
equations of the model are those of the whitened model ``B[Z X y]``
(:mod:`hierlm.objective.residual_gram`)::

    Omega = [[Lambda'Z'R0^-1 Z Lambda + I, Lambda'Z'R0^-1 X], [X'R0^-1 Z Lambda,
              X'R0^-1 X]],   Var([u-hat - u; beta-hat - beta]) = sigma^2 Omega^-1

so the prediction-error variance of a row's conditional mean is
:func:`hierlm.predict.intervals.prediction_error_variance` on the whitened model's
factor, at the estimates of theta, sigma, rho and delta (treated as known):

* ``"confidence"``: ``Var(x'beta-hat + z'b-hat - x'beta - z'b | theta, sigma, rho,
  delta)``, the interval for the conditional mean;
* ``"prediction"``: that, plus the unconditioned random-effect variance (terms left out
  by ``re_form`` and new levels), plus the new observation's residual variance
  ``sigma^2 s^2``, ``s = exp(v'delta) / sqrt(w)`` of its own variance group (the
  ``sigma=`` model coded on the new row; nlme's ``varIdent`` weight).

What the prediction interval does not condition on: the new observation's error is
taken as independent of the fitted rows' errors.  That is exact for a row in a new
correlation group (a new subject).  For a new time point of an existing subject with
``ar1`` / ``car1`` / ``cs``, its error is correlated with that subject's observed
errors; the point prediction here is ``x'beta-hat + z'b-hat`` and does not add the
kriged residual ``E(e_new | y)``, and the interval leaves out the covariance between
``e_new`` and the fitted mean's error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from hierlm.design.newdata import CodedRows
from hierlm.errors import MethodError
from hierlm.objective.profiled import compile_objective
from hierlm.objective.residual_gram import whitened_design
from hierlm.predict.intervals import prediction_error_variance


def residual_row_scale(res: Any, newdata: pd.DataFrame | None, rows: CodedRows
                       ) -> np.ndarray:
    """``s = exp(v'delta) / sqrt(w)`` of each row (the fitting rows' without newdata).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.load_sleepstudy()
    >>> d["late"] = (d["Days"] > 4).map({True: "late", False: "early"})
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", d, sigma="~ late")
    >>> rows = res.coder.code(d.iloc[[0, 9]])
    >>> s = residual_row_scale(res, d.iloc[[0, 9]], rows)
    >>> bool(np.allclose(s * res.sigma, res.residual_sd().iloc[[0, 9]]))
    True
    """
    if newdata is None:
        return np.asarray(res.residual_scale, dtype=float)
    rd = res.model.residual
    delta = res.residual_parameters.to_numpy(dtype=float)[rd.n_corr:]
    v = rd.v_of(newdata)
    return np.exp(v @ delta) / np.sqrt(rows.weights)


def residual_pev(res: Any, rows: CodedRows) -> np.ndarray:
    """Prediction-error variance of each row's conditional mean given the estimated
    parameters, from the whitened model (module docstring).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.load_sleepstudy()
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", d, residual="ar1(Days | Subject)")
    >>> rows = res.coder.code(None, terms=())
    >>> pev = residual_pev(res, rows)
    >>> x = rows.X[:1]
    >>> bool(np.isclose(pev[0], (x @ res.vcov.to_numpy() @ x.T)[0, 0]))
    True
    """
    model = getattr(res, "model", None)
    rd = None if model is None else getattr(model, "residual", None)
    if model is None or rd is None:
        raise MethodError("intervals of a fit with residual= / sigma= need its model "
                          "(FitResult.model), which a result read from disk lacks")
    par = res.residual_parameters.to_numpy(dtype=float)
    rho = float(par[0]) if rd.n_corr else 0.0
    wd, _ = whitened_design(model.design, rd, rho, par[rd.n_corr:])
    return prediction_error_variance(compile_objective(wd), res.theta, res.sigma, rows)
