"""Predictions against lme4's ``predict`` and intervals against dense numpy algebra."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import hierlm
from hierlm.errors import DataError, FormulaError, MethodError
from tests.conftest import dataset, reference_file

CASES = [k for k, v in reference_file("lme4_inference.json").items() if "predict" in v]


@pytest.fixture(scope="module")
def fits() -> dict:
    return {}


def _fit(key: str, cache: dict) -> hierlm.FitResult:
    if key not in cache:
        ref = reference_file("lme4_inference.json")[key]
        cache[key] = hierlm.fit(ref["formula"], dataset(ref["data"]))
    return cache[key]


def _newdata(key: str) -> pd.DataFrame:
    ref = reference_file("lme4_inference.json")[key]
    rows = pd.DataFrame(ref["predict"]).drop(columns=["conditional", "population"])
    data = dataset(ref["data"])
    for c in rows.columns:  # label columns are strings in the data, as in R
        if data[c].dtype == object:
            rows[c] = rows[c].astype(str)
    return rows


# chickweight's first row (Chick 1 at Time 0, fit 28.47) is 6e-6 relative from lme4:
# an absolute 1.8e-4, the size of the difference between two optimizers' theta-hat on a
# flat REML surface; every other row agrees to 1e-6.
TOL = {"chickweight_diet": 1e-5}


@pytest.mark.parametrize("key", CASES)
def test_predict_matches_lme4(key: str, fits: dict) -> None:
    ref = reference_file("lme4_inference.json")[key]["predict"]
    res = _fit(key, fits)
    new = _newdata(key)
    cond = res.predict(new, allow_new_levels=True)
    pop = res.predict(new, re_form="~0")
    np.testing.assert_allclose(cond.to_numpy(), [r["conditional"] for r in ref],
                               rtol=TOL.get(key, 1e-6))
    np.testing.assert_allclose(pop.to_numpy(), [r["population"] for r in ref], rtol=1e-6)
    assert cond.index.equals(new.index)


def test_population_level_needs_no_grouping_column(fits: dict) -> None:
    res = _fit("sleepstudy_slopes", fits)
    pred = res.predict(pd.DataFrame({"Days": [0.0, 3.0]}, index=["a", "b"]), re_form="~0")
    beta = res.fixef.to_numpy()
    np.testing.assert_allclose(pred.to_numpy(), [beta[0], beta[0] + 3 * beta[1]], rtol=1e-12)
    assert list(pred.index) == ["a", "b"]


def test_default_prediction_is_the_fitted_values(fits: dict) -> None:
    res = _fit("sleepstudy_slopes", fits)
    np.testing.assert_allclose(res.predict().to_numpy(), res.fitted().to_numpy(), rtol=1e-12)
    # lme4's fitted values for Subject 308, Days 0 (the reference's first predict row)
    assert abs(res.fitted().iloc[0] - 253.663655798386) <= 1e-5 * 253.66


def test_re_form_with_one_term_of_two(fits: dict) -> None:
    res = _fit("penicillin_crossed", fits)
    new = _newdata("penicillin_crossed").iloc[:2]
    only_plate = res.predict(new, re_form="~(1 | plate)")
    rt = res.ranef()
    b = {(g, lv): v for g, lv, v in zip(rt.group, rt.level, rt.value, strict=True)}
    expected = [res.fixef.iloc[0] + b[("plate", p)] for p in new["plate"]]
    np.testing.assert_allclose(only_plate.to_numpy(), expected, rtol=1e-12)
    with pytest.raises(FormulaError, match="not a random term"):
        res.predict(new, re_form="~(1 | batch)")


def test_new_levels_and_bad_newdata_are_clear_errors(fits: dict) -> None:
    res = _fit("sleepstudy_slopes", fits)
    with pytest.raises(DataError, match=r"grouping column 'Subject' has level\(s\) not seen "
                                        r"in fitting: 'new', 'other'"):
        res.predict(pd.DataFrame({"Days": [1, 2, 3], "Subject": ["new", "308", "other"]}))
    with pytest.raises(DataError, match="column\\(s\\) not found in newdata: Days"):
        res.predict(pd.DataFrame({"Subject": ["308"]}))
    with pytest.raises(DataError, match="'Days' must be numeric"):
        res.predict(pd.DataFrame({"Days": ["one"], "Subject": ["308"]}))
    with pytest.raises(DataError, match="missing value"):
        res.predict(pd.DataFrame({"Days": [np.nan], "Subject": ["308"]}))
    with pytest.raises(MethodError, match="unknown interval"):
        res.predict(interval="credible")
    cw = _fit("chickweight_diet", fits)
    with pytest.raises(DataError, match=r"column 'Diet' has level\(s\) not seen in fitting: '7'"):
        cw.predict(pd.DataFrame({"Time": [1.0], "Diet": ["7"], "Chick": ["1"]}))


def test_transformations_and_contrasts_are_those_of_the_fitting_data() -> None:
    data = hierlm.load_sleepstudy().assign(
        g=lambda f: np.where(f.Days % 2 == 0, "even", "odd"), d1=lambda f: f.Days + 1.0)
    res = hierlm.fit("Reaction ~ C(g) + np.log(d1) + scale(Days) + (1 | Subject)", data)
    new = pd.DataFrame({"g": ["odd", "even"], "d1": [4.0, 10.0], "Days": [3, 9]})
    pred = res.predict(new, re_form="~0").to_numpy()
    # the same columns by hand: scale() is the fitting data's affine map of Days (its mean
    # and SD, whatever the SD's divisor), read off the fitting design's column
    days = data.Days.to_numpy(dtype=float)
    col = res.model.design.X[:, res.model.design.fixef_names.index("scale(Days)")]
    slope, icpt = np.polyfit(days, col, 1)
    z = icpt + slope * new.Days.to_numpy()
    b = res.fixef
    expected = (b["(Intercept)"] + b["C(g)odd"] * np.array([1.0, 0.0])
                + b["np.log(d1)"] * np.log(new.d1.to_numpy()) + b["scale(Days)"] * z)
    np.testing.assert_allclose(pred, expected, rtol=1e-12)
    # the fitted values are the predictions of the fitting rows
    np.testing.assert_allclose(res.predict(data).to_numpy(), res.fitted().to_numpy(),
                               rtol=1e-10)


def _dense_pev(res: hierlm.FitResult, Xn: np.ndarray, Zn: np.ndarray) -> np.ndarray:
    """sigma^2 [x, z Lambda] C^{-1} [x, z Lambda]' from dense Henderson equations."""
    design = res.model.design
    X = design.X
    Z = np.hstack([np.kron(np.eye(t.n_levels)[t.codes], np.ones((1, t.p)))
                   * np.tile(t.X, (1, t.n_levels)) for t in design.terms])
    Ts = hierlm.covariance.layout.templates(design, res.theta)
    Lam = np.zeros((Z.shape[1], Z.shape[1]))
    off = 0
    for t, T in zip(design.terms, Ts, strict=True):
        for lv in range(t.n_levels):
            Lam[off + lv * t.p: off + (lv + 1) * t.p, off + lv * t.p: off + (lv + 1) * t.p] = T
        off += t.q
    ZL = Z @ Lam
    C = np.block([[ZL.T @ ZL + np.eye(ZL.shape[1]), ZL.T @ X], [X.T @ ZL, X.T @ X]])
    V = np.hstack([Zn @ Lam, Xn])
    return res.sigma**2 * np.einsum("ij,ij->i", V @ np.linalg.inv(C), V)


