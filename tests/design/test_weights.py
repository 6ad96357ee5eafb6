"""Prior weights and offsets against lme4 (``lme4_weights_offset.json``) and their checks."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.design.weights import working_design
from hierlm.errors import DataError
from tests.conftest import dataset, reference_file
from tests.test_reference import _close


def _columns(key: str, data: pd.DataFrame) -> dict:
    """The weights/offset the reference describes, made from the data file."""
    if key == "sleepstudy_weighted":  # "1 + (Days % 3)"
        return {"weights": (1 + data.Days % 3).to_numpy(dtype=float)}
    if key == "sleepstudy_offset":  # "2 * Days"
        return {"offset": 2.0 * data.Days.to_numpy(dtype=float)}
    if key == "penicillin_weighted":  # "0.5, 1, 2 repeated over rows in file order"
        return {"weights": np.resize([0.5, 1.0, 2.0], len(data))}
    raise KeyError(key)


KEYS = list(reference_file("lme4_weights_offset.json"))


@pytest.mark.parametrize("key", KEYS)
def test_weighted_and_offset_fits_match_lme4(key: str) -> None:
    ref = reference_file("lme4_weights_offset.json")[key]
    data = dataset(ref["data"])
    res = hierlm.fit(ref["formula"], data, method=ref["method"].lower(), **_columns(key, data))
    crit = ref["reml_criterion"]
    assert res.objective <= crit + 1e-6 * abs(crit) and abs(res.objective - crit) < 1e-6 * crit
    assert _close(res.loglik, ref["loglik"], rel=1e-6)
    se = ref["se"] if isinstance(ref["se"], list) else list(ref["se"].values())
    for (name, b), s in zip(ref["fixef"].items(), se, strict=True):
        assert abs(res.fixef[name] - b) <= 1e-3 * s, name
        assert _close(res.fixef_se[name], s), name
    np.testing.assert_allclose(res.theta, ref["theta"], rtol=2e-3, atol=1e-5)
    assert _close(res.sigma, ref["sigma"])
    for row, r in zip(res.varcorr.itertuples(), ref["varcorr"], strict=True):
        assert _close(row.sd_or_corr, r["sdcor"]), (row, r)
    np.testing.assert_allclose(res.fitted().to_numpy()[:5], ref["fitted_head"], rtol=1e-6)


def test_offset_is_added_back_in_predictions() -> None:
    data = hierlm.load_sleepstudy().assign(o=lambda f: 2.0 * f.Days)
    res = hierlm.fit("Reaction ~ Days + (Days | Subject)", data, offset="o")
    plain = hierlm.fit("Reaction ~ Days + (Days | Subject)", data)
    # an offset of 2 Days only moves the Days slope by 2
    assert abs(res.fixef["Days"] + 2 - plain.fixef["Days"]) < 1e-4
    new = pd.DataFrame({"Days": [3.0], "Subject": ["308"], "o": [6.0]})
    np.testing.assert_allclose(res.predict(new).to_numpy(), plain.predict(new).to_numpy(),
                               rtol=1e-6)
    with pytest.raises(DataError, match="not found in newdata: o"):
        res.predict(new.drop(columns="o"))
    arr = hierlm.fit("Reaction ~ Days + (Days | Subject)", data, offset=2.0 * data.Days)
    with pytest.raises(DataError, match="offset was given as an array"):
        arr.predict(new)


def test_integer_weights_equal_repeated_rows() -> None:
    """Weight 2 on a row is the ML fit with the row's residual variance halved: the same
    as a row scaled by sqrt(2) in the working problem (checked densely)."""
    data = hierlm.load_sleepstudy()
    w = np.where(data.Days.to_numpy() < 5, 2.0, 1.0)
    d = hierlm.build_design("Reaction ~ Days + (1 | Subject)", data, weights=w)
    wd = working_design(d)
    np.testing.assert_allclose(wd.y, np.sqrt(w) * data.Reaction.to_numpy())
    np.testing.assert_allclose(wd.X[:, 1], np.sqrt(w) * data.Days.to_numpy())
    res = hierlm.fit("Reaction ~ Days + (1 | Subject)", data, method="ml", weights=w)
    # dense check of the ML deviance: -2 log N(y; X b, s^2 (Z Z' t^2 + W^-1))
    Z = np.eye(18)[d.terms[0].codes]
    s2, t2 = res.sigma**2, (res.sigma * res.theta[0]) ** 2
    V = t2 * Z @ Z.T + s2 * np.diag(1 / w)
    r = data.Reaction.to_numpy() - d.X @ res.fixef.to_numpy()
    dev = np.linalg.slogdet(2 * np.pi * V)[1] + r @ np.linalg.solve(V, r)
    assert abs(res.objective - dev) < 1e-8 * dev


def test_weights_and_offsets_are_checked() -> None:
    data = hierlm.load_sleepstudy()
    f = "Reaction ~ Days + (1 | Subject)"
    n = len(data)
    with pytest.raises(DataError, match="non-negative"):
        hierlm.Model(f, data, weights=np.r_[-1.0, np.ones(n - 1)])
    with pytest.raises(DataError, match="one value per row"):
        hierlm.Model(f, data, weights=np.ones(n - 1))
    with pytest.raises(DataError, match="NaN"):
        hierlm.Model(f, data, weights=np.r_[np.nan, np.ones(n - 1)])
    with pytest.raises(DataError, match="NaN"):
        hierlm.Model(f, data, offset=np.r_[np.nan, np.zeros(n - 1)])
    with pytest.raises(DataError, match="weights column 'nope' not found"):
        hierlm.Model(f, data, weights="nope")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = hierlm.Model(f, data, weights=np.r_[0.0, 0.0, np.ones(n - 2)])
    assert any("dropped 2 of 180 rows with zero prior weight" in str(w.message) for w in caught)
    assert m.design.nobs == n - 2 and list(m.design.dropped_rows) == [0, 1]
