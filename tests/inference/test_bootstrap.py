"""Parametric bootstrap: the Gram-block shortcut against full refits, seeds, failures."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.covariance.layout import templates
from hierlm.covariance.parameters import parameter_names, theta_from_sdcor
from hierlm.errors import ConvergenceWarning, MethodError
from hierlm.inference import parallel
from hierlm.inference import refit as refitmod
from hierlm.inference import refit_compiled as compiled
from hierlm.inference.anova import info_of
from hierlm.inference.bootstrap import Bootstrap, simulate
from hierlm.inference.refit import Refitter
from hierlm.objective.gram import term_matrix


def _simulate(design, res, rng, Zs):
    """One response: the bootstrap's draws, one replicate at a time."""
    return simulate(design, res, rng, Zs, 1)[0]


def _refit(refitter, y, start):
    out = refitter.refit_block(y[None, :], start)
    assert out.ok[0]
    return out.theta[0], out.sigma[0], out.beta[0], out.objective[0]


def _hessian(res):
    H = info_of(res).hessian
    return H[:-1, :-1] - np.outer(H[:-1, -1], H[-1, :-1]) / H[-1, -1]


@pytest.fixture(scope="module")
def res():
    return hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())


def test_replicate_equals_a_full_refit(res):
    # outside check: the ordinary fit path (new Gram blocks from scratch) on the same y*
    design = res.model.design
    rng = np.random.default_rng(5)
    Zs = [term_matrix(t) for t in design.terms]
    # both paths: L-BFGS-B alone, and quasi-Newton from the fit's exact curvature
    refitters = [Refitter(res.model.objective, reml=True),
                 Refitter(res.model.objective, reml=True, hess=_hessian(res))]
    for _ in range(3):
        y = _simulate(design, res, rng, Zs)
        full = res.model.with_response(y).fit("reml")
        for refitter in refitters:
            theta, sigma, beta, f = _refit(refitter, y, res.theta)
            assert f == pytest.approx(full.objective, rel=1e-9)
            np.testing.assert_allclose(beta, full.fixef, rtol=1e-6)
            assert sigma == pytest.approx(full.sigma, rel=1e-6)
            np.testing.assert_allclose(theta, full.theta, rtol=1e-4, atol=1e-5)
    assert refitters[1].releases_gil  # the quasi-Newton refits ran in the compiled loop


def test_block_draws_equal_single_draws(res):
    # a block of b responses takes the same normals as b single draws in a row
    design = res.model.design
    Zs = [term_matrix(t) for t in design.terms]
    block = simulate(design, res, np.random.default_rng(2), Zs, 5)
    rng = np.random.default_rng(2)
    for i in range(5):
        # the model written out densely: y = X beta + Z (I kron T) u sigma + sigma eps
        eps = rng.standard_normal(design.nobs)
        u = rng.standard_normal((design.terms[0].n_levels, 2))
        T = templates(design, res.theta)[0]
        Z = term_matrix(design.terms[0]).toarray()
        y = design.X @ res.fixef.to_numpy() + res.sigma * (eps + Z @ (u @ T.T).ravel())
        np.testing.assert_allclose(block[i], y, rtol=1e-12)


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
    refitter = Refitter(res.model.objective, reml=True, hess=_hessian(res))
    Zs = [term_matrix(t) for t in work.terms]
    for _ in range(2):
        yw = _simulate(work, res, rng, Zs)
        theta, sigma, beta, f = _refit(refitter, yw, res.theta)
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
    b = res.bootstrap(30, seed=4, progressbar=False, n_jobs=1)
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
        # the fit's own rule accepts the replicate's optimum: its scaled gradient there
        # (from the ordinary objective of the full refit's model) is within check_tol
        sd = row[parameter_names(design)].to_numpy(float)
        theta = theta_from_sdcor(design, sd)[0]
        obj = full.model.objective
        _, grad, _, _ = obj.evaluate(theta, True)
        refitter = Refitter(obj, reml=True)
        assert refitter.accepts(theta, np.asarray(grad))


def test_boundary_replicates_equal_full_refits(res):
    # replicates whose refit meets a bound (an SD of 0, a correlation of +/-1), where
    # optimizers part ways: each equals the ordinary fit of its y*.  Replicate 466 of
    # seed 1 once stopped at a boundary minimum 1.04 above the interior one (a descent
    # from theta-hat instead of from the last quasi-Newton iterate)
    design = res.model.design
    b = res.bootstrap(500, seed=1, progressbar=False)
    Y = simulate(design, res, np.random.default_rng(1), [term_matrix(t) for t in design.terms],
                 500)
    cor = b.replicates["cor_Days.(Intercept)|Subject"].to_numpy()
    rows = sorted({466, *np.flatnonzero(np.abs(cor) > 1 - 1e-6)[:8]})
    assert len(rows) >= 5
    for i in rows:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # boundary (singular) fits
            full = res.model.with_response(Y[i]).fit("reml")
        f = b.replicates["objective"].iloc[i]
        assert f <= full.objective + 1e-7, i
        assert f == pytest.approx(full.objective, rel=1e-10), i


