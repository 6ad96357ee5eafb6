"""Parametric bootstrap: the Gram-block shortcut against full refits, seeds, failures."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hierlm
from hierlm.errors import ConvergenceWarning, MethodError
from hierlm.inference import bootstrap as bootmod
from hierlm.inference.bootstrap import Bootstrap, _Refitter, _simulate
from hierlm.objective.gram import term_matrix
from hierlm.results.parameters import parameter_names


@pytest.fixture(scope="module")
def res():
    return hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())


def test_replicate_equals_a_full_refit(res):
    # outside check: the ordinary fit path (new Gram blocks from scratch) on the same y*
    design = res.model.design
    rng = np.random.default_rng(5)
    Zs = [term_matrix(t) for t in design.terms]
    refitter = _Refitter(res.model.objective, reml=True)
    for _ in range(3):
        y = _simulate(design, res, rng, Zs)
        theta, sigma, beta, f = refitter.refit(y, res.theta)
        full = res.model.with_response(y).fit("reml")
        assert f == pytest.approx(full.objective, rel=1e-9)
        np.testing.assert_allclose(beta, full.fixef, rtol=1e-6)
        assert sigma == pytest.approx(full.sigma, rel=1e-6)
        np.testing.assert_allclose(theta, full.theta, rtol=1e-4, atol=1e-5)


def test_weighted_offset_replicate_equals_a_full_refit():
    # prior weights and an offset: replicates are drawn on the working scale
    # W^1/2 (y - o); on the data scale they refit like any response
    from hierlm.design.weights import working_design

    data = hierlm.load_sleepstudy()
    w = 1.0 + (data["Days"] % 3)
    res = hierlm.fit("Reaction ~ Days + (Days | Subject)", data, weights=w,
                     offset=2 * data["Days"])
    design = res.model.design
    work = working_design(design)
    rng = np.random.default_rng(8)
    refitter = _Refitter(res.model.objective, reml=True)
    Zs = [term_matrix(t) for t in work.terms]
    for _ in range(2):
        yw = _simulate(work, res, rng, Zs)
        theta, sigma, beta, f = refitter.refit(yw, res.theta)
        y = design.offset + yw / np.sqrt(design.weights)
        full = res.model.with_response(y).fit("reml")
        assert f == pytest.approx(full.objective, rel=1e-9)
        np.testing.assert_allclose(beta, full.fixef, rtol=1e-6)
        assert sigma == pytest.approx(full.sigma, rel=1e-6)
    b = res.bootstrap(20, seed=1, progressbar=False)
    assert b.n_failed == 0


def test_bootstrap_table_equals_full_refits(res):
    # the quasi-Newton refits of bootstrap() against ordinary fits of the same y*
    design = res.model.design
    b = res.bootstrap(30, seed=4, progressbar=False)
    rng = np.random.default_rng(4)
    Zs = [term_matrix(t) for t in design.terms]
    for i in range(30):
        full = res.model.with_response(_simulate(design, res, rng, Zs)).fit("reml")
        row = b.replicates.iloc[i]
        # never worse than the ordinary fit, and the same optimum
        assert row["objective"] <= full.objective + 1e-7
        assert row["objective"] == pytest.approx(full.objective, rel=1e-8)
        assert row["sigma"] == pytest.approx(full.sigma, rel=1e-4)
        np.testing.assert_allclose(row[["(Intercept)", "Days"]].to_numpy(float), full.fixef,
                                   rtol=1e-5)


def test_columns_seed_and_intervals(res):
    b = res.bootstrap(40, seed=11, progressbar=False)
    names = ["objective", "(Intercept)", "Days", *parameter_names(res.model.design)]
    assert list(b.replicates.columns) == names
    assert b.n_failed == 0 and len(b.replicates) == 40
    again = res.bootstrap(40, seed=11, progressbar=False)
    np.testing.assert_array_equal(b.replicates.to_numpy(), again.replicates.to_numpy())
    other = res.bootstrap(40, seed=12, progressbar=False)
    assert not np.allclose(b.replicates.to_numpy(), other.replicates.to_numpy())
    pct = b.confint(0.9)
    x = np.sort(b.replicates["sigma"])
    assert pct.loc["sigma", "lower"] == pytest.approx(np.quantile(x, 0.05))
    sh = b.confint(0.9, kind="shortest")
    widths = sh["upper"] - sh["lower"]
    assert (widths <= pct["upper"] - pct["lower"] + 1e-12).all()
    # the shortest interval holds ceil(0.9 * 40) = 36 replicates
    inside = ((x >= sh.loc["sigma", "lower"]) & (x <= sh.loc["sigma", "upper"])).sum()
    assert inside == 36
    assert list(pct.index) == [*parameter_names(res.model.design), "(Intercept)", "Days"]


def test_bootstrap_mean_near_truth_of_simulation(res):
    # replicates are drawn from the fit: their mean fixed effects are near beta-hat
    # (within 4 Monte Carlo SEs of the replicate SD / sqrt(n))
    b = res.bootstrap(200, seed=2, progressbar=False)
    for name in ["(Intercept)", "Days"]:
        x = b.replicates[name]
        assert abs(x.mean() - res.fixef[name]) < 4 * x.std() / np.sqrt(len(x))


def test_failed_replicates_are_counted(res, monkeypatch):
    calls = {"n": 0}
    real = _Refitter.refit

    def flaky(self, y, start):
        calls["n"] += 1
        if calls["n"] % 5 == 0:
            raise RuntimeError("refit did not converge")
        return real(self, y, start)

    monkeypatch.setattr(bootmod._Refitter, "refit", flaky)
    with pytest.warns(ConvergenceWarning, match="4 of 20"):
        b = res.bootstrap(20, seed=1, progressbar=False)
    assert b.n_failed == 4
    assert b.replicates.isna().all(axis=1).sum() == 4 and len(b.replicates) == 20
    assert "4 failed" in repr(b)


def test_progressbar_and_errors(res, capsys):
    res.bootstrap(3, seed=1, progressbar=True)
    assert "bootstrap 3/3" in capsys.readouterr().err
    res.bootstrap(3, seed=1, progressbar=False)
    assert capsys.readouterr().err == ""
    with pytest.raises(MethodError, match="positive whole number"):
        res.bootstrap(0)
    b = res.bootstrap(3, seed=1, progressbar=False)
    assert isinstance(b, Bootstrap)
    with pytest.raises(MethodError, match="kind"):
        b.confint(kind="bca")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = res.confint(method="bootstrap", n=10, seed=1, progressbar=False)
    assert ci.shape == (6, 2)
    with pytest.raises(MethodError, match="unexpected"):
        res.confint(method="bootstrap", nsim=10)