def _dense_rows(res: hierlm.FitResult, new: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    rows = res.coder.code(new, allow_new_levels=True)
    design = res.model.design
    blocks = []
    for t, zx, codes in zip(design.terms, rows.Z_X, rows.codes, strict=True):
        Zk = np.zeros((len(new), t.q))
        for r, c in enumerate(codes):
            if c >= 0:
                Zk[r, c * t.p:(c + 1) * t.p] = zx[r]
        blocks.append(Zk)
    return rows.X, np.hstack(blocks)


@pytest.mark.parametrize("key", ["sleepstudy_slopes", "penicillin_crossed"])
def test_intervals_match_dense_henderson_equations(key: str, fits: dict) -> None:
    res = _fit(key, fits)
    new = _newdata(key)
    Xn, Zn = _dense_rows(res, new)
    pev = _dense_pev(res, Xn, Zn)
    conf = res.predict(new, allow_new_levels=True, interval="confidence", level=0.9)
    q = scipy.stats.norm.ppf(0.95)
    np.testing.assert_allclose(((conf.upper - conf.lower) / (2 * q)).to_numpy() ** 2, pev,
                               rtol=1e-8)
    # prediction: plus sigma^2 and, for a new level, its term's z' Sigma z
    pred = res.predict(new, allow_new_levels=True, interval="prediction", level=0.9)
    extra = np.full(len(new), res.sigma**2)
    design = res.model.design
    Ts = hierlm.covariance.layout.templates(design, res.theta)
    rows = res.coder.code(new, allow_new_levels=True)
    for T, zx, codes in zip(Ts, rows.Z_X, rows.codes, strict=True):
        S = res.sigma**2 * T @ T.T
        extra += (codes < 0) * np.einsum("ij,jk,ik->i", zx, S, zx)
    np.testing.assert_allclose(((pred.upper - pred.lower) / (2 * q)).to_numpy() ** 2,
                               pev + extra, rtol=1e-8)
    # population level: x' vcov x
    popc = res.predict(new, re_form="~0", interval="confidence", level=0.9)
    V = res.vcov.to_numpy()
    np.testing.assert_allclose(((popc.upper - popc.lower) / (2 * q)).to_numpy() ** 2,
                               np.einsum("ij,jk,ik->i", Xn, V, Xn), rtol=1e-8)


def test_saved_result_still_predicts(fits: dict, tmp_path: object) -> None:
    res = _fit("sleepstudy_slopes", fits)
    back = hierlm.load(res.save(f"{tmp_path}/fit.hierlm") or f"{tmp_path}/fit.hierlm")
    assert back.model is None
    new = _newdata("sleepstudy_slopes")
    for kw in ({"allow_new_levels": True}, {"re_form": "~0"},
               {"allow_new_levels": True, "interval": "prediction"}):
        pd.testing.assert_frame_equal(pd.DataFrame(back.predict(new, **kw)),
                                      pd.DataFrame(res.predict(new, **kw)), rtol=1e-10)
    m0, c0 = res.marginal_moments(new)
    m1, c1 = back.marginal_moments(new)
    pd.testing.assert_series_equal(m0, m1, rtol=1e-12)
    pd.testing.assert_frame_equal(c0, c1, rtol=1e-12)
