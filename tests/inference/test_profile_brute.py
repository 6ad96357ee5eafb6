"""Profile traces against a brute-force profile and lme4 (``lme4_numerics.json``).

The brute force is independent of hierlm's factor: the ML deviance
``-2 log N(y; X beta, sigma^2 V)`` with ``V_i = I + Z_i T T' Z_i'`` per group (one
grouping factor, so ``V`` is block diagonal), ``beta`` by GLS, minimized over the
other parameters with scipy from several starts (Nelder-Mead, then Powell from its
end point).  The free parameters are unconstrained: for sigma fixed, theta itself;
for an SD or correlation fixed, SDs as ``z^2`` and correlations as ``sin z`` (both
reach their bounds).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize

import hierlm
from hierlm.inference.profile import profiler
from tests.conftest import dataset, reference_file

Z975 = 1.959963984540054


class BlockDeviance:
    """The ML deviance of ``y ~ X beta + (1 + x | g)`` by dense per-group algebra."""

    def __init__(self, design: hierlm.design.terms.ModelDesign) -> None:
        (term,) = design.terms
        order = np.argsort(term.codes, kind="stable")
        sizes = np.bincount(term.codes)
        assert np.all(sizes == sizes[0]), "balanced groups only"
        k, m = len(sizes), int(sizes[0])
        self.y = design.y[order].reshape(k, m)
        self.X = design.X[order].reshape(k, m, -1)
        self.Z = term.X[order].reshape(k, m, -1)
        self.n, self.m = design.nobs, m

    def __call__(self, theta: np.ndarray, sigma: float) -> float:
        T = np.array([[theta[0], 0.0], [theta[1], theta[2]]])
        ZT = self.Z @ T
        V = np.eye(self.m) + ZT @ np.swapaxes(ZT, 1, 2)
        Vi = np.linalg.inv(V)
        XtViX = np.einsum("kia,kij,kjb->ab", self.X, Vi, self.X)
        XtViy = np.einsum("kia,kij,kj->a", self.X, Vi, self.y)
        beta = np.linalg.solve(XtViX, XtViy)
        r = self.y - self.X @ beta
        rss = float(np.einsum("ki,kij,kj->", r, Vi, r))
        logdet = float(np.linalg.slogdet(V)[1].sum())
        return self.n * np.log(2 * np.pi * sigma**2) + logdet + rss / sigma**2


def theta_sigma(s: np.ndarray) -> tuple[np.ndarray, float]:
    """``(sd0, cor, sd1, sigma)`` to theta (lme4's scaled Cholesky factor) and sigma."""
    sd0, cor, sd1, sigma = s
    return np.array([sd0, cor * sd1, sd1 * np.sqrt(max(1 - cor**2, 0.0))]) / sigma, sigma


def brute_min(f, starts: list[np.ndarray]) -> float:
    best = np.inf
    for x0 in starts:
        r = scipy.optimize.minimize(f, x0, method="Nelder-Mead",
                                    options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
        r = scipy.optimize.minimize(f, r.x, method="Powell",
                                    options={"xtol": 1e-10, "ftol": 1e-13})
        best = min(best, float(r.fun))
    return best


def brute_zeta(dev: BlockDeviance, ml: hierlm.FitResult, w: int, c: float,
               rng: np.random.Generator) -> float:
    """zeta of sd/cor/sigma parameter ``w`` (0 sd0, 1 cor, 2 sd1, 3 sigma) at ``c``."""
    theta_hat, sigma_hat = np.asarray(ml.theta), float(ml.sigma)
    base = brute_min(lambda th: dev(th, sigma_hat), [theta_hat])
    if w == 3:
        starts = [theta_hat * sigma_hat / c, theta_hat]
        starts += [theta_hat * rng.uniform(0.2, 3.0, size=3) * rng.choice([-1, 1], 3)
                   for _ in range(4)]
        d = brute_min(lambda th: dev(th, c), starts)
    else:
        T = np.array([[theta_hat[0], 0.0], [theta_hat[1], theta_hat[2]]]) * sigma_hat
        C = T @ T.T
        est = np.array([np.sqrt(C[0, 0]), C[0, 1] / np.sqrt(C[0, 0] * C[1, 1]),
                        np.sqrt(C[1, 1]), sigma_hat])
        free = [i for i in range(4) if i != w]

        def to_s(z: np.ndarray) -> np.ndarray:
            s = est.copy()
            s[w] = c
            for i, zi in zip(free, z, strict=True):
                s[i] = np.sin(zi) if i == 1 else zi**2
            return s

        def f(z: np.ndarray) -> float:
            return dev(*theta_sigma(to_s(z)))

        z_est = np.array([np.arcsin(est[i]) if i == 1 else np.sqrt(est[i]) for i in free])
        starts = [z_est]
        for cor in (-0.99, 0.0, 0.99):
            z = z_est.copy()
            if 1 in free:
                z[free.index(1)] = np.arcsin(cor)
            starts.append(z * (1 + 0.3 * rng.normal(size=z.size) * (cor == 0.0)))
        d = brute_min(f, starts)
    return float(np.sign(c - est_of(ml, w)) * np.sqrt(max(d - base, 0.0)))


def est_of(ml: hierlm.FitResult, w: int) -> float:
    T = np.array([[ml.theta[0], 0.0], [ml.theta[1], ml.theta[2]]]) * ml.sigma
    C = T @ T.T
    return float([np.sqrt(C[0, 0]), C[0, 1] / np.sqrt(C[0, 0] * C[1, 1]),
                  np.sqrt(C[1, 1]), ml.sigma][w])


def _orthodont() -> tuple[str, pd.DataFrame]:
    case = reference_file("lme4_numerics.json")["orthodont_profile"]
    return case["formula"], dataset("orthodont")


def _sleepstudy() -> tuple[str, pd.DataFrame]:
    return "Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy()


def _simulated() -> tuple[str, pd.DataFrame]:
    """12 groups of 6, a small slope SD correlated with the intercept."""
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(12), 6)
    x = np.tile(np.linspace(-1, 1, 6), 12)
    b0, b1 = rng.normal(size=12), 0.15 * rng.normal(size=12)
    y = 2 + 0.5 * x + b0[g] + (b1 + 0.1 * b0)[g] * x + 0.4 * rng.normal(size=72)
    return "y ~ x + (1 + x | g)", pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


# design -> the parameters checked (0 sd of the intercept, 1 cor, 2 sd of the slope,
# 3 sigma): sigma everywhere, and the SD or correlation whose trace reaches a bound
DESIGNS = {"orthodont": (_orthodont, (3, 0)), "sleepstudy": (_sleepstudy, (3, 1)),
           "simulated": (_simulated, (3, 2))}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(DESIGNS))
