"""``FitResult.to_datatree``: observed and constant data, and a bootstrap group laid out
as a NUTS posterior."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.errors import MethodError
from hierlm.results.parameters import parameter_names, sdcor_from_theta


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
    assert sorted(tree.children) == ["constant_data", "observed_data"]
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
