"""Profile and Wald intervals against lme4's confint (lme4_inference.json)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.errors import MethodError
from tests.conftest import dataset, inference_reference

REF = inference_reference()
PROFILED = [c for c in REF if "confint_profile_95" in REF[c]]


def fit(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hierlm.fit(REF[case]["formula"], dataset(REF[case]["data"]))


@pytest.mark.parametrize("case", PROFILED)
def test_profile_confint_matches_lme4(case):
    ref = pd.DataFrame(REF[case]["confint_profile_95"]).set_index("parameter")
    ci = fit(case).confint(method="profile")
    assert list(ci.index) == list(ref.index)  # lme4's names and order
    for col in ["lower", "upper"]:
        exact_zero = ref[col] == 0  # the bound itself (pastes' batch SD reaches 0)
        assert (ci.loc[exact_zero, col] == 0).all()
        np.testing.assert_allclose(ci.loc[~exact_zero, col], ref.loc[~exact_zero, col],
                                   rtol=2e-3)


@pytest.mark.parametrize("case", PROFILED)
def test_wald_confint_matches_lme4(case):
    ref = pd.DataFrame(REF[case]["confint_wald_95"]).set_index("parameter")
    ci = fit(case).confint(method="wald")
    # endpoints beta -/+ z se: the SE carries the fit's difference from lme4 (2.7e-5 relative
    # for penicillin), within the 1e-3 on SEs
    np.testing.assert_allclose(ci.loc[ref.index].to_numpy(), ref.to_numpy(), rtol=1e-4)
    assert ci.drop(index=ref.index).isna().all().all()  # variance parameters: NaN, as lme4


def test_profile_trace_is_signed_root_deviance():
    res = fit("dyestuff")
    tab = res.profile(points=4)
    assert list(tab.columns) == ["parameter", "value", "zeta"]
    for name, g in tab.groupby("parameter"):
        g = g.sort_values("value")
        assert np.all(np.diff(g["zeta"]) > 0), name  # monotone increasing
    # zeta of the fixed effect is exactly linear in beta when theta is fixed; with theta
    # re-optimized it is close to the Wald line near the estimate
    g = tab[tab["parameter"] == "(Intercept)"].sort_values("value")
    ml = res.model.fit("ml")
    wald = (g["value"] - ml.fixef.iloc[0]) / ml.fixef_se.iloc[0]
    mid = np.abs(wald) < 1
    np.testing.assert_allclose(g.loc[mid, "zeta"], wald[mid], atol=0.1)


def test_confint_errors(tmp_path):
    res = fit("dyestuff")
    with pytest.raises(MethodError, match="unknown confint method"):
        res.confint(method="exact")
    with pytest.raises(MethodError, match="level"):
        res.confint(method="wald", level=95)
    res.save(str(tmp_path / "fit"))
    back = hierlm.load(str(tmp_path / "fit"))
    with pytest.raises(MethodError, match="FitResult.model"):
        back.confint(method="profile")
    with pytest.raises(MethodError, match="FitResult.model"):
        back.bootstrap(10)
    with pytest.raises(MethodError, match="FitResult.model"):
        back.ranova()
    assert back.confint(method="wald").shape == (1, 2)
