"""``marginal_moments`` against the closed forms of the longitudinal, nested and crossed
designs, on fits of data simulated from those designs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm


def _vc(res: hierlm.FitResult, group: str, t1: str, t2: str | None = None) -> float:
    vc = res.varcorr
    row = vc[(vc.group == group) & (vc.term1 == t1)
             & (vc.term2.isna() if t2 is None else vc.term2 == t2)]
    assert len(row) == 1
    return float(row.variance_or_cov.iloc[0])


def _close(actual: pd.DataFrame, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual.to_numpy(), expected, rtol=1e-10,
                               atol=1e-10 * np.abs(expected).max())


def test_longitudinal_closed_form() -> None:
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(40), 5)
    t = np.tile(np.arange(-2.0, 3.0), 40)
    ab = rng.multivariate_normal([0, 0], [[4.0, 0.6], [0.6, 1.0]], size=40)
    y = 1.0 + 0.5 * t + ab[g, 0] + ab[g, 1] * t + rng.normal(0, 1.0, len(t))
    res = hierlm.fit("y ~ t + (1 + t | g)", pd.DataFrame({"y": y, "t": t, "g": g}))
    ta2, tb2 = _vc(res, "g", "(Intercept)"), _vc(res, "g", "t")
    tab = _vc(res, "g", "(Intercept)", "t")
    s2 = res.sigma**2
    rows = pd.DataFrame({"t": [-1.0, 0.0, 1.0], "g": [99, 99, 99]}, index=["a", "b", "c"])
    mean, cov = res.marginal_moments(rows)
    tt = rows.t.to_numpy()
    expected = ta2 + tab * (tt[:, None] + tt[None, :]) + tb2 * np.outer(tt, tt)
    expected += np.diag(np.full(3, s2))
    _close(cov, expected)
    np.testing.assert_allclose(mean.to_numpy(), res.fixef.iloc[0] + res.fixef.iloc[1] * tt,
                               rtol=1e-12)
    assert list(cov.index) == list(cov.columns) == ["a", "b", "c"]
    # the diagonal is tau_a^2 + tau_b^2 t^2 + 2 tau_ab t + sigma^2
    np.testing.assert_allclose(np.diag(cov), ta2 + tb2 * tt**2 + 2 * tab * tt + s2, rtol=1e-10)


def test_nested_closed_form() -> None:
    rng = np.random.default_rng(12)
    state = np.repeat(np.arange(8), 36)
    city = np.tile(np.repeat(np.arange(3), 12), 8)
    hood = np.tile(np.repeat(np.arange(3), 4), 24)
    u_s, u_c, u_n = rng.normal(0, 2, 8), rng.normal(0, 1.5, 24), rng.normal(0, 1, 72)
    ci, ni = state * 3 + city, (state * 3 + city) * 3 + hood
    y = 3 + u_s[state] + u_c[ci] + u_n[ni] + rng.normal(0, 1, len(state))
    data = pd.DataFrame({"y": y, "state": [f"S{s}" for s in state],
                         "city": [f"C{c}" for c in city], "neighborhood": [f"N{n}" for n in hood]})
    res = hierlm.fit("y ~ 1 + (1 | state/city/neighborhood)", data)
    tS, tC = _vc(res, "state", "(Intercept)"), _vc(res, "city:state", "(Intercept)")
    tN = _vc(res, "neighborhood:city:state", "(Intercept)")
    rows = pd.DataFrame({"state": ["S1", "S1", "S2"], "city": ["C1", "C1", "C2"],
                         "neighborhood": ["N1", "N2", "N3"]})
    _, cov = res.marginal_moments(rows)
    tot = tS + tC + tN + res.sigma**2
    _close(cov, np.array([[tot, tC + tS, 0.0], [tC + tS, tot, 0.0], [0.0, 0.0, tot]]))


def test_crossed_closed_form() -> None:
    rng = np.random.default_rng(13)
    s = np.repeat(np.arange(20), 20)
    r = np.tile(np.arange(20), 20)
    y = rng.normal(0, 1.5, 20)[s] + rng.normal(0, 0.8, 20)[r] + rng.normal(0, 1, 400)
    res = hierlm.fit("y ~ 1 + (1 | sender) + (1 | receiver)",
                     pd.DataFrame({"y": y, "sender": s, "receiver": r}))
    ta, tb = _vc(res, "sender", "(Intercept)"), _vc(res, "receiver", "(Intercept)")
    rows = pd.DataFrame({"sender": [1, 1, 2, 2], "receiver": [5, 6, 5, 6]})
    _, cov = res.marginal_moments(rows)
    s_ = rows.sender.to_numpy()
    r_ = rows.receiver.to_numpy()
    expected = ta * (s_[:, None] == s_) + tb * (r_[:, None] == r_) + np.eye(4) * res.sigma**2
    _close(cov, expected)


def test_weights_enter_the_residual_variance() -> None:
    data = hierlm.load_sleepstudy()
    res = hierlm.fit("Reaction ~ Days + (1 | Subject)", data.assign(w=1.0 + data.Days % 3),
                     weights="w")
    rows = pd.DataFrame({"Days": [0, 1], "Subject": ["308", "309"], "w": [1.0, 2.0]})
    _, cov = res.marginal_moments(rows)
    tau2 = _vc(res, "Subject", "(Intercept)")
    np.testing.assert_allclose(np.diag(cov), tau2 + res.sigma**2 / np.array([1.0, 2.0]),
                               rtol=1e-12)


@pytest.mark.parametrize("missing", ["t"])
def test_rows_need_the_predictors(missing: str) -> None:
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"y": rng.normal(size=60), "t": np.tile([0.0, 1.0, 2.0], 20),
                         "g": np.repeat(np.arange(20), 3)})
    res = hierlm.fit("y ~ t + (1 | g)", data)
    with pytest.raises(hierlm.errors.DataError, match=f"not found in newdata: {missing}"):
        res.marginal_moments(pd.DataFrame({"g": [1]}))
