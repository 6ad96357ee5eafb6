"""Each structure's map psi -> Sigma -> theta, checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest

from hierlm.covariance.design import CLASSES
from hierlm.covariance.toeplitz import autocorrelations

RNG = np.random.default_rng(20231)
P = 4


def _make(name: str, p: int = P):
    rms = np.array([0.5, 1.0, 2.0, 1.5, 0.8, 1.2])[:p]
    return CLASSES[name](tuple(f"t{j}" for j in range(p)), "g", rms)


def _unpack(theta: np.ndarray, p: int) -> np.ndarray:
    T = np.zeros((p, p))
    k = 0
    for col in range(p):
        for row in range(col, p):
            T[row, col] = theta[k]
            k += 1
    return T


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_template_reproduces_the_structure(name):
    """theta(psi) is a lower-triangular factor of Sigma(psi) with a non-negative diagonal,
    and Sigma has the structure's pattern, checked entry by entry from natural()."""
    c = _make(name)
    for _ in range(5):
        psi = RNG.normal(scale=0.8, size=c.n_psi)
        T = _unpack(c.theta(psi), P)
        S = T @ T.T
        assert name == "us" or np.all(np.diag(T) >= 0)
        np.testing.assert_allclose(S, c.relative_covariance(psi), rtol=1e-12, atol=1e-14)
        assert np.linalg.eigvalsh(S).min() > 0
        nat = dict(zip(c.natural_names(), c.natural(psi, 2.0), strict=True))
        sd = np.sqrt(np.diag(S)) * 2.0
        R = S / np.outer(sd, sd) * 4.0
        if name in ("homdiag", "homcs", "ar1", "homtoep"):
            np.testing.assert_allclose(sd, nat["sd"], rtol=1e-12)
        elif name != "us":
            np.testing.assert_allclose(sd, [nat[f"sd_t{j}"] for j in range(P)], rtol=1e-12)
        lag = np.abs(np.subtract.outer(np.arange(P), np.arange(P)))
        if name in ("diag", "homdiag"):
            np.testing.assert_allclose(R, np.eye(P), atol=1e-14)
        elif name in ("cs", "homcs"):
            np.testing.assert_allclose(R[lag > 0], nat["rho"], rtol=1e-12)
        elif name in ("ar1", "hetar1"):
            np.testing.assert_allclose(R, nat["rho"] ** lag, rtol=1e-12, atol=1e-14)
        elif name in ("toep", "homtoep"):
            for k in range(1, P):
                np.testing.assert_allclose(R[lag == k], nat[f"rho_lag{k}"], rtol=1e-10)
        else:
            np.testing.assert_allclose(nat["cor_t1.t0"], R[1, 0], rtol=1e-12)


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_jacobian_matches_finite_differences(name):
    c = _make(name)
    psi = RNG.normal(scale=0.6, size=c.n_psi)
    h = 1e-6
    fd = np.column_stack([(c.theta(psi + h * e) - c.theta(psi - h * e)) / (2 * h)
                          for e in np.eye(c.n_psi)])
    np.testing.assert_allclose(c.jacobian(psi), fd, atol=1e-8)


def test_cs_covers_its_whole_positive_definite_range():
    """rho spans (-1/(p-1), 1): the limits of positive definiteness of a cs matrix."""
    c = _make("homcs")
    lo, hi = c.psi_bounds()[-1]
    rho_lo = c.rho(np.array([0.0, lo]))
    rho_hi = c.rho(np.array([0.0, hi]))
    assert rho_lo == pytest.approx(-1 / (P - 1), abs=1e-9)
    assert rho_hi == pytest.approx(1.0, abs=1e-9)
    assert c.rho(c.psi_start()) == pytest.approx(0.0, abs=1e-15)


def _pacf_yule_walker(rho: np.ndarray) -> np.ndarray:
    """Partial autocorrelations by solving the Yule-Walker systems (independent of
    the Durbin-Levinson recursion)."""
    full = np.concatenate([[1.0], rho])
    out = []
    for k in range(1, len(rho) + 1):
        R = full[np.abs(np.subtract.outer(np.arange(k), np.arange(k)))]
        out.append(np.linalg.solve(R, full[1:k + 1])[-1])
    return np.array(out)


def test_toeplitz_autocorrelations_invert_yule_walker():
    for _ in range(10):
        pacf = np.tanh(RNG.normal(size=5))
        np.testing.assert_allclose(_pacf_yule_walker(autocorrelations(pacf)), pacf,
                                   rtol=1e-10, atol=1e-12)


def test_one_column_terms_have_no_correlation():
    for name in ("cs", "ar1", "hetar1", "homcs"):
        c = _make(name, p=1)
        assert c.natural_names() == (["sd"] if c.homogeneous else ["sd_t0"])
        assert c.n_psi == 1
        assert c.theta(np.array([0.3]))[0] == pytest.approx(np.exp(0.3) / 0.5)


def test_start_is_lme4_identity_in_column_units():
    """psi = 0 gives relative SDs 1 / rms (lme4's identity start for unit columns)."""
    for name in ("diag", "cs", "hetar1", "toep"):
        c = _make(name)
        np.testing.assert_allclose(c.sds(c.psi_start()), 1 / c.rms)
        np.testing.assert_allclose(c.correlation(c.psi_start()), np.eye(P), atol=1e-15)
