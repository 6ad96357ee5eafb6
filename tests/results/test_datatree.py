"""``FitResult.to_datatree``: observed and constant data, and a bootstrap group laid out
as a NUTS posterior."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.covariance.parameters import parameter_names, sdcor_from_theta
from hierlm.errors import MethodError


def small_bootstrap(res: hierlm.FitResult, n: int = 20) -> SimpleNamespace:
    """A parametric bootstrap by hand: simulate, refit, tabulate as the inference stage does."""
    sims = res.simulate(nsim=n, seed=9)
    design = res.model.design
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for j in range(n):
            r = res.model.with_response(sims.iloc[:, j].to_numpy()).fit("reml")
            rows.append([r.objective, *r.fixef, *sdcor_from_theta(design, r.theta, r.sigma)])
    cols = ["objective", *res.fixef.index, *parameter_names(design)]
    return SimpleNamespace(replicates=pd.DataFrame(rows, columns=cols))


@pytest.fixture(scope="module")
def sleep() -> hierlm.FitResult:
    data = hierlm.load_sleepstudy()
    data.index = [f"r{i}" for i in range(len(data))]
    return hierlm.fit("Reaction ~ Days + (Days | Subject)", data)


def test_observed_and_constant_data(sleep: hierlm.FitResult) -> None:
    tree = sleep.to_datatree()
    assert sorted(tree.children) == ["constant_data", "estimate", "observed_data"]
    y = tree["observed_data"]["y"]
    np.testing.assert_array_equal(y.values, sleep.y)
    assert list(y["obs"].values[:2]) == ["r0", "r1"]
    const = tree["constant_data"]
    np.testing.assert_array_equal(const["X"].values[:, 1], hierlm.load_sleepstudy().Days)
    assert list(const["coef"].values) == ["(Intercept)", "Days"]
    assert list(const["Subject"].values[:2]) == ["308", "308"]


def test_bootstrap_group(sleep: hierlm.FitResult) -> None:
    boot = small_bootstrap(sleep)
    tree = sleep.to_datatree(boot)
    b = tree["bootstrap"]
    assert b["sd_Subject"].dims == ("chain", "draw", "Subject_term")
    assert b["corr_Subject"].dims == ("chain", "draw", "Subject_pair")
    assert b["beta"].dims == ("chain", "draw", "coef") and b["sigma"].dims == ("chain", "draw")
    assert list(b["Subject_pair"].values) == ["(Intercept), Days"]
    rep = boot.replicates
    np.testing.assert_array_equal(b["sd_Subject"].sel(Subject_term="Days").values[0],
                                  rep["sd_Days|Subject"])
    np.testing.assert_array_equal(b["corr_Subject"].values[0, :, 0],
                                  rep["cor_Days.(Intercept)|Subject"])
    np.testing.assert_array_equal(b["beta"].sel(coef="Days").values[0], rep["Days"])
    with pytest.raises(MethodError, match="lack column"):
        sleep.to_datatree(SimpleNamespace(replicates=rep.drop(columns="sigma")))


def test_one_coefficient_terms_are_scalars_as_in_nuts() -> None:
    res = hierlm.fit("Reaction ~ Days + (1 | Subject)", hierlm.load_sleepstudy())
    b = res.to_datatree(small_bootstrap(res, n=4))["bootstrap"]
    assert b["sd_Subject"].dims == ("chain", "draw") and "Subject_term" not in b.coords


def test_reml_tree_holds_the_estimates_in_the_posterior_layout(
        sleep: hierlm.FitResult) -> None:
    from tests.conftest import reference

    ref = reference()["sleepstudy_slopes_reml"]
    est = sleep.to_datatree()["estimate"]
    assert est["beta"].dims == ("coef",) and est["sd_Subject"].dims == ("Subject_term",)
    assert est["corr_Subject"].dims == ("Subject_pair",) and est["sigma"].dims == ()
    np.testing.assert_allclose(est["beta"].values, list(ref["fixef"].values()), rtol=1e-6)
    np.testing.assert_allclose(est["beta_se"].values, list(ref["se"].values()), rtol=1e-4)
    np.testing.assert_allclose(est["sigma"].values, ref["sigma"], rtol=1e-5)
    sdcor = [r["sdcor"] for r in ref["varcorr"]]  # sd, sd, corr, residual sd
    np.testing.assert_allclose(est["sd_Subject"].values, sdcor[:2], rtol=2e-3)
    np.testing.assert_allclose(est["corr_Subject"].values, sdcor[2:3], rtol=2e-3, atol=2e-3)


def test_arviz_summarises_a_reml_bootstrap(sleep: hierlm.FitResult) -> None:
    az = pytest.importorskip("arviz")
    boot = small_bootstrap(sleep, n=8)
    table = az.summary(sleep.to_datatree(boot), group="bootstrap", kind="stats",
                       round_to="none")
    rep = boot.replicates
    assert table.loc["beta[Days]", "mean"] == pytest.approx(rep["Days"].mean(), rel=1e-12)
    assert table.loc["sigma", "sd"] == pytest.approx(rep["sigma"].std(ddof=1), rel=1e-12)