def test_same_replicates_whatever_n_jobs(res, monkeypatch):
    one = res.bootstrap(150, seed=9, progressbar=False, n_jobs=1).replicates.to_numpy()
    two = res.bootstrap(150, seed=9, progressbar=False, n_jobs=2).replicates.to_numpy()
    np.testing.assert_array_equal(one, two)
    three = res.bootstrap(150, seed=9, progressbar=False, n_jobs=3).replicates.to_numpy()
    np.testing.assert_array_equal(one, three)
    # the refit loop in Python (holding the GIL): blocks on forked processes, and the
    # same optimum as the compiled loop's (rounding aside)
    monkeypatch.setattr(compiled.CompiledLoop, "run", lambda self, *a: None)
    py_one = res.bootstrap(150, seed=9, progressbar=False, n_jobs=1).replicates.to_numpy()
    py_two = res.bootstrap(150, seed=9, progressbar=False, n_jobs=2).replicates.to_numpy()
    np.testing.assert_array_equal(py_one, py_two)
    np.testing.assert_allclose(py_one, one, rtol=1e-6)
    np.testing.assert_allclose(py_one[:, 0], one[:, 0], rtol=1e-11)  # the criterion
    # no fork here: the blocks run in this process, with no warning and the same table
    monkeypatch.setattr(parallel, "fork_available", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        serial = res.bootstrap(150, seed=9, progressbar=False, n_jobs=2).replicates.to_numpy()
    np.testing.assert_array_equal(py_one, serial)


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
    # a refit "fails" when its response's residual sum of squares (the last entry of
    # A_RR) is above a threshold; the replicates that fail are known from the draws
    design = res.model.design
    Zs = [term_matrix(t) for t in design.terms]
    Y = simulate(design, res, np.random.default_rng(1), Zs, 20)
    X = design.X
    rss = ((Y - (X @ np.linalg.lstsq(X, Y.T, rcond=None)[0]).T) ** 2).sum(axis=1)
    cut = float(np.sort(rss)[15])  # the 4 largest fail
    real = Refitter.minimize
    slot = refitmod._FIELDS.index("A_RR")

    def flaky(self, args, start):
        if args[slot][-1, -1] > cut + 1e-9 * cut:
            raise RuntimeError("refit did not converge")
        return real(self, args, start)

    monkeypatch.setattr(refitmod.Refitter, "minimize", flaky)
    for n_jobs in (1, 2):
        with pytest.warns(ConvergenceWarning, match="4 of 20"):
            b = res.bootstrap(20, seed=1, progressbar=False, n_jobs=n_jobs)
        assert b.n_failed == 4
        failed = b.replicates.isna().all(axis=1).to_numpy()
        np.testing.assert_array_equal(failed, rss > cut + 1e-9 * cut)
        assert "4 failed" in repr(b)


def test_progressbar_and_errors(res, capsys):
    res.bootstrap(3, seed=1, progressbar=True)
    assert "bootstrap 3/3" in capsys.readouterr().err
    res.bootstrap(3, seed=1, progressbar=False)
    assert capsys.readouterr().err == ""
    res.bootstrap(200, seed=1, progressbar=True, n_jobs=2)  # bar drawn by the parent
    assert "bootstrap 200/200" in capsys.readouterr().err
    with pytest.raises(MethodError, match="positive whole number"):
        res.bootstrap(0)
    for bad in (0, 1.5, True):
        with pytest.raises(MethodError, match="n_jobs must be"):
            res.bootstrap(3, n_jobs=bad)
    b = res.bootstrap(3, seed=1, progressbar=False)
    assert isinstance(b, Bootstrap)
    with pytest.raises(MethodError, match="kind"):
        b.confint(kind="bca")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = res.confint(method="bootstrap", n=10, seed=1, progressbar=False)
        ci1 = res.confint(method="bootstrap", n=10, seed=1, progressbar=False, n_jobs=1)
    assert ci.shape == (6, 2)
    pd.testing.assert_frame_equal(ci, ci1)
    with pytest.raises(MethodError, match="unexpected"):
        res.confint(method="bootstrap", nsim=10)
