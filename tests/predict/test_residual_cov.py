"""Marginal moments and simulation with residual structures.

The seed's three-visit covariance of ``(1 + t | g)`` (tests/predict/test_moments.py)
with AR(1) errors added has the closed form ``tau_a^2 + tau_ab (s + t) + tau_b^2 s t +
sigma^2 phi^|s - t|``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm
from tests.residual_data import residual_data


def _vc(res: hierlm.FitResult, group: str, t1: str, t2: str | None = None) -> float:
    vc = res.varcorr
    sel = (vc.group == group) & (vc.term1 == t1) & (
        vc.term2.isna() if t2 is None else vc.term2 == t2)
    return float(vc.loc[sel, "variance_or_cov"].iloc[0])


def _longitudinal(seed: int = 11, phi: float = 0.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(40), 5)
    t = np.tile(np.arange(-2.0, 3.0), 40)
    ab = rng.multivariate_normal([0, 0], [[4.0, 0.6], [0.6, 1.0]], size=40)
    e = np.zeros(len(t))
    for i in range(len(t)):  # AR(1) errors within each person
        e[i] = rng.normal() if i % 5 == 0 else phi * e[i - 1] + np.sqrt(1 - phi**2) * rng.normal()
    y = 1.0 + 0.5 * t + ab[g, 0] + ab[g, 1] * t + e
    return pd.DataFrame({"y": y, "t": t, "g": g, "visit": (t + 3).astype(int)})


def test_three_visit_covariance_with_ar1_errors_closed_form() -> None:
    res = hierlm.fit("y ~ t + (1 + t | g)", _longitudinal(), residual="ar1(visit | g)")
    ta2, tb2 = _vc(res, "g", "(Intercept)"), _vc(res, "g", "t")
    tab = _vc(res, "g", "(Intercept)", "t")
    phi, s2 = res.residual_parameters["rho"], res.sigma**2
    rows = pd.DataFrame({"t": [-1.0, 0.0, 1.0], "g": [99] * 3, "visit": [2, 3, 4]},
                        index=["a", "b", "c"])
    mean, cov = res.marginal_moments(rows)
    tt = rows.t.to_numpy()
    expected = ta2 + tab * (tt[:, None] + tt[None, :]) + tb2 * np.outer(tt, tt)
    expected += s2 * phi ** np.abs(tt[:, None] - tt[None, :])
    np.testing.assert_allclose(cov.to_numpy(), expected, rtol=1e-10, atol=1e-10)
    assert 0.2 < phi < 0.8 and list(cov.index) == ["a", "b", "c"]
    # another person: only... nothing shared
    two = pd.DataFrame({"t": [0.0, 0.0], "g": [1, 2], "visit": [3, 3]})
    _, c2 = res.marginal_moments(two)
    assert c2.iloc[0, 1] == 0.0


def test_varident_and_cs_moments() -> None:
    d = residual_data("oats")
    res = hierlm.fit("yield ~ nitro + Variety + (1 | Block)", d, residual="cs(1 | plot)",
                     sigma="~ Variety")
    rows = pd.DataFrame({"nitro": [0.0, 0.2, 0.0], "Variety": ["Victory"] * 3,
                         "Block": ["I", "I", "I"], "plot": ["x", "x", "y"]})
    _, cov = res.marginal_moments(rows)
    tau = _vc(res, "Block", "(Intercept)")
    ratio = np.exp(res.residual_parameters["log_sd_ratio:VarietyVictory"])
    rho, s2 = res.residual_parameters["rho"], (res.sigma * ratio) ** 2
    expected = tau + np.array([[s2, rho * s2, 0], [rho * s2, s2, 0], [0, 0, s2]])
    np.testing.assert_allclose(cov.to_numpy(), expected, rtol=1e-10)


def test_simulated_residual_covariance_matches_the_fit() -> None:
    """Simulation: the empirical covariance of y* - E[y* | b] over many draws of one
    person's rows equals the fitted residual covariance."""
    res = hierlm.fit("y ~ t + (1 + t | g)", _longitudinal(), residual="ar1(visit | g)")
    rows = pd.DataFrame({"t": [-1.0, 0.0, 2.0], "g": [7] * 3, "visit": [2, 3, 5]})
    sims = res.simulate(nsim=40000, seed=3, newdata=rows).to_numpy()
    _, cov = res.marginal_moments(rows)
    np.testing.assert_allclose(np.cov(sims), cov.to_numpy(), rtol=0.05, atol=0.05)
    fitted_rows = res.simulate(nsim=2, seed=1)
    assert fitted_rows.shape == (200, 2)


def test_a_saved_result_has_no_residual_structure_to_use(tmp_path: object) -> None:
    res = hierlm.fit("y ~ t + (1 + t | g)", _longitudinal(), residual="ar1(visit | g)")
    path = f"{tmp_path}/fit"
    res.save(path)
    back = hierlm.load(path)
    pd.testing.assert_series_equal(back.residual_parameters, res.residual_parameters)
    np.testing.assert_allclose(back.residual_sd().to_numpy(), res.residual_sd().to_numpy())
    with pytest.raises(hierlm.MethodError, match="residual structure"):
        back.marginal_moments(pd.DataFrame({"t": [0.0], "g": [1], "visit": [1]}))
