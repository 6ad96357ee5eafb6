"""The structured-covariance references (``glmmtmb_structured.json``) hold, checked densely.

Independently of hierlm's fitting code, each case's criterion is re-evaluated at the
reported parameters with the dense Gaussian likelihood of ``y = X beta + Z u + e``:
``V = Z (I_m kron G) Z' + sigma^2 I`` with ``G = diag(sd) corr diag(sd)``, and

- ML:   ``-2 log L = n log(2 pi) + log|V| + r'V^-1 r``,  ``r = y - X fixef``;
- REML: ``(n - p) log(2 pi) + log|V| + log|X'V^-1 X| + r'V^-1 r``.

``fixef`` must be the GLS solution ``(X'V^-1 X)^-1 X'V^-1 y`` and ``fixef_se`` the square
roots of the diagonal of ``(X'V^-1 X)^-1`` (lme4's convention), and ``corr``/``params``
must have the structure the case names.  Across cases fitted to the same data, a structure
that nests another must reach a criterion no higher than it (a check on the optimizations).
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REFERENCE

FILE = REFERENCE / "glmmtmb_structured.json"

# structure -> the structures it contains as special cases
NESTS = {
    "us": {"diag", "homdiag", "cs", "homcs", "ar1", "hetar1", "toep", "homtoep"},
    "toep": {"diag", "homdiag", "cs", "homcs", "ar1", "hetar1", "homtoep"},
    "homtoep": {"homdiag", "homcs", "ar1"},
    "hetar1": {"diag", "homdiag", "ar1"},
    "cs": {"diag", "homdiag", "homcs"},
    "homcs": {"homdiag"},
    "diag": {"homdiag"},
    "ar1": {"homdiag"},
}


@cache
def _reference() -> dict:
    return json.loads(FILE.read_text())


def _cases() -> list[dict]:
    return _reference()["cases"]


@cache
def _frame(path: str, group: str) -> pd.DataFrame:
    return pd.read_csv(REFERENCE / path, dtype={group: str})


def _columns(df: pd.DataFrame, names: list[str]) -> np.ndarray:
    """Model-matrix columns from R's names: (Intercept), a numeric column, or factor+level."""
    out = []
    for name in names:
        if name == "(Intercept)":
            out.append(np.ones(len(df)))
        elif name in df.columns:
            out.append(df[name].to_numpy(float))
        else:
            hits = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])
                    and name.startswith(c)
                    and name[len(c):] in set(df[c])]
            assert len(hits) == 1, name
            out.append((df[hits[0]] == name[len(hits[0]):]).to_numpy(float))
    return np.column_stack(out)


def _dense(case: dict) -> dict:
    df = _frame(case["data"], case["group"])
    y = df[case["response"]].to_numpy(float)
    names = list(case["fixef"])
    X = _columns(df, names)
    Zt = _columns(df, case["re_columns"])
    levels, codes = np.unique(df[case["group"]].to_numpy(), return_inverse=True)
    n, p, nc = len(y), X.shape[1], Zt.shape[1]
    Z = np.zeros((n, len(levels) * nc))
    for j in range(nc):
        Z[np.arange(n), codes * nc + j] = Zt[:, j]
    sd = np.asarray(case["sd"], float)
    G = np.outer(sd, sd) * np.asarray(case["corr"], float)
    V = Z @ np.kron(np.eye(len(levels)), G) @ Z.T + case["sigma"] ** 2 * np.eye(n)
    L = np.linalg.cholesky(V)
    Xw, yw = np.linalg.solve(L, X), np.linalg.solve(L, y)
    XtViX = Xw.T @ Xw
    gls = np.linalg.solve(XtViX, Xw.T @ yw)
    beta = np.array([case["fixef"][k] for k in names])
    rw = yw - Xw @ beta
    logdet = 2 * np.log(np.diag(L)).sum()
    if case["reml"]:
        crit = (n - p) * np.log(2 * np.pi) + logdet + np.linalg.slogdet(XtViX)[1] + rw @ rw
    else:
        crit = n * np.log(2 * np.pi) + logdet + rw @ rw
    se = np.sqrt(np.diag(np.linalg.inv(XtViX)))
    return {"crit": float(crit), "gls": gls, "beta": beta, "se": se, "names": names}


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_criterion_and_gls_at_the_reported_parameters(case: dict) -> None:
    d = _dense(case)
    assert d["crit"] == pytest.approx(case["criterion"], rel=1e-8)
    np.testing.assert_allclose(d["beta"], d["gls"], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose([case["fixef_se"][k] for k in d["names"]], d["se"], rtol=1e-8)


def _assert_structure(C: np.ndarray, sd: np.ndarray, st: str) -> None:
    """``corr``/``sd`` belong to the structure ``st`` (its parameters read off ``C``)."""
    nc = len(sd)
    lag = np.abs(np.subtract.outer(np.arange(nc), np.arange(nc)))
    np.testing.assert_allclose(np.diag(C), 1.0, atol=1e-12)
    np.testing.assert_allclose(C, C.T, atol=1e-12)
    assert np.linalg.eigvalsh(C).min() > -1e-10
    if st.startswith("hom") or st == "ar1":
        np.testing.assert_allclose(sd, sd[0], rtol=1e-12)
    if st in ("diag", "homdiag"):
        np.testing.assert_allclose(C, np.eye(nc), atol=1e-12)
    if st in ("cs", "homcs"):
        np.testing.assert_allclose(C[lag > 0], C[0, 1], atol=1e-12)
    if st in ("ar1", "hetar1"):
        np.testing.assert_allclose(C, C[0, 1] ** lag, atol=1e-12)
    if st in ("toep", "homtoep"):
        np.testing.assert_allclose(C, C[0][lag], atol=1e-12)


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c["name"])
def test_correlation_has_the_named_structure(case: dict) -> None:
    C, sd, st = np.asarray(case["corr"]), np.asarray(case["sd"]), case["structure"]
    _assert_structure(C, sd, st)
    params = case["params"]
    if st.startswith("hom") or st == "ar1":
        assert params["sd"] == pytest.approx(sd[0], rel=1e-12)
    if st in ("cs", "homcs", "ar1", "hetar1"):
        assert params["rho"] == pytest.approx(C[0, 1], abs=1e-12)
    if st in ("toep", "homtoep"):
        lags = [params[f"rho{k}"] for k in range(1, len(sd))]
        np.testing.assert_allclose(lags, C[0, 1:], atol=1e-12)
    if st in ("us", "diag"):
        assert params == {}


