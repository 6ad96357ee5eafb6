"""hierlm against lme4 1.1-31 on every model and method in the reference file.

Tolerances (from the core specification): objective within 1e-6 relative or lower;
fixed effects within 1e-3 of their SE; SEs, SDs, correlations and sigma within 1e-3
relative; conditional modes and SDs within 1e-3 relative (1e-6 absolute near zero).
"""

from __future__ import annotations

import numpy as np
import pytest

import hierlm
from tests.conftest import dataset, reference

SMALL = [k for k in reference() if not k.startswith("insteval")]
LARGE = [k for k in reference() if k.startswith("insteval")]


def _as_list(v: object) -> list[float]:
    return list(v.values()) if isinstance(v, dict) else list(np.atleast_1d(v))  # type: ignore[arg-type]


def _close(actual: float, expected: float, rel: float = 1e-3, abs_: float = 1e-6) -> bool:
    return abs(actual - expected) <= max(rel * abs(expected), abs_)


@pytest.fixture(scope="module")
def fits() -> dict:
    return {}


def _fit(key: str, cache: dict) -> hierlm.FitResult:
    if key not in cache:
        ref = reference()[key]
        cache[key] = hierlm.fit(ref["formula"], dataset(ref["data"]), method=ref["method"].lower())
    return cache[key]


def check_against_lme4(res: hierlm.FitResult, ref: dict, ranef: bool = True) -> None:
    obj = ref["deviance_or_reml"]
    assert res.objective <= obj + 1e-6 * abs(obj), (res.objective, obj)
    assert res.nobs == ref["nobs"]
    ref_fixef = ref["fixef"]
    ref_se = _as_list(ref["se"])
    names = list(ref_fixef)
    # Same coefficients; their order follows the level order of the data's labels
    # (strings here, numbers in R), so compare by name.
    assert sorted(res.fixef.index) == sorted(names)
    for name, se in zip(names, ref_se, strict=True):
        assert abs(res.fixef[name] - ref_fixef[name]) <= 1e-3 * se, name
        assert _close(res.fixef_se[name], se), name
    assert _close(res.sigma, ref["sigma"])
    assert res.is_singular == ref["singular"]
    vc = res.varcorr
    assert len(vc) == len(ref["varcorr"])
    for row, r in zip(vc.itertuples(), ref["varcorr"], strict=True):
        assert row.group == r["grp"]
        assert (row.term1, row.term2) == (r["var1"], r["var2"])
        assert _close(row.sd_or_corr, r["sdcor"]), (row, r)
    assert _close(res.loglik, ref["loglik"], rel=1e-6)
    assert _close(res.aic, ref["aic"], rel=1e-6) and _close(res.bic, ref["bic"], rel=1e-6)
    if ranef and ref.get("ranef"):
        rr = ref["ranef"]
        table = res.ranef().set_index(["group", "term", "level"])
        assert len(table) == len(rr["condval"])
        for g, t, lev, val, sd in zip(rr["grpvar"], rr["term"], rr["grp"], rr["condval"],
                                      rr["condsd"], strict=True):
            row = table.loc[(g, t, lev)]
            assert _close(row["value"], val), (g, t, lev, row["value"], val)
            assert _close(row["cond_sd"], sd), (g, t, lev, row["cond_sd"], sd)


@pytest.mark.parametrize("key", SMALL)
def test_matches_lme4(key: str, fits: dict) -> None:
    check_against_lme4(_fit(key, fits), reference()[key])


def test_theta_matches_lme4_where_identified(fits: dict) -> None:
    for key in ["sleepstudy_slopes_ml", "penicillin_crossed_reml", "pastes_nested_ml"]:
        theta = _fit(key, fits).theta
        np.testing.assert_allclose(theta, _as_list(reference()[key]["theta"]), rtol=2e-3,
                                   atol=1e-5)


def test_mixedmodels_jl_sleepstudy_ml(fits: dict) -> None:
    """MixedModels.jl's test suite quotes theta = [0.92922, 0.01817, 0.22264]."""
    res = _fit("sleepstudy_slopes_ml", fits)
    np.testing.assert_allclose(res.theta, [0.92922, 0.01817, 0.22264], atol=5e-5)
    assert abs(res.objective - 1751.93934) < 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("key", LARGE)
def test_insteval_matches_lme4(key: str, fits: dict) -> None:
    check_against_lme4(_fit(key, fits), reference()[key], ranef=False)
