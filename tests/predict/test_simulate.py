"""Simulation: refits of simulated data recover the variance components, and prediction
intervals cover new observations at their nominal rate (designs with known truth)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.errors import MethodError


@pytest.fixture(scope="module")
def sleep() -> hierlm.FitResult:
    return hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())


def test_simulate_shape_seed_and_labels(sleep: hierlm.FitResult) -> None:
    a = sleep.simulate(nsim=3, seed=5)
    b = sleep.simulate(nsim=3, seed=5)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.columns) == ["sim_1", "sim_2", "sim_3"] and a.index.equals(sleep.fitted().index)
    with pytest.raises(MethodError, match="nsim"):
        sleep.simulate(nsim=0)


def test_conditional_simulation_is_centred_on_the_fitted_values(sleep: hierlm.FitResult) -> None:
    sims = sleep.simulate(nsim=4000, seed=1, re_form=None)
    # mean over simulations: fitted values, with Monte Carlo SE sigma / sqrt(4000)
    err = (sims.mean(axis=1) - sleep.fitted()).abs().max()
    assert err < 5 * sleep.sigma / np.sqrt(4000)
    resid_sd = (sims.sub(sleep.fitted(), axis=0)).to_numpy().std()
    assert abs(resid_sd / sleep.sigma - 1) < 0.01


def test_unconditional_simulation_has_the_marginal_covariance(sleep: hierlm.FitResult) -> None:
    sims = sleep.simulate(nsim=20000, seed=2).to_numpy()[:10]  # Subject 308's 10 days
    mean, cov = sleep.marginal_moments(hierlm.load_sleepstudy().iloc[:10])
    emp = np.cov(sims)
    # each covariance entry's Monte Carlo SE is about sqrt(2 / 20000) of the scale
    np.testing.assert_allclose(emp, cov.to_numpy(), atol=0.05 * cov.to_numpy().max())
    np.testing.assert_allclose(sims.mean(axis=1), mean.to_numpy(),
                               atol=5 * np.sqrt(cov.to_numpy().max() / 20000))


@pytest.mark.slow
def test_refits_of_simulations_recover_the_variance_components(sleep: hierlm.FitResult) -> None:
    nsim = 200
    sims = sleep.simulate(nsim=nsim, seed=3)
    model = sleep.model
    vc = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j in range(nsim):
            res = model.with_response(sims.iloc[:, j].to_numpy()).fit("reml")
            vc.append(res.varcorr.variance_or_cov.to_numpy())
    vc = np.array(vc)
    truth = sleep.varcorr.variance_or_cov.to_numpy()
    se = vc.std(axis=0, ddof=1) / np.sqrt(nsim)
    # REML's variance estimates are close to unbiased: the average is within 3.5 Monte
    # Carlo SEs of the truth used to simulate
    assert np.all(np.abs(vc.mean(axis=0) - truth) < 3.5 * se), (vc.mean(axis=0), truth, se)


def _coverage_data(rng: np.random.Generator, n_groups: int, groups: np.ndarray) -> pd.DataFrame:
    t = np.tile(np.arange(6.0), n_groups)
    g = np.repeat(groups, 6)
    ab = rng.multivariate_normal([0, 0], [[9.0, 0.5], [0.5, 1.0]], size=n_groups)
    idx = np.repeat(np.arange(n_groups), 6)
    y = 10 + 2 * t + ab[idx, 0] + ab[idx, 1] * t + rng.normal(0, 2.0, len(t))
    return pd.DataFrame({"y": y, "t": t, "g": g}), ab


@pytest.mark.slow
def test_prediction_intervals_cover_new_observations() -> None:
    """Known truth: new observations of fitted groups and of new groups."""
    rng = np.random.default_rng(7)
    hits_seen, hits_new, total = 0, 0, 0
    for _ in range(60):
        data, ab = _coverage_data(rng, 30, np.arange(30))
        res = hierlm.fit("y ~ t + (1 + t | g)", data)
        # one new observation per fitted group, at t = 2.5, from that group's effects
        new = pd.DataFrame({"t": np.full(30, 2.5), "g": np.arange(30)})
        y_new = 10 + 2 * 2.5 + ab[:, 0] + ab[:, 1] * 2.5 + rng.normal(0, 2.0, 30)
        pi = res.predict(new, interval="prediction", level=0.9)
        hits_seen += int(((pi.lower < y_new) & (y_new < pi.upper)).sum())
        # and one per new group
        ab2 = rng.multivariate_normal([0, 0], [[9.0, 0.5], [0.5, 1.0]], size=30)
        y2 = 10 + 2 * 2.5 + ab2[:, 0] + ab2[:, 1] * 2.5 + rng.normal(0, 2.0, 30)
        new2 = new.assign(g=np.arange(100, 130))
        pi2 = res.predict(new2, interval="prediction", level=0.9, allow_new_levels=True)
        hits_new += int(((pi2.lower < y2) & (y2 < pi2.upper)).sum())
        total += 30
    # 1800 observations each: binomial SE of the rate is 0.007; theta-hat's uncertainty
    # (not propagated) lowers coverage slightly, so allow 0.87-0.93
    assert 0.87 < hits_seen / total < 0.93, hits_seen / total
    assert 0.87 < hits_new / total < 0.93, hits_new / total