@pytest.mark.parametrize("case", [c for c in _cases() if not c["identifiable"]],
                         ids=lambda c: c["name"])
def test_unidentifiable_cases_lie_on_a_ridge(case: dict) -> None:
    """One observation per group and column: ``G + d I`` with ``sigma^2 - d`` is the same V."""
    df = _frame(case["data"], case["group"])
    cols = case["re_columns"]
    factor = [c for c in df.columns
              if all(r.startswith(c) and r[len(c):] in set(df[c].astype(str)) for r in cols)]
    assert len(factor) == 1
    assert (df.groupby([case["group"], factor[0]]).size() == 1).all()
    sd, C = np.asarray(case["sd"]), np.asarray(case["corr"])
    delta = 0.5 * case["sigma"] ** 2
    G = np.outer(sd, sd) * C + delta * np.eye(len(sd))
    sd2 = np.sqrt(np.diag(G))
    moved = {**case, "sd": sd2, "corr": G / np.outer(sd2, sd2),
             "sigma": np.sqrt(case["sigma"] ** 2 - delta)}
    _assert_structure(moved["corr"], sd2, case["structure"])
    assert _dense(moved)["crit"] == pytest.approx(case["criterion"], rel=1e-10)


def test_no_case_is_worse_than_glmmTMB_and_nested_structures_order() -> None:
    """Each case beats glmmTMB's point, hetar1 agrees with a tied glmmTMB fit, nesting holds."""
    cases = _cases()
    for c in cases:  # the reference is never above glmmTMB's point (its own criterion there)
        tmb = c["glmmTMB"] or {}
        if tmb.get("brute_force_at_its_estimates") is not None:
            assert tmb["brute_force_at_its_estimates"] >= c["criterion"] - 1e-9, c["name"]
        if tmb.get("minus_reference_rel") is not None:
            assert tmb["minus_reference_rel"] > -1e-8, c["name"]
    for c in (c for c in cases if c["structure"] == "hetar1"):
        # glmmTMB's us with the correlation fixed at the reference's rho^|i-j|, SDs free
        x = c["glmmTMB_cross_check"]
        assert -1e-9 < x["minus_reference"] / c["criterion"] < 1e-6, c["name"]
        assert max(x["max_abs_diff_sd"], x["abs_diff_sigma"]) < 2e-3, c["name"]
        assert x["max_abs_diff_fixef"] < 1e-4, c["name"]
    groups: dict[tuple, dict[str, float]] = {}
    for c in cases:
        key = (c["data"], c["reml"], tuple(c["re_columns"]), tuple(c["fixef"]))
        groups.setdefault(key, {})[c["structure"]] = c["criterion"]
    pairs = 0
    for crits in groups.values():
        for big, smalls in NESTS.items():
            for small in smalls & set(crits) if big in crits else ():
                assert crits[big] <= crits[small] + 1e-7 * abs(crits[small]), (big, small)
                pairs += 1
    assert pairs > 40


def test_the_brute_force_reproduces_lme4_and_glmmTMB_uses_lme4s_scale() -> None:
    checks = _reference()["checks"]
    for key in ("us_sim5", "us_orthodont"):
        for method in ("reml", "ml"):
            c = checks[key][method]
            assert abs(c["dense_minus_lme4_rel"]) < 1e-8
            assert abs(c["glmmTMB_minus_lme4_rel"]) < 1e-8
    ar1 = checks["glmmTMB_ar1"]  # glmmTMB 1.1.5's ar1 is the homogeneous one
    assert ar1["theta_length"] == 2 and ar1["columns"] == 5 and ar1["sd_range"] < 1e-12
