"""Default scale-aware priors and validation of user overrides."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import hierlm
from hierlm.errors import PriorError
from hierlm.estimate.priors import default_priors, resolve_priors


@pytest.fixture(scope="module")
def design() -> hierlm.design.terms.ModelDesign:
    return hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())


def test_defaults_follow_data_scale(design: Any) -> None:
    pr = default_priors(design)
    sy, sx = np.std(design.y), np.std(design.X[:, 1])
    mx = np.mean(design.X[:, 1])
    assert pr.beta_mu.tolist() == pytest.approx([np.mean(design.y), 0.0])
    assert pr.beta_sigma.tolist() == pytest.approx(
        [2.5 * sy * np.sqrt(1 + (mx / sx) ** 2), 2.5 * sy / sx])
    assert pr.sigma_scale == pytest.approx(sy) and pr.sigma_nu == 3
    assert pr.sd_scale[0].tolist() == pytest.approx([sy, sy / sx])
    assert pr.lkj_eta == [2.0] and pr.labels == ["Subject"]


def test_centered_intercept_prior_is_spec() -> None:
    df = hierlm.load_sleepstudy()
    df["Days"] = df["Days"] - df["Days"].mean()
    d = hierlm.build_design("Reaction ~ Days + (1 | Subject)", df)
    pr = default_priors(d)
    assert pr.beta_sigma[0] == pytest.approx(2.5 * np.std(d.y))


def test_overrides(design: Any) -> None:
    pr = resolve_priors(design, {
        "beta": {"Days": {"mu": 1, "sigma": 5}, "(Intercept)": {"sigma": 100}},
        "sigma": {"scale": 10, "nu": 4},
        "sd": {"Subject": {"scale": 20, "Days": {"scale": 5}}},
        "lkj_eta": 4,
    })
    assert pr.beta_mu[1] == 1 and pr.beta_sigma.tolist() == [100, 5]
    assert pr.beta_mu[0] == pytest.approx(np.mean(design.y))
    assert (pr.sigma_scale, pr.sigma_nu) == (10, 4)
    assert pr.sd_scale[0].tolist() == [20, 5]
    assert pr.lkj_eta == [4.0]
    assert resolve_priors(design, {"lkj_eta": {"Subject": 1.5}}).lkj_eta == [1.5]
    full = pr.as_dict(design)
    again = resolve_priors(design, full)
    assert again.sd_scale[0].tolist() == [20, 5] and again.lkj_eta == [4.0]


def test_describe_lists_every_prior(design: Any) -> None:
    lines = default_priors(design).describe(design)
    assert len(lines) == 2 + 1 + 2 + 1
    assert lines[-1] == "corr_Subject ~ LKJ(eta=2)"


def test_uncorrelated_terms_get_group_labels() -> None:
    d = hierlm.build_design("Reaction ~ Days + (Days || Subject)", hierlm.load_sleepstudy())
    pr = resolve_priors(d, {"sd": {"Subject.1": {"scale": 3}}})
    assert pr.labels == ["Subject", "Subject.1"] and pr.sd_scale[1].tolist() == [3]


@pytest.mark.parametrize("priors", [
    {"sigmaa": {"scale": 1}},
    {"beta": {"Day": {"sigma": 1}}},
    {"beta": {"Days": {"sd": 1}}},
    {"sd": {"Subj": {"scale": 1}}},
    {"sd": {"Subject": {"Dayz": {"scale": 1}}}},
    {"sigma": {"scale": -1}},
    {"sigma": {"scale": 0}},
    {"sigma": {"scale": float("inf")}},
    {"sigma": {"nu": float("nan")}},
    {"sigma": 3},
    {"sigma": {"scale": "3"}},
    {"sigma": {"scale": True}},
    {"beta": {"Days": {"mu": None}}},
    {"beta": {"Days": 1.0}},
    {"sd": {"Subject": {"scale": -2}}},
    {"sd": {"Subject": {"Days": {"scale": 0}}}},
    {"lkj_eta": 0},
    {"lkj_eta": "2"},
    {"lkj_eta": {"Residual": 2}},
    ["sigma"],
])
def test_bad_priors_raise(design: Any, priors: Any) -> None:
    with pytest.raises(PriorError) as err:
        resolve_priors(design, priors)
    assert "\n" not in str(err.value)


def test_lkj_eta_needs_correlated_group() -> None:
    d = hierlm.build_design("Reaction ~ Days + (1 | Subject)", hierlm.load_sleepstudy())
    with pytest.raises(PriorError, match="correlated"):
        resolve_priors(d, {"lkj_eta": {"Subject": 2}})
