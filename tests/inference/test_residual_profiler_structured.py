"""Profile intervals of a fit with both residual= / sigma= and a structured random term.

Outside check: a dense brute-force profile, as in ``test_residual_profiler.py``.  The ML
deviance of ``y ~ N(X beta, V)`` with ``V = Z Sigma_b Z' + sigma^2 S C(phi) S``
(``n x n``, NumPy): ``Sigma_b`` the structure's own covariance (SDs and ``rho`` of
``cs(1 + time | subject)``), ``C(phi)`` the residual AR(1) correlation within a subject,
``S`` the varIdent SD ratios; beta by generalized least squares, every other parameter
minimized by SciPy from several starts.  Each endpoint ``e`` of hierlm is bracketed: the
brute-force profile is below the chi-square cutoff at ``e`` moved 1e-3 towards the
estimate and above it 1e-3 beyond.

The fit itself (which the profile starts from) is checked on an ``ar1(0 + tf | subject)``
term beside a varIdent residual: its criterion is the dense ML deviance at its own
parameters and no lower point is found from several starts.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import scipy.optimize
import scipy.stats
from threadpoolctl import threadpool_limits

import hierlm
from tests.inference.profile_checks import assert_traces_cross_zero

CUT = float(scipy.stats.chi2.ppf(0.95, 1))
FORMULA = "y ~ time + cs(1 + time | subject)"
NAMES = ["sd_(Intercept)|subject", "sd_time|subject", "rho|subject", "sigma", "rho",
         "log_sd_ratio:grpb", "(Intercept)", "time"]


def _frame(seed: int = 4, n: int = 30, T: int = 4) -> pd.DataFrame:
    """Random intercept and slope (SDs 2.5, 0.6, correlation 0.3), AR(1) errors
    (phi = 0.4) with SD 1 in group a and 1.8 in group b."""
    rng = np.random.default_rng(seed)
    s0, s1, r = 2.5, 0.6, 0.3
    Lg = np.linalg.cholesky(np.array([[s0**2, r * s0 * s1], [r * s0 * s1, s1**2]]))
    Lc = np.linalg.cholesky(0.4 ** np.abs(np.subtract.outer(np.arange(T), np.arange(T))))
    rows = []
    for i in range(n):
        b = Lg @ rng.standard_normal(2)
        grp = "b" if i % 2 else "a"
        e = (1.8 if grp == "b" else 1.0) * (Lc @ rng.standard_normal(T))
        for t in range(T):
            rows.append({"subject": f"s{i:02d}", "time": float(t), "tf": f"t{t}",
                         "grp": grp, "y": 1.0 + 0.5 * t + b[0] + b[1] * t + e[t]})
    return pd.DataFrame(rows)


class Dense:
    """The ML deviance of the model, densely (``n x n``)."""

    def __init__(self, d: pd.DataFrame) -> None:
        self.y = d["y"].to_numpy(float)
        t = d["time"].to_numpy(float)
        self.X = np.column_stack([np.ones(len(d)), t])
        g = d["subject"].to_numpy()
        self.same = g[:, None] == g[None, :]
        self.dt = np.abs(t[:, None] - t[None, :])
        self.b = (d["grp"] == "b").to_numpy(float)

    def dev(self, p: np.ndarray, fixed: tuple[int, float] | None = None) -> float:
        """``p``: sd0, sd1, rho_G, sigma, phi, delta (``NAMES`` order); ``fixed = (j,
        value)`` holds ``beta_j``."""
        sd0, sd1, rg, sigma, phi, delta = p[:6]
        G = np.array([[sd0**2, rg * sd0 * sd1], [rg * sd0 * sd1, sd1**2]])
        ZGZ = np.where(self.same, self.X @ G @ self.X.T, 0.0)  # Z_i = [1, t] per subject
        s = np.exp(delta * self.b)
        C = np.where(self.same, np.sign(phi) ** self.dt * np.abs(phi) ** self.dt, 0.0)
        V = ZGZ + sigma**2 * s[:, None] * C * s[None, :]
        L = np.linalg.cholesky(V)
        X, y = self.X, self.y
        if fixed is not None:
            j, val = fixed
            y = y - val * X[:, j]
            X = np.delete(X, j, axis=1)
        Xw = scipy.linalg.solve_triangular(L, X, lower=True)
        yw = scipy.linalg.solve_triangular(L, y, lower=True)
        beta = np.linalg.lstsq(Xw, yw, rcond=None)[0]
        r = yw - Xw @ beta
        return float(2 * np.log(np.diag(L)).sum() + len(y) * np.log(2 * np.pi) + r @ r)


def _to_nat(u: np.ndarray) -> np.ndarray:
    return np.array([np.exp(u[0]), np.exp(u[1]), np.tanh(u[2]), np.exp(u[3]),
                     np.tanh(u[4]), u[5]])


def _to_u(p: np.ndarray) -> np.ndarray:
    return np.array([np.log(p[0]), np.log(p[1]), np.arctanh(p[2]), np.log(p[3]),
                     np.arctanh(p[4]), p[5]])


def _minimize(f, starts: list[np.ndarray]) -> float:
    """The lowest minimum of ``f`` from ``starts`` (BFGS, then Nelder-Mead and BFGS
    again from the best)."""
    best = None
    for x0 in starts:
        r = scipy.optimize.minimize(f, x0, method="BFGS", options={"gtol": 1e-7})
        if best is None or r.fun < best.fun:
            best = r
    assert best is not None
    r = scipy.optimize.minimize(f, best.x, method="Nelder-Mead",
                                options={"xatol": 1e-9, "fatol": 1e-11, "maxfev": 20000})
    r = scipy.optimize.minimize(f, r.x, method="BFGS", options={"gtol": 1e-8})
    return float(min(best.fun, r.fun))


def _profile(dense: Dense, w: int, c: float, starts: list[np.ndarray]) -> float:
    """min of the deviance with parameter ``w`` (``NAMES`` order) held at ``c``."""
    if w < 6:
        free = [i for i in range(6) if i != w]

        def f(v: np.ndarray) -> float:
            u = np.zeros(6)
            u[free] = v
            nat = _to_nat(u)
            nat[w] = c
            try:
                return dense.dev(nat)
            except np.linalg.LinAlgError:
                return 1e300

        return _minimize(f, [u0[free] for u0 in starts])

    def g(v: np.ndarray) -> float:
        try:
            return dense.dev(_to_nat(v), fixed=(w - 6, c))
        except np.linalg.LinAlgError:
            return 1e300

    return _minimize(g, starts)


@pytest.fixture(scope="module")
def fitted() -> tuple[hierlm.FitResult, pd.DataFrame]:
    res = hierlm.fit(FORMULA, _frame(), "ml", residual="ar1(time | subject)",
                     sigma="~ grp")
    return res, res.confint("profile")


def _hat(res: hierlm.FitResult) -> np.ndarray:
    cp = res.covariance_parameters
    return np.concatenate([cp.to_numpy(), [res.sigma], res.residual_parameters.to_numpy()])


def test_names_are_the_structure_parameters_then_sigma_residual_fixed(fitted: tuple
                                                                     ) -> None:
    res, ci = fitted
    assert ci.index.tolist() == NAMES
    hat = _hat(res)
    est = np.concatenate([hat[[0, 1, 2, 3]], hat[4:], res.fixef.to_numpy()])
    assert (ci["lower"].to_numpy() < est).all() and (est < ci["upper"].to_numpy()).all()


def test_endpoints_match_a_dense_brute_force_profile(fitted: tuple) -> None:
    res, ci = fitted
    dense = Dense(_frame())
    hat = _hat(res)
    d_hat = dense.dev(hat)
    assert d_hat == pytest.approx(res.objective, rel=1e-9)
    u_hat = _to_u(hat)
    starts = [u_hat, u_hat + np.array([0.3, -0.3, 0.4, -0.2, -0.4, 0.2]),
              u_hat + np.array([-0.3, 0.3, -0.4, 0.2, 0.4, -0.2])]
    est = np.concatenate([hat, res.fixef.to_numpy()])
    # one BLAS thread: the dense 120 x 120 algebra is far slower threaded beside
    # other processes
    with threadpool_limits(1, user_api="blas"):
        for w, name in enumerate(NAMES):
            for side in ("lower", "upper"):
                e = float(ci.loc[name, side])
                tol = 1e-3 * max(1.0, abs(e))
                toward = e + tol if e < est[w] else e - tol
                beyond = e - tol if e < est[w] else e + tol
                assert _profile(dense, w, toward, starts) - d_hat < CUT, (name, side)
                assert _profile(dense, w, beyond, starts) - d_hat > CUT, (name, side)


def test_same_profiles_as_the_unstructured_term_it_equals(fitted: tuple) -> None:
    # cs on two columns is the unstructured 2 x 2 covariance: the profiles of the
    # shared parameters are those of the residual profiler of (1 + time | subject)
    _, ci = fitted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        us = hierlm.fit("y ~ time + (1 + time | subject)", _frame(), "ml",
                        residual="ar1(time | subject)", sigma="~ grp").confint("profile")
    us = us.rename(index={"cor_time.(Intercept)|subject": "rho|subject"}).loc[NAMES]
    np.testing.assert_allclose(ci.to_numpy(), us.to_numpy(), rtol=1e-4, atol=1e-5)


def test_profile_traces_cross_zero_at_the_estimates(fitted: tuple) -> None:
    res, ci = fitted
    assert_traces_cross_zero(res.profile(points=2), ci, NAMES)


def _ar1_frame() -> pd.DataFrame:
    """AR(1) random effects over four times (SD 2, rho 0.6) and a varIdent residual
    (SD 1, ratio exp(0.5))."""
    rng = np.random.default_rng(3)
    C = 4.0 * 0.6 ** np.abs(np.subtract.outer(np.arange(4), np.arange(4)))
    Lc = np.linalg.cholesky(C)
    rows = []
    for i in range(30):
        b = Lc @ rng.standard_normal(4)
        grp = "b" if i % 2 else "a"
        s = np.exp(0.5) if grp == "b" else 1.0
        for t in range(4):
            rows.append({"subject": f"s{i:02d}", "time": float(t), "tf": f"t{t}",
                         "grp": grp, "y": 1.0 + 0.5 * t + b[t] + s * rng.standard_normal()})
    return pd.DataFrame(rows)


def test_fit_keeps_the_structure_of_the_random_term() -> None:
    # the residual fit minimizes over the ar1 term's own (sd, rho), not an unstructured
    # 4 x 4 covariance: its criterion is the dense ML deviance at its parameters, and
    # the best of several dense starts is no lower
    d = _ar1_frame()
    res = hierlm.fit("y ~ time + ar1(0 + tf | subject)", d, "ml", sigma="~ grp")
    sd, rho = res.covariance_parameters.to_numpy()
    delta = float(res.residual_parameters["log_sd_ratio:grpb"])
    y = d["y"].to_numpy(float)
    t = d["time"].to_numpy(float)
    X = np.column_stack([np.ones(len(d)), t])
    g = d["subject"].to_numpy()
    same = g[:, None] == g[None, :]
    lag = np.abs(t[:, None] - t[None, :])
    b = (d["grp"] == "b").to_numpy(float)

    def dev(p: np.ndarray) -> float:
        sd_, rho_, sigma, delta_ = p
        s = sigma * np.exp(delta_ * b)
        V = np.where(same, sd_**2 * rho_**lag, 0.0) + np.diag(s**2)
        L = np.linalg.cholesky(V)
        Xw = scipy.linalg.solve_triangular(L, X, lower=True)
        yw = scipy.linalg.solve_triangular(L, y, lower=True)
        r = yw - Xw @ np.linalg.lstsq(Xw, yw, rcond=None)[0]
        return float(2 * np.log(np.diag(L)).sum() + len(y) * np.log(2 * np.pi) + r @ r)

    hat = np.array([sd, rho, res.sigma, delta])
    assert dev(hat) == pytest.approx(res.objective, rel=1e-9)

    def f(u: np.ndarray) -> float:
        try:
            return dev(np.array([np.exp(u[0]), np.tanh(u[1]), np.exp(u[2]), u[3]]))
        except np.linalg.LinAlgError:
            return 1e300

    with threadpool_limits(1, user_api="blas"):
        best = _minimize(f, [np.array([0.0, 0.0, 0.0, 0.0]),
                             np.array([1.0, 1.0, -0.5, 0.5]),
                             np.array([0.5, -0.5, 0.5, -0.5])])
    assert res.objective <= best + 1e-6
    assert best <= res.objective + 1e-6  # the dense search reaches the same minimum


def test_diag_term_equals_its_independent_unstructured_terms() -> None:
    # diag(1 + Days | Subject) is (1 | Subject) + (0 + Days | Subject): same ML fit, same
    # profiles, under the structure's own names
    d = hierlm.load_sleepstudy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diag = hierlm.fit("Reaction ~ Days + diag(1 + Days | Subject)", d,
                          residual="ar1(Days | Subject)")
        us = hierlm.fit("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", d,
                        residual="ar1(Days | Subject)")
    assert diag.objective == pytest.approx(us.objective, rel=1e-9)
    a, b = diag.confint("profile"), us.confint("profile")
    assert a.index.tolist() == b.index.tolist() == [
        "sd_(Intercept)|Subject", "sd_Days|Subject", "sigma", "rho", "(Intercept)", "Days"]
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-5, atol=1e-6)


def test_non_monotonic_profile_gives_nan_and_a_warning() -> None:
    # beside an ar1 term over four times the residual SDs are poorly determined: the
    # profile of the SD ratio flattens below the cutoff and dips (lme4's confint warns
    # "non-monotonic profile" and gives NA there)
    res = hierlm.fit("y ~ time + ar1(0 + tf | subject)", _ar1_frame(), "ml", sigma="~ grp")
    with pytest.warns(hierlm.ConvergenceWarning, match="non-monotonic profile for "
                                                       "log_sd_ratio:grpb"):
        ci = res.confint("profile")
    assert np.isnan(ci.loc["log_sd_ratio:grpb", "lower"])
    others = ci.drop(index="log_sd_ratio:grpb")
    assert np.isfinite(others.to_numpy()).all()
