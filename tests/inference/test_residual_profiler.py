"""Profile intervals of every parameter of a fit with residual= / sigma=.

Outside check: a dense brute-force profile.  The ML deviance of ``y ~ N(X beta, V)``
with ``V = sd_b^2 Z Z' + sigma^2 S C(phi) S`` (``n x n``, NumPy), beta by generalized
least squares, every other parameter minimized by SciPy from several starts.  Each
interval endpoint ``e`` of hierlm is bracketed: the brute-force profile is below the
chi-square cutoff at ``e`` moved 1e-3 towards the estimate and above it 1e-3 beyond
(so the brute-force endpoint lies within 1e-3 of ``e``); an endpoint at a parameter's
bound has the profile below the cutoff there.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.stats

import hierlm
from tests.inference.profile_checks import assert_traces_cross_zero
from tests.inference.test_residual_kenward_roger import _data

CUT = float(scipy.stats.chi2.ppf(0.95, 1))
NAMES = ["sd_(Intercept)|g", "sigma", "rho", "log_sd_ratio:kindb", "(Intercept)", "x", "t"]


def _frame() -> pd.DataFrame:
    d = _data(seed=5)
    d["t"] = d["t"] * 0.7 + 0.1 * (d.index % 3)
    return d


class Dense:
    """The ML deviance of the car1 + varIdent model, densely."""

    def __init__(self, d: pd.DataFrame) -> None:
        self.y = d["y"].to_numpy(float)
        self.X = np.column_stack([np.ones(len(d)), d["x"], d["t"]])
        g = d["g"].to_numpy()
        self.same = g[:, None] == g[None, :]
        t = d["t"].to_numpy(float)
        self.dt = np.abs(t[:, None] - t[None, :])
        self.b = (d["kind"] == "b").to_numpy(float)

    def dev(self, p: np.ndarray, fixed: tuple[int, float] | None = None) -> float:
        """``p``: sd_b, sigma, phi, delta, beta (the beta entries ignored but for a
        held one, ``fixed = (j, value)``)."""
        sd_b, sigma, phi, delta = p[:4]
        s = np.exp(delta * self.b)
        C = np.where(self.same, phi ** self.dt, 0.0)
        V = sd_b**2 * self.same + sigma**2 * s[:, None] * C * s[None, :]
        L = np.linalg.cholesky(V)
        X, y = self.X, self.y
        if fixed is not None:
            j, val = fixed
            y = y - val * X[:, j]
            X = np.delete(X, j, axis=1)
        Xw = np.linalg.solve(L, X)
        yw = np.linalg.solve(L, y)
        beta = np.linalg.lstsq(Xw, yw, rcond=None)[0]
        r = yw - Xw @ beta
        return float(2 * np.log(np.diag(L)).sum() + len(y) * np.log(2 * np.pi) + r @ r)


def _to_nat(u: np.ndarray) -> np.ndarray:
    return np.array([np.exp(u[0]), np.exp(u[1]), 1 / (1 + np.exp(-u[2])), u[3]])


def _profile(dense: Dense, w: int, c: float, starts: list[np.ndarray]) -> float:
    """min of the deviance with parameter ``w`` (``NAMES`` order) held at ``c``."""
    best = np.inf
    for u0 in starts:
        if w < 4:
            free = [i for i in range(4) if i != w]

            def f(v: np.ndarray, free: list[int] = free) -> float:
                u = np.zeros(4)
                u[free] = v
                nat = _to_nat(u)
                nat[w] = c
                try:
                    return dense.dev(nat)
                except np.linalg.LinAlgError:
                    return 1e300

            x0 = u0[free]
        else:
            def f(v: np.ndarray) -> float:
                try:
                    return dense.dev(_to_nat(v), fixed=(w - 4, c))
                except np.linalg.LinAlgError:
                    return 1e300

            x0 = u0
        r = scipy.optimize.minimize(f, x0, method="Nelder-Mead",
                                    options={"xatol": 1e-9, "fatol": 1e-11, "maxiter": 20000,
                                             "maxfev": 20000})
        r = scipy.optimize.minimize(f, r.x, method="BFGS", options={"gtol": 1e-8})
        best = min(best, float(r.fun))
    return best


@pytest.fixture(scope="module")
def fitted() -> tuple[hierlm.FitResult, pd.DataFrame]:
    d = _frame()
    res = hierlm.fit("y ~ x + t + (1 | g)", d, "ml", residual="car1(t | g)", sigma="~ kind")
    return res, res.confint("profile")


def test_every_parameter_has_a_profile_interval(fitted: tuple) -> None:
    res, ci = fitted
    assert ci.index.tolist() == NAMES
    est = np.concatenate([[res.sigma * res.theta[0], res.sigma],
                          res.residual_parameters.to_numpy(), res.fixef.to_numpy()])
    assert (ci["lower"].to_numpy() <= est).all() and (est < ci["upper"].to_numpy()).all()


def test_endpoints_match_a_dense_brute_force_profile(fitted: tuple) -> None:
    res, ci = fitted
    dense = Dense(_frame())
    par = res.residual_parameters
    hat = np.array([res.sigma * res.theta[0], res.sigma, par["rho"],
                    par["log_sd_ratio:kindb"]])
    d_hat = dense.dev(hat)
    assert d_hat == pytest.approx(res.objective, rel=1e-9)
    u_hat = np.array([np.log(hat[0]), np.log(hat[1]), np.log(hat[2] / (1 - hat[2])), hat[3]])
    starts = [u_hat, u_hat + np.array([0.3, -0.3, -0.5, 0.2]),
              u_hat + np.array([-0.3, 0.3, 0.5, -0.2])]
    est = np.concatenate([hat, res.fixef.to_numpy()])
    bounds = {0: 0.0, 1: 0.0, 2: 0.0}
    for w, name in enumerate(NAMES):
        for side, e in (("lower", ci.loc[name, "lower"]), ("upper", ci.loc[name, "upper"])):
            if side == "lower" and bounds.get(w) == e:
                inside = _profile(dense, w, max(e, 1e-6), starts) - d_hat
                assert inside < CUT, name
                continue
            tol = 1e-3 * max(1.0, abs(e))
            toward = e + tol if e < est[w] else e - tol
            beyond = e - tol if e < est[w] else e + tol
            assert _profile(dense, w, toward, starts) - d_hat < CUT, (name, side)
            assert _profile(dense, w, beyond, starts) - d_hat > CUT, (name, side)


def test_reml_fit_is_profiled_on_its_ml_refit(fitted: tuple) -> None:
    ml, ci = fitted
    reml = hierlm.fit("y ~ x + t + (1 | g)", _frame(), residual="car1(t | g)", sigma="~ kind")
    np.testing.assert_allclose(reml.confint("profile").to_numpy(), ci.to_numpy(), rtol=1e-5)


def test_profile_traces_cross_zero_at_the_estimates(fitted: tuple) -> None:
    res, ci = fitted
    assert_traces_cross_zero(res.profile(points=3), ci, NAMES)


def test_cs_residual_equals_the_nested_random_intercept_model() -> None:
    # cs within plots beside (1 | Block) is (1 | Block) + (1 | plot) while rho >= 0: the
    # shared parameters' profiles are the same ML profiles, here computed by the plain
    # profiler (itself checked against lme4's)
    from tests.residual_data import residual_data

    o = residual_data("oats")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cs = hierlm.fit("yield ~ nitro + Variety + (1 | Block)", o, residual="cs(1 | plot)")
        re = hierlm.fit("yield ~ nitro + Variety + (1 | Block) + (1 | plot)", o)
    a, b = cs.confint("profile"), re.confint("profile")
    shared = ["sd_(Intercept)|Block", "(Intercept)", "nitro", "VarietyMarvellous",
              "VarietyVictory"]
    np.testing.assert_allclose(a.loc[shared].to_numpy(), b.loc[shared].to_numpy(), rtol=1e-5)
    assert a.loc["rho", "lower"] > 0  # the interval stays where the two models agree
