"""Prior weights and offsets in the unprofiled likelihood NUTS uses, against dense algebra."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats
import xarray as xr

import hierlm
from hierlm.covariance.layout import templates
from hierlm.estimate.conditional import log_likelihood_dataset, marginal_deviance
from hierlm.objective import compile_objective

THETA = np.array([0.8, -0.02, 0.2])
BETA = np.array([250.0, 10.0])
SIGMA = 30.0


@pytest.fixture(scope="module")
def design() -> hierlm.design.terms.ModelDesign:
    data = hierlm.load_sleepstudy()
    return hierlm.build_design("Reaction ~ Days + (Days | Subject)", data,
                               weights=1.0 + data.Days % 3, offset=0.5 * data.Days)


def _dense(design: hierlm.design.terms.ModelDesign) -> tuple[np.ndarray, np.ndarray]:
    (T,) = templates(design, THETA)
    t = design.terms[0]
    Zb = np.zeros((design.nobs, design.nobs))
    for g in range(t.n_levels):
        rows = np.flatnonzero(t.codes == g)
        zx = t.X[rows] @ T
        Zb[np.ix_(rows, rows)] = zx @ zx.T
    V = SIGMA**2 * (Zb + np.diag(1.0 / design.weights))
    mean = design.offset + design.X @ BETA
    return mean, V


def test_marginal_deviance_with_weights_and_offset(design: hierlm.design.terms.ModelDesign
                                                   ) -> None:
    mean, V = _dense(design)
    dense = -2 * scipy.stats.multivariate_normal(mean, V).logpdf(design.y)
    got = marginal_deviance(compile_objective(design), THETA, BETA, SIGMA)
    assert abs(got - dense) < 1e-8 * abs(dense)


def test_per_group_log_likelihood_with_weights(design: hierlm.design.terms.ModelDesign) -> None:
    mean, V = _dense(design)
    t = design.terms[0]
    post = xr.Dataset(coords={"chain": [0], "draw": [0]})
    ds, _ = log_likelihood_dataset(design, post, THETA[None], BETA[None], np.array([SIGMA]))
    assert ds is not None
    for g in range(t.n_levels):
        rows = np.flatnonzero(t.codes == g)
        dense = scipy.stats.multivariate_normal(mean[rows], V[np.ix_(rows, rows)]).logpdf(
            design.y[rows])
        assert abs(float(ds["y"].values[0, 0, g]) - dense) < 1e-9 * abs(dense)


def test_nuts_fit_with_weights_and_offset_runs() -> None:
    data = hierlm.load_sleepstudy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit("Reaction ~ Days + (Days | Subject)", data, method="nuts",
                         weights=1.0 + data.Days % 3, offset=2.0 * data.Days, draws=100,
                         tune=100, chains=2, progressbar=False, sampler="pymc", cores=1,
                         random_seed=1)
    reml = hierlm.fit("Reaction ~ Days + (Days | Subject)", data,
                      weights=1.0 + data.Days % 3, offset=2.0 * data.Days)
    # the posterior mean is within a few posterior SDs of the weighted REML estimate
    assert np.all(np.abs(res.fixef - reml.fixef) < 3 * res.fixef_se)
    # deviance at the point estimates, with the -sum(log w) term, as the dense formula
    model = res.model
    dense = marginal_deviance(model.objective, res.theta, res.fixef.to_numpy(), res.sigma)
    assert abs(res.objective - dense) < 1e-9 * abs(dense)