def test_profile_endpoints_are_where_a_multistart_brute_force_zeta_is_1_96(name: str) -> None:
    make, params = DESIGNS[name]
    formula, data = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pr = profiler(hierlm.fit(formula, data))
    dev = BlockDeviance(pr.design)
    rng = np.random.default_rng(0)
    checked = 0
    for w in params:
        for target in (-Z975, Z975):
            c = pr.endpoint(w, target)
            if c in (0.0, -1.0, 1.0):  # the bound comes first: zeta there is inside
                assert abs(brute_zeta(dev, pr.fit, w, c, rng)) < Z975 + 1e-4, pr.names[w]
                continue
            assert pr.zeta(w, c) == pytest.approx(target, abs=1e-6)
            # zeta rises by about 1 per SE: 2e-4 in zeta is about 2e-4 SE of the endpoint
            assert brute_zeta(dev, pr.fit, w, c, rng) == pytest.approx(target, abs=2e-4), (
                pr.names[w], target)
            checked += 1
    assert checked >= 3


def test_orthodont_sigma_interval_matches_lme4() -> None:
    """lme4 1.1-31 gives sigma's upper limit 1.58850 (its spline through the trace);
    the inner minimization that stopped early gave 1.57925."""
    case = reference_file("lme4_numerics.json")["orthodont_profile"]
    formula, data = _orthodont()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = hierlm.fit(formula, data).confint(method="profile")
    ref = pd.DataFrame(case["confint_profile_95"]).set_index("parameter")
    rows = ["sd_(Intercept)|Subject", "sd_age|Subject", "sigma"]
    for col in ("lower", "upper"):
        exact_zero = ref.loc[rows, col] == 0
        assert (ci.loc[rows, col][exact_zero] == 0).all()
        keep = [r for r in rows if not exact_zero[r]]
        np.testing.assert_allclose(ci.loc[keep, col], ref.loc[keep, col], rtol=1e-3,
                                   atol=5e-5)
