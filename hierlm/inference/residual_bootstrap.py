"""Parametric bootstrap of a fit with ``residual=`` / ``sigma=``.

Each replicate simulates a response from the fitted model, residual structure included
(:func:`hierlm.estimate.residual_simulate.simulate_responses`), and refits it by the
same criterion with the model's own fit (:func:`hierlm.estimate.residual_fit`), started
at the estimates.  The table holds ``objective``, the fixed effects, the sd/cor
parameters and ``sigma`` (lme4's names) and the residual parameters; a replicate whose
refit fails is a row of NaN, counted and reported in a warning.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np
import pandas as pd

from hierlm.covariance.design import DesignCovariance
from hierlm.covariance.parameters import parameter_names, sdcor_from_theta
from hierlm.errors import ConvergenceWarning, HierlmError, MethodError
from hierlm.estimate.residual_fit import fit_residual
from hierlm.estimate.residual_simulate import simulate_responses
from hierlm.inference.bootstrap import Bootstrap


def _covariance_values(design: Any, theta: np.ndarray, sigma: float) -> np.ndarray:
    """lme4's sd/cor parameters, or a structured model's own (with sigma last)."""
    cov = DesignCovariance.of(design)
    if cov.structured:
        psi = cov.psi_from_theta(theta)
        return np.append(cov.natural(psi, sigma).to_numpy(), sigma)
    return sdcor_from_theta(design, theta, sigma)


def _row(rec: Any, design: Any) -> np.ndarray:
    return np.concatenate([[rec.objective], rec.fixef.to_numpy(),
                           _covariance_values(design, rec.theta, rec.sigma),
                           rec.residual_parameters.to_numpy()])


def residual_bootstrap(res: Any, n: int, seed: int | None = None) -> Bootstrap:
    """``n`` parametric bootstrap replicates of a fit with a residual structure.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.load_sleepstudy()
    >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", d, residual="ar1(Days | Subject)")
    >>> b = residual_bootstrap(res, 3, seed=1)
    >>> b.replicates.columns[-2:].tolist(), b.n_failed
    (['sigma', 'rho'], 0)
    """
    model = getattr(res, "model", None)
    rd = None if model is None else getattr(model, "residual", None)
    if model is None or rd is None:
        raise MethodError("bootstrap of a fit with residual= / sigma= needs its model "
                          "(FitResult.model), which a result read from disk lacks")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise MethodError(f"n must be a positive whole number of replicates, got {n!r}")
    design, reml = model.design, res.is_reml
    par = res.residual_parameters.to_numpy(dtype=float)
    rho = float(par[0]) if rd.n_corr else 0.0
    rng = np.random.default_rng(seed)
    ys = simulate_responses(design, rd, res.fixef.to_numpy(dtype=float), res.theta,
                            float(res.sigma), rho, par[rd.n_corr:], int(n), rng)
    cov = DesignCovariance.of(design)
    # a structured term is refitted over its own parameters psi, reported by their names
    start = cov.psi_from_theta(res.theta) if cov.structured else res.theta
    names = [*cov.names(), "sigma"] if cov.structured else parameter_names(design)
    columns = (["objective", *res.fixef.index, *names]
               + list(res.residual_parameters.index))
    rows, failed = [], 0
    for i in range(int(n)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rec = fit_residual(dataclasses.replace(design, y=ys[:, i]), rd, reml,
                                   start=start)
            ok = rec.converged
        except HierlmError:
            ok = False
        if ok:
            rows.append(_row(rec, design))
        else:
            failed += 1
            rows.append(np.full(len(columns), np.nan))
    if failed:
        warnings.warn(f"{failed} of {n} bootstrap refits failed (NaN rows)",
                      ConvergenceWarning, stacklevel=2)
    estimates = pd.Series(_row(res, design), index=columns)
    return Bootstrap(replicates=pd.DataFrame(rows, columns=columns), n_failed=failed,
                     seed=seed, estimates=estimates)
