"""Parametric bootstrap of a model with a structured covariance: one full refit a replicate.

The replicates are simulated from the fit exactly as for unstructured models
(:func:`hierlm.inference.bootstrap.simulate`: ``y* = X beta-hat + Z b* + e*`` with
``b* ~ N(0, Sigma-hat)``, ``e* ~ N(0, sigma-hat^2)``), then each is refitted by the
fit's own method over the structures' psi (:mod:`hierlm.estimate.optimize_structured`),
started from lme4's start like any fit.  The replicates' columns are the criterion, the
fixed effects, the structures' own parameters (``sd|subject``, ``rho|subject``, ...)
and sigma.  Slower than the blocked refits of unstructured models (one optimizer run,
with its extra starts, a replicate).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from hierlm.covariance.design import DesignCovariance
from hierlm.errors import ConvergenceWarning, MethodError


def structured_replicates(res: Any, model: Any, Y: np.ndarray) -> tuple[pd.DataFrame, int]:
    """Refit ``model`` to each row of ``Y``: the replicates table and the failures.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.inference.bootstrap import simulate
    >>> from hierlm.objective.gram import term_matrix
    >>> data = hierlm.load_sleepstudy().query("Days < 4").astype({"Days": str})
    >>> res = hierlm.fit("Reaction ~ Days + ar1(0 + Days | Subject)", data)
    >>> d = res.model.design
    >>> Y = simulate(d, res, np.random.default_rng(1), [term_matrix(t) for t in d.terms], 2)
    >>> table, failed = structured_replicates(res, res.model, Y)
    >>> table.columns.tolist()[-3:], table.shape, failed
    (['sd|Subject', 'rho|Subject', 'sigma'], (2, 8), 0)
    """
    design = model.design
    if design.weights is not None or design.offset is not None:
        raise MethodError("the bootstrap of a structured covariance does not take prior "
                          "weights or an offset yet")
    cov = DesignCovariance.of(design)
    names = ["objective", *res.fixef.index, *cov.names(), "sigma"]
    out = np.full((Y.shape[0], len(names)), np.nan)
    failed = 0
    method = res.kind.criterion.value  # refit by the fit's own criterion (REML or ML)
    for i, y in enumerate(Y):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = model.with_response(y).fit(method)
        except Exception:  # noqa: BLE001 - a failed replicate is a NaN row, counted
            failed += 1
            continue
        psi = cov.psi_from_theta(fit.theta)
        out[i] = np.concatenate([[fit.objective], fit.fixef.to_numpy(),
                                 cov.natural(psi, fit.sigma).to_numpy(), [fit.sigma]])
    if failed:
        warnings.warn(f"{failed} of {Y.shape[0]} bootstrap replicates failed to refit; they "
                      f"are NaN rows of .replicates", ConvergenceWarning, stacklevel=3)
    return pd.DataFrame(out, columns=names), failed


def structured_estimates(res: Any, design: Any) -> pd.Series:
    """The fit's own values of the replicates' columns."""
    cov = DesignCovariance.of(design)
    psi = cov.psi_from_theta(res.theta)
    names = ["objective", *res.fixef.index, *cov.names(), "sigma"]
    return pd.Series(np.concatenate([[res.objective], res.fixef.to_numpy(),
                                     cov.natural(psi, res.sigma).to_numpy(), [res.sigma]]),
                     index=names)
