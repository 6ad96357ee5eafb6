"""NUTS on structured covariance terms (ar1, cs, toep): density, recovery, calibration.

The log density is checked against a dense brute-force marginal likelihood plus the
documented priors, computed here in numpy from the data frame; recovery and an
SBC-style calibration check use data simulated from known parameters.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

import hierlm
from hierlm.estimate.nuts_model import compiled
from hierlm.estimate.priors import resolve_priors

SMALL = {"draws": 300, "tune": 300, "chains": 2, "progressbar": False, "cores": 1}


def simulate(rng: np.random.Generator, sd: float, rho: float, sigma: float,
             beta: np.ndarray, n_sub: int = 30, T: int = 4, reps: int = 2) -> pd.DataFrame:
    """Replicated cells (``reps`` per subject and time): an ar1 term with known truth."""
    lag = np.abs(np.subtract.outer(np.arange(T), np.arange(T)))
    S = sd**2 * rho**lag
    rows = []
    for g in range(n_sub):
        b = rng.multivariate_normal(np.zeros(T), S)
        for t in range(T):
            for _ in range(reps):
                mu = beta[0] + (beta[t] if t else 0.0)
                rows.append((f"s{g:02d}", f"t{t}", mu + b[t] + sigma * rng.normal()))
    return pd.DataFrame(rows, columns=["g", "time", "y"])


def quiet_fit(formula: str, data: pd.DataFrame, **kwargs: Any) -> hierlm.FitResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hierlm.fit(formula, data, method="nuts", **kwargs)


def _lag_corr(structure: str, p: int, r: np.ndarray) -> np.ndarray:
    """Dense R from the sampled correlation parameters, written out independently."""
    lag = np.abs(np.subtract.outer(np.arange(p), np.arange(p)))
    if structure == "ar1":
        return r[0] ** lag
    if structure == "cs":
        return np.where(lag == 0, 1.0, r[0])
    a1, a2 = r  # p = 3: rho1 = a1, rho2 = a1^2 + a2 (1 - a1^2)
    return np.array([1.0, a1, a1**2 + a2 * (1 - a1**2)])[lag]


def brute_logp(df: pd.DataFrame, pr: Any, structure: str, beta: np.ndarray, sigma: float,
               sd: np.ndarray, r: np.ndarray) -> float:
    """log p(y | ...) + log prior, by dense per-subject Gaussians."""
    times = sorted(df["time"].unique())
    p = len(times)
    R = _lag_corr(structure, p, r)
    sdv = np.broadcast_to(sd, (p,))
    S = sdv[:, None] * R * sdv[None, :]
    ll = 0.0
    for _, sub in df.groupby("g"):
        Z = (sub["time"].to_numpy()[:, None] == np.array(times)[None, :]).astype(float)
        X = np.column_stack([np.ones(len(sub)), Z[:, 1:]])
        V = sigma**2 * np.eye(len(sub)) + Z @ S @ Z.T
        ll += st.multivariate_normal(X @ beta, V).logpdf(sub["y"].to_numpy())
    lp = st.norm.logpdf(beta, pr.beta_mu, pr.beta_sigma).sum()
    lp += st.t.logpdf(sigma / pr.sigma_scale, pr.sigma_nu) - np.log(pr.sigma_scale)
    scale = pr.sd_scale[0]
    if structure == "ar1":  # homogeneous: geometric mean of the columns' scales
        scale = np.exp(np.mean(np.log(scale)))
        sd = np.atleast_1d(sd)[:1]
    lp += st.halfnorm.logpdf(sd, scale=scale).sum()
    return float(ll + lp)  # Uniform correlation priors: constant


@pytest.mark.parametrize(("structure", "formula"), [
    ("ar1", "y ~ time + ar1(0 + time | g)"),
    ("cs", "y ~ time + cs(0 + time | g)"),
    ("toep", "y ~ time + toep(0 + time | g)"),
])
def test_log_density_matches_dense_marginal(structure: str, formula: str) -> None:
    rng = np.random.default_rng(5)
    T = 3 if structure == "toep" else 4
    df = simulate(rng, 1.5, 0.5, 1.0, np.array([1.0, 0.3, 0.6, 0.9]), n_sub=12, T=T)
    model = hierlm.Model(formula, df)
    obj = model.objective
    assert list(obj.design.fixef_names) == ["(Intercept)"] + [f"timet{t}" for t in range(1, T)]
    pr = resolve_priors(obj.design)
    c = compiled(obj, pr)
    logp = c.model.compile_logp(jacobian=False)
    hom = structure == "ar1"
    name = "pacf_g" if structure == "toep" else "rho_g"
    lo = -1.0 / (T - 1) if structure == "cs" else -1.0
    got, want = [], []
    for _ in range(4):
        beta = np.array([1.0, 0.3, 0.6, 0.9][:T]) + 0.2 * rng.normal(size=T)
        sigma = float(np.exp(0.3 * rng.normal()))
        sd = np.exp(0.3 * rng.normal(size=1 if hom else T)) * 1.5
        r = rng.uniform(lo + 0.05, 0.95, size=T - 1 if structure == "toep" else 1)
        point = {"beta": beta, "sigma_log__": np.log(sigma),
                 "sd_g_log__": np.log(sd[0]) if hom else np.log(sd),
                 f"{name}_interval__": np.log((r - lo) / (1.0 - r))
                 if structure == "toep" else float(np.log((r[0] - lo) / (1.0 - r[0])))}
        got.append(float(logp(point)))
        want.append(brute_logp(df, pr, structure, beta, sigma, sd, r))
    got_d, want_d = np.diff(got), np.diff(want)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-8, atol=1e-7)
    assert np.ptp(want) > 1.0  # the points differ in density: the check has teeth


def test_ar1_recovers_rho_and_reports_names() -> None:
    rng = np.random.default_rng(11)
    truth = {"sd": 2.0, "rho": 0.6, "sigma": 1.0}
    df = simulate(rng, truth["sd"], truth["rho"], truth["sigma"], np.array([1.0, 0.5, 1.0, 1.5]),
                  n_sub=40)
    res = quiet_fit("y ~ time + ar1(0 + time | g)", df, random_seed=2, **SMALL)
    post = res.idata["posterior"]
    assert {"sd_g", "rho_g", "sigma", "theta"} <= set(post.data_vars)
    assert post["rho_g"].dims == ("chain", "draw")
    for name, key in (("rho_g", "rho"), ("sd_g", "sd"), ("sigma", "sigma")):
        m, s = float(post[name].mean()), float(post[name].std())
        assert abs(m - truth[key]) < 3 * s, (name, m, s)
    assert "rho_g" in res.nuts.diagnostics.index
    assert "rho_g ~ Uniform(-1, 1)" in res.nuts.prior_lines
    assert "lkj_eta" not in res.nuts.priors or "g" not in res.nuts.priors["lkj_eta"]
    vc = res.varcorr
    corr = vc[(vc["term1"] == "timet0") & (vc["term2"] == "timet1")]["sd_or_corr"].iloc[0]
    assert corr == pytest.approx(float(post["rho_g"].median()), abs=1e-9)


def test_toep_reports_lag_correlations() -> None:
    rng = np.random.default_rng(3)
    df = simulate(rng, 1.5, 0.5, 1.0, np.array([1.0, 0.3, 0.6]), n_sub=20, T=3)
    res = quiet_fit("y ~ time + toep(0 + time | g)", df, random_seed=1,
                    **{**SMALL, "draws": 100, "tune": 100})
    post = res.idata["posterior"]
    assert post["pacf_g"].dims == ("chain", "draw", "g_lag")
    a = post["pacf_g"].values
    np.testing.assert_allclose(post["rho_g"].values[..., 1],
                               a[..., 0] ** 2 + a[..., 1] * (1 - a[..., 0] ** 2), atol=1e-12)
    assert list(post["rho_g"].coords["g_lag"].values) == ["lag1", "lag2"]


def test_homogeneous_diag_has_one_sd_and_survives_save_load(tmp_path: Any) -> None:
    df = simulate(np.random.default_rng(4), 1.5, 0.0, 1.0, np.array([1.0, .5, 1, 1.5]),
                  n_sub=20)
    res = quiet_fit("y ~ time + diag(0 + time | g, hom=True)", df, random_seed=2,
                    **{**SMALL, "draws": 100, "tune": 100, "chains": 1})
    post = res.idata["posterior"]
    assert post["sd_g"].dims == ("chain", "draw")
    assert not any(str(v).startswith(("rho_", "corr_", "pacf_")) for v in post.data_vars)
    theta = post["theta"].values
    np.testing.assert_array_equal(theta[..., [1, 2, 3, 5, 6, 8]], 0.0)  # off-diagonals
    np.testing.assert_allclose(theta[..., 0], post["sd_g"].values / post["sigma"].values)
    res.save(str(tmp_path / "fit.nc"))
    back = hierlm.load(tmp_path / "fit.nc")
    np.testing.assert_allclose(back.theta, res.theta)
    assert back.method == "NUTS"


SBC_PRIORS = {"beta": {n: {"mu": 0.0, "sigma": 1.0}
                       for n in ("(Intercept)", "timet1", "timet2", "timet3")},
              "sigma": {"scale": 1.0, "nu": 3.0}, "sd": {"g": {"scale": 1.0}}}


def sbc_ranks(n_rep: int, seed: int, n_keep: int = 99) -> dict[str, np.ndarray]:
    """Ranks of the truth among ``n_keep`` thinned posterior draws, per parameter.

    Each replicate draws the truth from the fit's own (fixed) prior, simulates an ar1
    data set, and fits short chains; calibrated inference makes each rank uniform on
    ``0..n_keep`` (Talts et al. 2018, simulation-based calibration)."""
    rng = np.random.default_rng(seed)
    ranks: dict[str, list[int]] = {"rho_g": [], "sd_g": [], "sigma": []}
    for i in range(n_rep):
        truth = {"beta": rng.normal(size=4), "sigma": abs(float(rng.standard_t(3))),
                 "sd_g": abs(float(rng.normal())), "rho_g": float(rng.uniform(-1, 1))}
        df = simulate(rng, truth["sd_g"], truth["rho_g"], truth["sigma"], truth["beta"],
                      n_sub=20)
        res = quiet_fit("y ~ time + ar1(0 + time | g)", df, priors=SBC_PRIORS,
                        random_seed=1000 + i, draws=200, tune=300, chains=2,
                        progressbar=False, cores=1)
        post = res.idata["posterior"]
        for name in ranks:
            draws = post[name].values.ravel()
            keep = draws[np.linspace(0, draws.size - 1, n_keep).astype(int)]
            ranks[name].append(int(np.sum(keep < truth[name])))
    return {k: np.array(v) for k, v in ranks.items()}


def uniformity_pvalue(ranks: np.ndarray, n_keep: int = 99, bins: int = 5) -> float:
    """Chi-square test of the binned ranks (``0..n_keep``) against uniform."""
    counts = np.bincount(ranks * bins // (n_keep + 1), minlength=bins)
    return float(st.chisquare(counts).pvalue)


@pytest.mark.slow
def test_sbc_ar1_is_calibrated() -> None:
    ranks = sbc_ranks(50, seed=2026)
    pvals = {k: uniformity_pvalue(v) for k, v in ranks.items()}
    # three tests at 0.005 each: a calibrated sampler fails with probability < 1.5%
    assert min(pvals.values()) > 0.005, pvals
