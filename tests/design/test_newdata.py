"""Coding new rows like the fitting rows; results lined up with the caller's rows and labels."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.design.newdata import NewDataCoder
from hierlm.errors import DataError


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return hierlm.load_sleepstudy()


def test_coder_codes_the_fitting_rows_as_the_design(sleep: pd.DataFrame) -> None:
    data = sleep.assign(f=np.where(sleep.Days < 4, "lo", "hi"))
    d = hierlm.build_design("Reaction ~ C(f) * Days + (Days | Subject)", data)
    rows = d.coder.code(data)
    np.testing.assert_array_equal(rows.X, d.X)
    np.testing.assert_array_equal(rows.codes[0], d.terms[0].codes)
    np.testing.assert_array_equal(rows.Z_X[0], d.terms[0].X)
    # and after a round trip through plain values
    back = NewDataCoder.from_dict(d.coder.to_dict())
    np.testing.assert_array_equal(back.code(data.iloc[::-1]).X, d.X[::-1])


def test_newdata_dtypes_are_checked(sleep: pd.DataFrame) -> None:
    data = sleep.assign(f=pd.Categorical(np.where(sleep.Days < 4, "lo", "hi")))
    d = hierlm.build_design("Reaction ~ f + Days + (1 | Subject)", data)
    ok = d.coder.code(pd.DataFrame({"f": ["hi", "lo"], "Days": [1, 2], "Subject": ["308"] * 2}))
    np.testing.assert_array_equal(ok.X[:, 1], [0.0, 1.0])  # "hi" is the reference level
    with pytest.raises(DataError, match="'f' must be categorical or text"):
        d.coder.code(pd.DataFrame({"f": [1], "Days": [1], "Subject": ["308"]}))
    with pytest.raises(DataError, match=r"'f' has level\(s\) not seen in fitting: 'mid'"):
        d.coder.code(pd.DataFrame({"f": ["mid"], "Days": [1], "Subject": ["308"]}))
    with pytest.raises(DataError, match="newdata must be a pandas DataFrame"):
        d.coder.code({"f": ["hi"]})  # type: ignore[arg-type]


def test_integer_and_categorical_levels_keep_their_dtype_and_order(sleep: pd.DataFrame) -> None:
    ints = sleep.assign(Subject=sleep.Subject.astype(int))
    res = hierlm.fit("Reaction ~ Days + (Days | Subject)", ints)
    rt = res.ranef()
    assert rt.level.dtype == np.int64
    assert list(rt.level.iloc[:18]) == sorted(ints.Subject.unique())
    merged = rt[rt.term == "(Intercept)"].merge(ints, left_on="level", right_on="Subject")
    assert len(merged) == 180
    # the same fit as with string labels (lme4's reference reads them as strings)
    text = hierlm.fit("Reaction ~ Days + (Days | Subject)", sleep)
    assert abs(res.objective - text.objective) < 1e-8
    t_int = text.ranef().query("term == '(Intercept)'")
    by_level = dict(zip(t_int.level.astype(int), t_int.value, strict=True))
    for level, value in zip(rt.level.iloc[:18], rt.value.iloc[:18], strict=True):
        assert abs(value - by_level[level]) < 1e-4 * 40, level
    order = [str(s) for s in sorted(ints.Subject.unique(), reverse=True)]
    cats = sleep.assign(Subject=pd.Categorical(sleep.Subject, categories=order))
    rc = hierlm.fit("Reaction ~ Days + (Days | Subject)", cats).ranef()
    assert isinstance(rc.level.dtype, pd.CategoricalDtype)
    assert list(rc.level.iloc[:18]) == order and list(rc.level.cat.categories) == order


def test_fitted_and_residuals_follow_the_callers_rows(sleep: pd.DataFrame) -> None:
    data = sleep.copy()
    data.index = [f"obs{i}" for i in range(len(data))]
    data.loc[["obs3", "obs7"], "Reaction"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit("Reaction ~ Days + (Days | Subject)", data)
    assert list(res.dropped_rows) == ["obs3", "obs7"]
    fit, resid = res.fitted(), res.residuals()
    assert len(fit) == 178 and "obs3" not in fit.index and fit.index[0] == "obs0"
    np.testing.assert_allclose((data.Reaction[fit.index] - fit).to_numpy(), resid.to_numpy(),
                               rtol=1e-12)
    pd.testing.assert_index_equal(res.predict().index, fit.index)
