"""Profile and Wald intervals against lme4's confint (lme4_inference.json)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.errors import MethodError
from tests.conftest import dataset, inference_reference

REF = inference_reference()
PROFILED = [c for c in REF if "confint_profile_95" in REF[c]]


def fit(case):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hierlm.fit(REF[case]["formula"], dataset(REF[case]["data"]))


@pytest.mark.parametrize("case", PROFILED)
def test_profile_confint_matches_lme4(case):
    ref = pd.DataFrame(REF[case]["confint_profile_95"]).set_index("parameter")
    ci = fit(case).confint(method="profile")
    assert list(ci.index) == list(ref.index)  # lme4's names and order
    for col in ["lower", "upper"]:
        exact_zero = ref[col] == 0  # the bound itself (pastes' batch SD reaches 0)
        assert (ci.loc[exact_zero, col] == 0).all()
        np.testing.assert_allclose(ci.loc[~exact_zero, col], ref.loc[~exact_zero, col],
                                   rtol=2e-3)


@pytest.mark.parametrize("case", PROFILED)
def test_wald_confint_matches_lme4(case):
    ref = pd.DataFrame(REF[case]["confint_wald_95"]).set_index("parameter")
    ci = fit(case).confint(method="wald")
    # endpoints beta -/+ z se: the SE carries the fit's difference from lme4 (2.7e-5 relative
    # for penicillin), within the 1e-3 on SEs
    np.testing.assert_allclose(ci.loc[ref.index].to_numpy(), ref.to_numpy(), rtol=1e-4)
    assert ci.drop(index=ref.index).isna().all().all()  # variance parameters: NaN, as lme4


def test_profile_trace_is_signed_root_deviance():
    res = fit("dyestuff")
    tab = res.profile(points=4)
    assert list(tab.columns) == ["parameter", "value", "zeta"]
    for name, g in tab.groupby("parameter"):
        g = g.sort_values("value")
        assert np.all(np.diff(g["zeta"]) > 0), name  # monotone increasing
    # zeta of the fixed effect is exactly linear in beta when theta is fixed; with theta
    # re-optimized it is close to the Wald line near the estimate
    g = tab[tab["parameter"] == "(Intercept)"].sort_values("value")
    ml = res.model.fit("ml")
    wald = (g["value"] - ml.fixef.iloc[0]) / ml.fixef_se.iloc[0]
    mid = np.abs(wald) < 1
    np.testing.assert_allclose(g.loc[mid, "zeta"], wald[mid], atol=0.1)


def test_confint_errors(tmp_path):
    res = fit("dyestuff")
    with pytest.raises(MethodError, match="unknown confint method"):
        res.confint(method="exact")
    with pytest.raises(MethodError, match="level"):
        res.confint(method="wald", level=95)
    res.save(str(tmp_path / "fit"))
    back = hierlm.load(str(tmp_path / "fit"))
    with pytest.raises(MethodError, match="FitResult.model"):
        back.confint(method="profile")
    with pytest.raises(MethodError, match="FitResult.model"):
        back.bootstrap(10)
    with pytest.raises(MethodError, match="FitResult.model"):
        back.ranova()
    assert back.confint(method="wald").shape == (1, 2)


def _sleepstudy_ml_deviance(design):
    """ML deviance of ``(1 + Days | Subject)`` by dense per-subject GLS (no hierlm code):
    ``d(sd_1, cor, sd_2, sigma)`` with beta profiled out, or beta_j held at ``b``."""
    t = design.terms[0]
    order = np.argsort(t.codes, kind="stable")
    g = t.n_levels
    X = design.X[order].reshape(g, -1, design.p)
    y = design.y[order].reshape(g, -1)
    Zi = t.X[order].reshape(g, -1, 2)
    m = y.shape[1]
    assert m * g == design.nobs  # balanced: one batch of equal blocks

    def dev(v, fixed=None):
        sd1, cor, sd2, sigma = v
        S = np.array([[sd1**2, cor * sd1 * sd2], [cor * sd1 * sd2, sd2**2]])
        V = Zi @ S @ np.swapaxes(Zi, 1, 2) + sigma**2 * np.eye(m)
        L = np.linalg.cholesky(V)
        logdet = 2 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum()
        Xw = np.linalg.solve(L, X).reshape(-1, design.p)
        yw = np.linalg.solve(L, y[..., None]).ravel()
        if fixed is not None:
            j, b = fixed
            yw = yw - Xw[:, j] * b
            Xw = np.delete(Xw, j, axis=1)
        beta = np.linalg.lstsq(Xw, yw, rcond=None)[0]
        r = yw - Xw @ beta
        return float(design.nobs * np.log(2 * np.pi) + logdet + r @ r)

    return dev


def _best_of_starts(f, x0s):
    """Smallest Nelder-Mead minimum of ``f`` over the starting points ``x0s``."""
    import scipy.optimize

    best = np.inf
    for x0 in x0s:
        r = scipy.optimize.minimize(f, x0, method="Nelder-Mead",
                                    options={"xatol": 1e-9, "fatol": 1e-11,
                                             "maxfev": 20000, "maxiter": 20000})
        best = min(best, float(r.fun))
    return best


def test_profile_traces_equal_best_of_many_starts_minima():
    # sleepstudy's correlation trace once jumped from zeta -2.2 to -4.7 near cor -0.55:
    # its inner minimization started from a solution with SD 0 (where the correlation
    # has no effect).  Outside check: at points of every trace, zeta from a dense
    # per-subject GLS deviance minimized from many starts
    res = fit("sleepstudy_slopes")
    tab = res.profile(points=4)
    design = res.model.design
    dev = _sleepstudy_ml_deviance(design)
    rng = np.random.default_rng(0)
    # unconstrained coordinates: log SDs, atanh of the correlation
    def to_v(u):
        return np.array([np.exp(u[0]), np.tanh(u[1]), np.exp(u[2]), np.exp(u[3])])

    u_hat = np.array([np.log(24.0), 0.0, np.log(6.0), np.log(25.0)])
    starts = [u_hat + rng.normal(0, 0.6, 4) for _ in range(8)]
    d_hat = _best_of_starts(lambda u: dev(to_v(u)), starts)
    names = ["sd_(Intercept)|Subject", "cor_Days.(Intercept)|Subject", "sd_Days|Subject",
             "sigma"]
    for name, g in tab.groupby("parameter"):
        g = g.sort_values("value")
        assert np.all(np.diff(g["zeta"]) > 0), name  # monotone increasing
        picks = g.iloc[[0, 1, len(g) // 2 - 1, -2, -1]]
        for c, z in zip(picks["value"], picks["zeta"], strict=True):
            if name in names:
                w = names.index(name)
                free = [i for i in range(4) if i != w]

                def f(u, w=w, free=free, c=c):
                    full = np.zeros(4)
                    full[free] = u
                    v = to_v(full)
                    v[w] = c
                    return dev(v)

                d = _best_of_starts(f, [s[free] for s in starts])
            else:
                j = list(res.fixef.index).index(name)
                d = _best_of_starts(lambda u, j=j, c=c: dev(to_v(u), (j, c)), starts)
            zeta = np.sign(c - g.loc[g["zeta"] == 0, "value"].iloc[0]) * np.sqrt(
                max(d - d_hat, 0.0))
            assert z == pytest.approx(zeta, abs=2e-3), (name, c)
