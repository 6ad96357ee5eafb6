"""Data frames other than pandas: polars and pyarrow, read through narwhals.

A fit on a polars DataFrame or a pyarrow Table equals the fit on the pandas frame
they were made from; the same holds for Model, predict, simulate and
marginal_moments on new rows; the caller's frame is never modified.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.errors import DataError

pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")

pytestmark = pytest.mark.filterwarnings("ignore:dropped 2 of 240 rows:UserWarning")

FORMULA = "y ~ x + C(f) + np.log(z) + (1 + x | g) + (1 | h)"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n, k = 240, 16
    gi = rng.integers(0, k, n)
    hi = rng.integers(0, 6, n)
    x = rng.normal(size=n)
    f = rng.choice(["lo", "mid", "hi"], n)
    z = rng.uniform(0.5, 3.0, n)
    y = (2.0 + 0.7 * x + (f == "hi") * 0.5 + 0.3 * np.log(z) + rng.normal(size=k)[gi]
         + 0.4 * rng.normal(size=k)[gi] * x + 0.5 * rng.normal(size=6)[hi]
         + rng.normal(scale=0.6, size=n))
    d = pd.DataFrame({"y": y, "x": x, "f": f, "z": z,
                      "g": [f"s{i:02d}" for i in gi], "h": hi.astype(np.int64)})
    d.loc[[3, 50], "y"] = np.nan  # missing values are dropped the same way
    return d


CONVERT: dict[str, Callable[[pd.DataFrame], Any]] = {
    "polars": lambda d: pl.from_pandas(d),
    "pyarrow": lambda d: pa.Table.from_pandas(d, preserve_index=False),
}


def _same_fit(a: Any, b: Any) -> None:
    assert a.objective == pytest.approx(b.objective, rel=1e-12)
    np.testing.assert_allclose(a.fixef.to_numpy(), b.fixef.to_numpy(), rtol=1e-12)
    assert list(a.fixef.index) == list(b.fixef.index)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-12)
    assert a.sigma == pytest.approx(b.sigma, rel=1e-12)
    assert a.nobs == b.nobs and a.n_dropped == b.n_dropped


@pytest.mark.parametrize("kind", sorted(CONVERT))
def test_fit_matches_pandas(frame: pd.DataFrame, kind: str) -> None:
    ref = hierlm.fit(FORMULA, frame)
    other = CONVERT[kind](frame)
    before = CONVERT[kind](frame)
    res = hierlm.fit(FORMULA, other)
    _same_fit(res, ref)
    np.testing.assert_allclose(res.fitted().to_numpy(), ref.fitted().to_numpy(), rtol=1e-12)
    assert other.equals(before)  # the caller's frame is unchanged
    m = hierlm.Model(FORMULA, other)
    _same_fit(m.fit("ml"), hierlm.Model(FORMULA, frame).fit("ml"))


@pytest.mark.parametrize("kind", sorted(CONVERT))
def test_new_rows_match_pandas(frame: pd.DataFrame, kind: str) -> None:
    res = hierlm.fit(FORMULA, frame)
    new = frame.drop(columns="y").iloc[:25].reset_index(drop=True)
    new.loc[0, "g"] = "unseen"
    other = CONVERT[kind](new)
    kw = {"allow_new_levels": True}
    pd.testing.assert_series_equal(res.predict(other, **kw), res.predict(new, **kw),
                                   rtol=1e-12)
    pd.testing.assert_frame_equal(res.predict(other, interval="prediction", **kw),
                                  res.predict(new, interval="prediction", **kw), rtol=1e-12)
    pd.testing.assert_frame_equal(res.simulate(3, seed=5, newdata=other),
                                  res.simulate(3, seed=5, newdata=new), rtol=1e-12)
    for a, b in zip(res.marginal_moments(other), res.marginal_moments(new), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)


def test_other_inputs_are_refused_clearly(frame: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="data must be a pandas DataFrame.*got dict"):
        hierlm.fit(FORMULA, {"y": [1.0]})
    with pytest.raises(DataError, match=r"LazyFrame.*collect\(\)"):
        hierlm.fit(FORMULA, pl.from_pandas(frame).lazy())


def test_unordered_categories_are_sorted_enum_keeps_its_order(frame: pd.DataFrame) -> None:
    """A polars Categorical's category order is storage order: levels are sorted, as
    R's factor() sorts them, so the fit equals the one on the text column."""
    p = pl.from_pandas(frame).with_columns(pl.col("f").cast(pl.Categorical))
    from hierlm.design.frames import as_pandas

    assert list(as_pandas(p)["f"].cat.categories) == ["hi", "lo", "mid"]
    _same_fit(hierlm.fit(FORMULA, p), hierlm.fit(FORMULA, frame))
    e = pl.from_pandas(frame).with_columns(pl.col("f").cast(pl.Enum(["lo", "mid", "hi"])))
    cats = as_pandas(e)["f"].dtype
    assert list(cats.categories) == ["lo", "mid", "hi"] and cats.ordered
