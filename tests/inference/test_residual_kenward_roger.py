"""Kenward-Roger's df and adjusted covariance with residual parameters.

Outside checks: (1) a compound-symmetric residual within the plots of a split-plot is
pbkrtest's random-plot-intercept model (lme4_inference.json); (2) a dense brute-force
Kenward-Roger computation in this file: ``V(gamma)`` formed densely (``n x n``), its
first and second derivatives by central differences, and Kenward & Roger's (1997)
formulas with ``n x n`` inverses.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.covariance.layout import templates
from hierlm.errors import MethodError
from hierlm.inference.residual_kenward_roger import residual_kr_info
from tests.conftest import dataset, inference_reference
from tests.residual_data import residual_data


def test_cs_residual_matches_pbkrtest_random_plot_intercept() -> None:
    ref = inference_reference()["alfalfa_splitplot"]
    d = dataset("alfalfa")
    d["plot"] = d["Block"].astype(str) + ":" + d["Variety"].astype(str)
    res = hierlm.fit("Yield ~ 1 + Variety * Date + (1 | Block)", d, residual="cs(1 | plot)")
    assert res.residual_parameters["rho"] > 0  # the same model as (1 | Block/Variety)
    want = pd.DataFrame(ref["coef_kenward_roger"]).set_index("term")
    got = res.coef_table(ddf="kenward-roger").loc[want.index]
    for col in ("se", "df", "t"):
        np.testing.assert_allclose(got[col], want[col], rtol=1e-4)
    want_f = pd.DataFrame(ref["anova_kenward_roger"]).set_index("term")
    got_f = res.anova(ddf="kenward-roger").loc[want_f.index]
    np.testing.assert_allclose(got_f["den_df"], want_f["den_df"], rtol=1e-4)
    np.testing.assert_allclose(got_f["F"], want_f["F"], rtol=1e-4)


def test_cs_residual_matches_pbkrtest_unbalanced() -> None:
    # oats with rows dropped: unbalanced, so Phi_A differs from Phi; cs within plots is
    # the (1 | Block) + (1 | plot) model, whose adjustment the pbkrtest-verified
    # kenward_roger module computes
    d = residual_data("oats").drop(index=[0, 5, 17, 30, 41]).reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cs = hierlm.fit("yield ~ nitro + Variety + (1 | Block)", d, residual="cs(1 | plot)")
        re = hierlm.fit("yield ~ nitro + Variety + (1 | Block) + (1 | plot)", d)
    assert cs.objective == pytest.approx(re.objective, rel=1e-8)
    a, b = cs.coef_table(ddf="kenward-roger"), re.coef_table(ddf="kenward-roger")
    assert not np.allclose(a["se"], cs.fixef_se, rtol=1e-4)
    np.testing.assert_allclose(a["se"], b["se"], rtol=1e-4)
    np.testing.assert_allclose(a["df"], b["df"], rtol=1e-4)


def _data(seed: int = 3, n_id: int = 12, k: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_id), k)
    t = np.tile(np.arange(k), n_id)
    keep = rng.random(n_id * k) > 0.15          # gaps: unbalanced
    x = rng.normal(size=n_id * k)
    e = np.zeros(n_id * k)
    for i in range(n_id * k):
        e[i] = rng.normal() if t[i] == 0 else 0.5 * e[i - 1] + 0.85 * rng.normal()
    sd = np.where(g % 3 == 0, 1.8, 1.0)
    y = 1 + 0.4 * x + 0.3 * t + rng.normal(size=n_id)[g] * 0.8 + sd * e
    d = pd.DataFrame({"y": y, "x": x, "g": g.astype(str), "t": t,
                      "kind": np.where(g % 3 == 0, "b", "a")})
    return d[keep].reset_index(drop=True)


def _dense_v(res: hierlm.FitResult, gamma: np.ndarray) -> np.ndarray:
    """``V(gamma)`` densely, gamma = (Sigma entries, residual parameters in the
    parameterization of residual_kenward_roger, delta)."""
    des, rd = res.model.design, res.model.residual
    n = des.nobs
    V = np.zeros((n, n))
    i0 = 0
    for term in des.terms:
        Z = np.zeros((n, term.q))
        for j in range(term.p):
            Z[np.arange(n), term.codes * term.p + j] = term.X[:, j]
        m = term.p * (term.p + 1) // 2
        Sig = np.zeros((term.p, term.p))
        r, c = np.tril_indices(term.p)
        order = np.lexsort((r, c))  # lower triangle by column, as pbkrtest
        Sig[r[order], c[order]] = gamma[i0:i0 + m]
        Sig = Sig + np.tril(Sig, -1).T
        V += Z @ np.kron(np.eye(term.n_levels), Sig) @ Z.T
        i0 += m
    same = rd.group[:, None] == rd.group[None, :]
    dt = np.abs(rd.time[:, None] - rd.time[None, :])
    kind = rd.spec.kind if rd.spec is not None else None
    if kind == "cs":
        a, b = gamma[i0:i0 + 2]
        Rm = np.where(same, b, 0.0) + a * np.eye(n)
        i0 += 2
    elif kind is not None:
        s2, rho = gamma[i0:i0 + 2]
        Rm = s2 * np.where(same, rho ** dt, 0.0)
        i0 += 2
    else:
        Rm = gamma[i0] * np.eye(n)
        i0 += 1
    s = np.exp(rd.V @ gamma[i0:])
    return V + s[:, None] * Rm * s[None, :]


def _gamma(res: hierlm.FitResult) -> np.ndarray:
    des, rd = res.model.design, res.model.residual
    out = []
    for term, T in zip(des.terms, templates(des, res.theta), strict=True):
        Sig = res.sigma**2 * T @ T.T
        r, c = np.tril_indices(term.p)
        order = np.lexsort((r, c))
        out += list(Sig[r[order], c[order]])
    par = res.residual_parameters.to_numpy()
    s2 = res.sigma**2
    kind = rd.spec.kind if rd.spec is not None else None
    if kind == "cs":
        out += [s2 * (1 - par[0]), s2 * par[0]]
    elif kind is not None:
        out += [s2, par[0]]
    else:
        out += [s2]
    return np.array(out + list(par[rd.n_corr:]))


def _interior(res: hierlm.FitResult) -> list[int]:
    """Indices of ``gamma`` off the boundary: a random-intercept variance at 0 is held
    fixed (these tests' terms have one random effect each)."""
    assert all(t.p == 1 for t in res.model.design.terms)
    return [i for i in range(len(_gamma(res))) if i >= len(res.theta) or res.theta[i] > 0]


def _dense_kr(res: hierlm.FitResult, keep: list[int] | None = None
              ) -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    """Kenward-Roger with the derivatives in the parameters ``keep`` (all by default)."""
    g0 = _gamma(res)
    idx = list(range(len(g0))) if keep is None else keep
    k = len(idx)
    h = 1e-4 * np.maximum(np.abs(g0), 0.1)
    E = np.eye(len(g0))
    V0 = _dense_v(res, g0)
    Vr = [(_dense_v(res, g0 + h[a] * E[a]) - _dense_v(res, g0 - h[a] * E[a])) / (2 * h[a])
          for a in idx]
    Vrs = np.empty((k, k), dtype=object)
    for i in range(k):
        for j in range(k):
            ei, ej = h[idx[i]] * E[idx[i]], h[idx[j]] * E[idx[j]]
            Vrs[i, j] = (_dense_v(res, g0 + ei + ej) - _dense_v(res, g0 + ei - ej)
                         - _dense_v(res, g0 - ei + ej) + _dense_v(res, g0 - ei - ej)) / (
                4 * h[idx[i]] * h[idx[j]])
    X = res.model.design.X
    Vi = np.linalg.inv(V0)
    Phi = np.linalg.inv(X.T @ Vi @ X)
    P = [-X.T @ Vi @ Vr[i] @ Vi @ X for i in range(k)]
    Q = [[X.T @ Vi @ Vr[i] @ Vi @ Vr[j] @ Vi @ X for j in range(k)] for i in range(k)]
    R = [[X.T @ Vi @ Vrs[i, j] @ Vi @ X for j in range(k)] for i in range(k)]
    Pm = Vi - Vi @ X @ Phi @ X.T @ Vi
    info = np.array([[np.trace(Pm @ Vr[i] @ Pm @ Vr[j]) for j in range(k)]
                     for i in range(k)])  # 2 x the expected REML information
    W = 2 * np.linalg.inv(info)
    U = sum(W[i, j] * (Q[i][j] - P[i] @ Phi @ P[j] - 0.25 * R[i][j])
            for i in range(k) for j in range(k))
    return Phi, Phi + 2 * Phi @ U @ Phi, P, W


@pytest.mark.parametrize("residual, sigma", [("ar1(t | g)", "~ kind"), ("car1(t | g)", None),
                                             ("cs(1 | g)", "~ kind"), (None, "~ kind")])
def test_matches_dense_brute_force(residual: str | None, sigma: str | None) -> None:
    d = _data()
    if residual == "car1(t | g)":
        d["t"] = d["t"] * 0.7 + 0.1 * (d.index % 3)
    formula = "y ~ x + t + (1 | g)" if residual != "cs(1 | g)" else "y ~ x + t + (1 | kind)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit(formula, d, residual=residual, sigma=sigma)
    kr = residual_kr_info(res)
    Phi, Phi_A, P, W = _dense_kr(res, _interior(res))
    np.testing.assert_allclose(kr.phi, Phi, rtol=1e-8)
    assert np.abs(Phi_A - Phi).max() > 1e-4 * np.abs(Phi).max()  # a real adjustment
    np.testing.assert_allclose(kr.phi_adj, Phi_A, rtol=1e-5, atol=1e-8 * np.abs(Phi).max())
    from hierlm.inference.kenward_roger import KRInfo
    brute = KRInfo(phi=Phi, phi_adj=Phi_A, P=P, W=W)
    for L in [np.eye(3)[[1]], np.eye(3)[[2]], np.eye(3)[1:]]:
        np.testing.assert_allclose(kr.ddf(L), brute.ddf(L), rtol=1e-5)
    table = res.coef_table(ddf="kenward-roger")
    np.testing.assert_allclose(table["se"] ** 2, np.diag(Phi_A), rtol=1e-5)


def test_kr_needs_reml() -> None:
    d = _data()
    res = hierlm.fit("y ~ x + t + (1 | g)", d, "ML", residual="ar1(t | g)")
    with pytest.raises(MethodError, match="REML"):
        res.coef_table(ddf="kenward-roger")


def test_too_many_row_pairs_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from hierlm.inference import residual_kenward_roger

    monkeypatch.setattr(residual_kenward_roger, "MAX_NNZ", 10)
    res = hierlm.fit("y ~ x + t + (1 | g)", _data(), residual="ar1(t | g)")
    with pytest.raises(MethodError, match="satterthwaite"):
        res.coef_table(ddf="kenward-roger")
    assert np.isfinite(res.coef_table()["df"]).all()


def test_weights_scaled_by_a_constant_change_nothing() -> None:
    # prior weights 4 w are the model with sigma halved: the same Kenward-Roger table
    d = _data()
    w = 1.0 + (d["t"] % 3)
    f = "y ~ x + t + (1 | g)"
    a = hierlm.fit(f, d, weights=w, residual="ar1(t | g)", sigma="~ kind")
    b = hierlm.fit(f, d, weights=4 * w, residual="ar1(t | g)", sigma="~ kind")
    ta, tb = a.coef_table(ddf="kenward-roger"), b.coef_table(ddf="kenward-roger")
    np.testing.assert_allclose(ta.to_numpy(), tb.to_numpy(), rtol=1e-4)
    assert not np.allclose(ta["df"], a.coef_table()["df"], rtol=1e-3)


def test_zero_variance_component_is_dropped_bodyweight() -> None:
    # BodyWeight with car1 errors and a random intercept: the REML optimum has the
    # intercept variance at 0 and phi near 1, where phi -> 1 makes the car1 covariance a
    # random intercept; with the zero variance kept among KR's parameters the expected
    # information is nearly singular and Phi_A is not a covariance (NaN SEs)
    d = residual_data("bodyweight")
    res = hierlm.fit("weight ~ Time + Diet + (1 | Rat)", d, residual="car1(Time | Rat)")
    assert res.theta[0] == 0 and res.residual_parameters["rho"] > 0.99
    _, Phi_all, _, _ = _dense_kr(res)
    assert (np.diag(Phi_all) < 0).any()  # why the boundary parameter must go
    Phi, Phi_A, P, W = _dense_kr(res, _interior(res))
    assert _interior(res) == [1, 2]  # sigma^2 and phi
    kr = residual_kr_info(res)
    np.testing.assert_allclose(kr.phi, Phi, rtol=1e-8, atol=1e-10 * np.abs(Phi).max())
    assert np.abs(Phi_A - Phi).max() > 1e-4 * np.abs(Phi).max()
    np.testing.assert_allclose(kr.phi_adj, Phi_A, rtol=1e-5, atol=1e-8 * np.abs(Phi).max())
    from hierlm.inference.kenward_roger import KRInfo
    brute = KRInfo(phi=Phi, phi_adj=Phi_A, P=P, W=W)
    table = res.coef_table(ddf="kenward-roger")
    assert np.isfinite(table[["se", "df", "t", "p"]].to_numpy()).all()
    np.testing.assert_allclose(table["se"] ** 2, np.diag(Phi_A), rtol=1e-5)
    np.testing.assert_allclose(table["df"], [brute.ddf(L)[0] for L in np.eye(4)[:, None, :]],
                               rtol=1e-5)
    F = res.anova(ddf="kenward-roger").loc["Diet"]
    assert F["den_df"] == pytest.approx(brute.ddf(np.eye(4)[2:])[0], rel=1e-5)


def test_structured_random_term_with_a_residual_structure_is_refused() -> None:
    """Kenward-Roger's residual generators are in the random effects' covariance entries;
    a structured term's parameters are not those (its gamma would need d gamma / d psi
    and the second derivatives), so such a fit gets one clear error, not another
    model's numbers (it gave df 17 and an SE 0.17% off the equal two-term model's)."""
    d = hierlm.load_sleepstudy()
    res = hierlm.fit("Reaction ~ Days + diag(1 + Days | Subject)", d,
                     residual="ar1(Days | Subject)")
    with pytest.raises(hierlm.MethodError, match="structured.*satterthwaite"):
        res.coef_table(ddf="kenward-roger")
    assert np.isfinite(res.coef_table(ddf="satterthwaite")["df"]).all()
