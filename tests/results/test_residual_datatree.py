"""The DataTree of a fit with residual= / sigma= carries the residual parameters,
named by what they are."""

from __future__ import annotations

import numpy as np
import pytest

import hierlm


@pytest.fixture(scope="module")
def data():
    d = hierlm.load_sleepstudy()
    d["late"] = (d["Days"] > 4).map({True: "late", False: "early"})
    return d


def test_estimate_has_phi_and_log_sd_ratios(data) -> None:
    res = hierlm.fit("Reaction ~ Days + (1 | Subject)", data, residual="ar1(Days | Subject)",
                     sigma="~ late")
    est = res.to_datatree()["estimate"]
    par = res.residual_parameters
    assert float(est["ar1_phi"]) == par["rho"]
    assert "one visit apart" in est["ar1_phi"].attrs["long_name"]
    assert est["log_sd_ratio"].dims == ("sigma_term",)
    assert list(est["log_sd_ratio"]["sigma_term"].values) == ["latelate"]
    assert float(est["log_sd_ratio"].sel(sigma_term="latelate")) == par["log_sd_ratio:latelate"]
    # the SD of a late row: sigma * exp(log_sd_ratio), as residual_sd() reports
    late_sd = float(est["sigma"]) * np.exp(float(est["log_sd_ratio"][0]))
    assert late_sd == pytest.approx(res.residual_sd()[data["late"] == "late"].iloc[0], rel=1e-12)


@pytest.mark.parametrize("structure, name", [("cs(1 | Subject)", "cs_rho"),
                                             ("car1(Days | Subject)", "car1_phi")])
def test_correlation_named_by_structure(data, structure: str, name: str) -> None:
    res = hierlm.fit("Reaction ~ Days + (Days | Subject)", data, residual=structure)
    est = res.to_datatree()["estimate"]
    assert float(est[name]) == res.residual_parameters["rho"]
    assert "log_sd_ratio" not in est and "rho" not in est


def test_bootstrap_group_has_the_residual_parameters(data) -> None:
    res = hierlm.fit("Reaction ~ Days + (1 | Subject)", data, residual="ar1(Days | Subject)",
                     sigma="~ late")
    b = res.bootstrap(3, seed=2)
    boot = res.to_datatree(bootstrap=b)["bootstrap"]
    assert boot["ar1_phi"].dims == ("chain", "draw")
    np.testing.assert_array_equal(boot["ar1_phi"].values[0], b.replicates["rho"].to_numpy())
    np.testing.assert_array_equal(boot["log_sd_ratio"].values[0, :, 0],
                                  b.replicates["log_sd_ratio:latelate"].to_numpy())


def test_fit_without_residual_structure_unchanged(data) -> None:
    est = hierlm.fit("Reaction ~ Days + (1 | Subject)", data).to_datatree()["estimate"]
    assert set(est.data_vars) == {"sigma", "beta", "sd_Subject", "beta_se"}
