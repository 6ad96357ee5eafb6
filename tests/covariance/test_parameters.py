"""The theta/sigma <-> sd/cor map against lme4's VarCorr, and its inverse."""

from __future__ import annotations

import numpy as np
import pytest

import hierlm
from hierlm.covariance.layout import theta_lower
from hierlm.covariance.parameters import parameter_names, sdcor_from_theta, theta_from_sdcor
from tests.conftest import dataset, reference


@pytest.mark.parametrize("key", ["sleepstudy_slopes_reml", "pastes_nested_ml",
                                 "sleepstudy_zerocorr_reml", "penicillin_crossed_reml"])
def test_sdcor_of_lme4_theta_matches_lme4_varcorr(key: str) -> None:
    ref = reference()[key]
    design = hierlm.build_design(ref["formula"], dataset(ref["data"]))
    got = sdcor_from_theta(design, np.asarray(ref["theta"]), ref["sigma"])
    names = parameter_names(design)
    expected = {}
    for row in ref["varcorr"]:
        if row["grp"] == "Residual":
            expected["sigma"] = row["sdcor"]
            continue
        grp = row["grp"].split(".")[0]
        if row["var2"] is None:
            expected[f"sd_{row['var1']}|{grp}"] = row["sdcor"]
        else:
            expected[f"cor_{row['var2']}.{row['var1']}|{grp}"] = row["sdcor"]
    assert sorted(expected) == sorted(names)
    np.testing.assert_allclose(got, [expected[n] for n in names], rtol=1e-10)


def test_inverse_round_trip_on_random_templates() -> None:
    d = hierlm.build_design("Reaction ~ Days + (Days | Subject) + (1 | Subject:Days)",
                            dataset("sleepstudy").assign(Days=lambda f: f["Days"] % 3))
    rng = np.random.default_rng(1)
    lower = theta_lower(d)
    for _ in range(50):
        theta = rng.normal(size=d.n_theta)
        theta[lower == 0] = np.abs(theta[lower == 0])
        sigma = float(rng.uniform(0.5, 3))
        back, s = theta_from_sdcor(d, sdcor_from_theta(d, theta, sigma))
        np.testing.assert_allclose(back, theta, rtol=1e-9, atol=1e-12)
        assert s == pytest.approx(sigma)


def test_zero_sd_gives_zero_template_column() -> None:
    d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", dataset("sleepstudy"))
    theta, _ = theta_from_sdcor(d, np.array([0.0, 0.3, 2.0, 1.0]))
    np.testing.assert_allclose(theta, [0.0, 0.0, 2.0])


def test_batched_draws() -> None:
    d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", dataset("sleepstudy"))
    theta = np.array([[1.0, 0.0, 0.5], [2.0, 1.0, 1.0]])
    got = sdcor_from_theta(d, theta, np.array([2.0, 1.0]))
    assert got.shape == (2, 4)
    np.testing.assert_allclose(got[1], [2.0, 1 / np.sqrt(2), np.sqrt(2), 1.0])
