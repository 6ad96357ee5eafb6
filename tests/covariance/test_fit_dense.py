"""REML/ML fits of every structure against a dense brute-force best-of-many-starts optimum.

Data: 14 subjects x 4 time points x 2 replicates (replicated cells, so that every
structure is identifiable beside the residual), simulated with heterogeneous SDs and
AR(1)-like correlations.  Tolerances from the issue: the criterion no worse than 1e-6
relative; fixed effects 1e-4; sigma, SDs and correlations 2e-3.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.covariance.design import CLASSES
from hierlm.errors import IdentifiabilityWarning
from tests.covariance.brute import HOM, DenseFit, n_corr

FORMULA = {
    "diag": "diag(0 + time | subject)", "homdiag": "diag(0 + time | subject, hom=True)",
    "cs": "cs(0 + time | subject)", "homcs": "cs(0 + time | subject, hom=True)",
    "ar1": "ar1(0 + time | subject)", "hetar1": "ar1(0 + time | subject, het=True)",
    "toep": "toep(0 + time | subject)", "homtoep": "toep(0 + time | subject, hom=True)",
}


def simulate(n_subjects: int = 14, p: int = 4, reps: int = 2, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sd = np.array([1.0, 1.3, 0.8, 1.5, 1.1, 0.9])[:p]
    lag = np.abs(np.subtract.outer(np.arange(p), np.arange(p)))
    Sigma = sd[:, None] * 0.6 ** lag * sd[None, :]
    b = rng.multivariate_normal(np.zeros(p), Sigma, size=n_subjects)
    rows = []
    for s in range(n_subjects):
        for t in range(p):
            for _ in range(reps):
                x = rng.normal()
                rows.append((f"s{s:02d}", f"t{t + 1}", x,
                             1.0 + 0.5 * x + b[s, t] + rng.normal(0, 0.7)))
    return pd.DataFrame(rows, columns=["subject", "time", "x", "y"])


@cache
def data() -> pd.DataFrame:
    return simulate()


@cache
def fitted(structure: str, reml: bool):
    with warnings.catch_warnings():
        warnings.simplefilter("error", IdentifiabilityWarning)
        return hierlm.fit(f"y ~ x + {FORMULA[structure]}", data(),
                          method="REML" if reml else "ML")


@cache
def brute(structure: str, reml: bool):
    res = fitted(structure, reml)
    dense = DenseFit(res.model.design, structure, reml)
    crit, v = dense.optimum()
    return dense, crit, v


CASES = [(s, True) for s in FORMULA] + [(s, False) for s in ("cs", "ar1", "toep", "homdiag")]


@pytest.mark.parametrize(("structure", "reml"), CASES)
def test_fit_matches_dense_brute_force(structure, reml):
    res = fitted(structure, reml)
    dense, crit, v = brute(structure, reml)
    assert res.converged
    # the criterion: no worse than the brute-force optimum (1e-6 relative) ...
    assert res.objective <= crit + 1e-6 * abs(crit)
    # ... and hierlm's own value agrees with the dense evaluation at its estimates
    p = 4
    cp = res.covariance_parameters
    n_sd = 1 if structure in HOM else p
    sds = cp.iloc[:n_sd].to_numpy()
    rhos = cp.iloc[n_sd:].to_numpy()
    assert len(rhos) == n_corr(structure, p)
    v_hat = np.concatenate([np.log(sds / res.sigma), rhos])
    crit_hat, beta_hat, sigma_hat = dense.gls(v_hat)
    assert res.objective == pytest.approx(crit_hat, rel=1e-9)
    np.testing.assert_allclose(res.fixef.to_numpy(), beta_hat, atol=1e-8)
    assert res.sigma == pytest.approx(sigma_hat, rel=1e-8)
    # parameters against the brute-force optimum
    crit_b, beta_b, sigma_b = dense.gls(v)
    np.testing.assert_allclose(res.fixef.to_numpy(), beta_b, atol=1e-4)
    assert res.sigma == pytest.approx(sigma_b, rel=2e-3)
    np.testing.assert_allclose(sds, np.exp(v[:n_sd]) * sigma_b, rtol=2e-3)
    np.testing.assert_allclose(rhos, v[n_sd:], atol=2e-3)


def test_varcorr_reports_implied_sds_and_every_correlation():
    res = fitted("ar1", True)
    vc = res.varcorr
    sub = vc[vc["group"] == "subject"]
    sd = res.covariance_parameters["subject: sd"]
    rho = res.covariance_parameters["subject: rho"]
    variances = sub[sub["term2"].isna()]
    np.testing.assert_allclose(variances["sd_or_corr"], sd, rtol=1e-10)
    pairs = sub[sub["term2"].notna()]
    assert len(pairs) == 6
    lags = [abs(int(a[-1]) - int(b[-1])) for a, b in zip(pairs["term1"], pairs["term2"],
                                                          strict=True)]
    np.testing.assert_allclose(pairs["sd_or_corr"], rho ** np.array(lags), rtol=1e-9)


def test_parameter_count_counts_the_structure():
    """AIC/BIC and the LRT count the structure's parameters, not theta's 10."""
    cs, us = fitted("cs", False), hierlm.fit("y ~ x + (0 + time | subject)", data(),
                                             method="ML")
    k_cs = 2 + 5 + 1  # 2 fixed effects, 4 SDs and rho, sigma
    assert cs.aic == pytest.approx(cs.objective + 2 * k_cs)
    assert cs.bic == pytest.approx(cs.objective + k_cs * np.log(cs.nobs))
    table = hierlm.anova(cs, us)
    assert table["npar"].tolist() == [k_cs, 2 + 10 + 1]
    assert table["df"].iloc[1] == 10 - 5
    assert table["chisq"].iloc[1] == pytest.approx(cs.objective - us.objective)
    assert cs.objective >= us.objective - 1e-6  # cs is nested in us


def test_unstructured_spelling_is_the_plain_term():
    """us(...) fits exactly as the plain term (same optimizer path, same numbers)."""
    a = hierlm.fit("y ~ x + us(0 + time | subject)", data())
    b = hierlm.fit("y ~ x + (0 + time | subject)", data())
    assert a.objective == b.objective
    np.testing.assert_array_equal(a.theta, b.theta)
    assert len(a.covariance_parameters) == 10


def test_structures_are_all_known():
    assert set(FORMULA) | {"us"} == set(CLASSES)


def test_block_criterion_equals_the_whole_dense_matrix():
    """The brute force's block-by-block criterion is the criterion of tests.dense."""
    from hierlm.covariance.design import DesignCovariance
    from tests.dense import profiled_criterion

    res = fitted("toep", True)
    design = res.model.design
    v = np.array([0.1, -0.2, 0.3, 0.0, 0.5, 0.2, -0.1])
    S = np.diag(np.exp(v[:4])) @ np.array(
        [[1, .5, .2, -.1], [.5, 1, .5, .2], [.2, .5, 1, .5], [-.1, .2, .5, 1]]) @ np.diag(
        np.exp(v[:4]))
    T = np.linalg.cholesky(S)
    rows, cols = np.tril_indices(4)
    order = np.lexsort((rows, cols))  # column-major lower triangle
    theta = T[rows[order], cols[order]]
    for reml in (True, False):
        dense = DenseFit(design, "toep", reml)
        assert dense.gls(np.concatenate([v[:4], [.5, .2, -.1]]))[0] == pytest.approx(
            profiled_criterion(design, theta, reml), rel=1e-10)
    assert DesignCovariance.of(design).n_theta == 10
