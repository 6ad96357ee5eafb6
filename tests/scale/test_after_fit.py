"""After a fit of data read in chunks: lazy fitted values, residuals and predictions,
prior weights and offsets, and one clear error for what needs the rows."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import hierlm
from hierlm.errors import DataError, MethodError
from hierlm.predict.chunked_predict import ChunkedSeries
from tests.scale.data import CROSSED, NESTED, crossed_frame, nested_frame, write_partitioned
from tests.scale.test_parquet_chunks import _rel, assert_same_fit


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from hierlm.objective import gram_sources

    monkeypatch.setattr(gram_sources, "CHUNK_ROWS", 97)


def weighted_frame() -> pd.DataFrame:
    """The crossed data with prior weights (two of them 0) and an offset."""
    df = crossed_frame()
    rng = np.random.default_rng(5)
    df["w"] = rng.uniform(0.2, 3.0, len(df))
    df.loc[[3, 10, 2000], "w"] = 0.0
    df["o"] = rng.normal(size=len(df))
    return df


def _memory(formula: str, df: pd.DataFrame, **kwargs: object) -> hierlm.FitResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # missing responses, zero weights
        return hierlm.fit(formula, df, **kwargs)


def test_weights_and_offset_from_parquet_chunks(tmp_path, small_chunks) -> None:
    df = weighted_frame()
    memory = _memory(CROSSED, df, weights="w", offset="o")
    path = write_partitioned(df, tmp_path / "crossed")
    with pytest.warns(UserWarning, match="dropped 3 of 3000 rows with zero prior weight"):
        res = hierlm.fit(CROSSED, path, weights="w", offset="o")
    assert_same_fit(res, memory)
    assert res.n_dropped == memory.n_dropped == 10  # 7 missing responses, 3 zero weights
    # the weights and the offset change the fit: the unweighted fit is another one
    plain = _memory(CROSSED, df)
    assert _rel(plain.objective, memory.objective) > 1e-3
    # only the weights, only the offset
    for kwargs in ({"weights": "w"}, {"offset": "o"}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            assert_same_fit(hierlm.fit(CROSSED, path, **kwargs), _memory(CROSSED, df, **kwargs))


def test_weights_and_offset_with_dask() -> None:
    dd = pytest.importorskip("dask.dataframe")
    df = weighted_frame().dropna()
    memory = _memory(NESTED.replace("treat + ", ""), df.assign(hosp=df["item"] % 7,
                                                                patient=df["user"]),
                     weights="w", offset="o")
    ddf = dd.from_pandas(df.assign(hosp=df["item"] % 7, patient=df["user"]), npartitions=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = hierlm.fit(NESTED.replace("treat + ", ""), ddf, weights="w", offset="o")
    assert_same_fit(res, memory)


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"weights": np.ones(3000)}, MethodError, "weights of data read in chunks .* name of a column"),
    ({"offset": [0.0] * 3000}, MethodError, "offset of data read in chunks"),
    ({"weights": "nope"}, DataError, "not found in data: nope"),
    ({"weights": "wneg"}, DataError, "weights must be non-negative"),
    ({"weights": "wnan"}, DataError, "weights have 1 missing"),
    ({"offset": "user"}, DataError, "offset column 'user' must be numeric"),
])
def test_bad_weights_and_offsets(tmp_path, kwargs, error, match) -> None:
    df = weighted_frame()
    df["wneg"] = df["w"] - 1.0
    df["wnan"] = df["w"].where(df.index != 5)
    df.to_parquet(tmp_path / "d.parquet")
    with pytest.raises(error, match=match):
        hierlm.fit(CROSSED, tmp_path / "d.parquet", **kwargs)


def test_fitted_residuals_predict_from_parquet(tmp_path, small_chunks) -> None:
    df = weighted_frame()
    path = write_partitioned(df, tmp_path / "crossed")
    ordered = pq.read_table(path).to_pandas()  # the rows in the order pyarrow reads them
    memory = _memory(CROSSED, ordered, weights="w", offset="o")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = hierlm.fit(CROSSED, path, weights="w", offset="o")
    fitted, resid = res.fitted(), res.residuals()
    assert isinstance(fitted, ChunkedSeries) and isinstance(resid, ChunkedSeries)
    parts = list(fitted)
    assert len(parts) > 30  # computed batch by batch
    for lazy, whole in ((fitted.compute(), memory.fitted()),
                        (resid.compute(), memory.residuals())):
        assert list(lazy.index) == list(whole.index)  # the rows used, by position
        assert _rel(lazy.to_numpy(), whole.to_numpy()) < 1e-10
    # predictions of the fitting rows, at population level and with one term
    for re_form in ("~0", "~(1 | item)"):
        lazy = res.predict(re_form=re_form).compute()
        whole = memory.predict(ordered.loc[memory.fitted().index], re_form=re_form)
        assert _rel(lazy.to_numpy(), whole.to_numpy()) < 1e-10
    # written to parquet batch by batch
    assert resid.to_parquet(str(tmp_path / "resid.parquet")) == memory.nobs
    back = pd.read_parquet(tmp_path / "resid.parquet")
    assert back["row"].tolist() == list(memory.residuals().index)
    assert _rel(back["residuals"], memory.residuals().to_numpy()) < 1e-10


def test_predict_new_rows_lazily_and_in_memory(tmp_path) -> None:
    df = nested_frame()
    memory = hierlm.fit(NESTED, df)
    res = hierlm.fit(NESTED, write_partitioned(df, tmp_path / "nested"))
    new = df.sample(300, random_state=1).reset_index(drop=True)
    new.to_parquet(tmp_path / "new.parquet", row_group_size=64)
    lazy = res.predict(tmp_path / "new.parquet").compute()
    assert _rel(lazy.to_numpy(), memory.predict(new).to_numpy()) < 1e-10
    # a data frame is predicted in memory, with intervals from the Gram blocks
    for interval in ("confidence", "prediction"):
        a = res.predict(new.head(20), interval=interval)
        b = memory.predict(new.head(20), interval=interval)
        assert _rel(a.to_numpy(), b.to_numpy()) < 1e-8
    with pytest.raises(MethodError, match="intervals of rows read in chunks"):
        res.predict(interval="confidence")
    # an unseen level: the error of the in-memory path, when the chunk is computed
    bad = new.assign(hosp="h99")
    bad.to_parquet(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="not seen in fitting"):
        res.predict(tmp_path / "bad.parquet").compute()


def test_dask_series_from_a_dask_fit() -> None:
    dd = pytest.importorskip("dask.dataframe")
    df = nested_frame()
    df.index = pd.RangeIndex(1000, 1000 + len(df))  # labels kept, as in memory
    memory = hierlm.fit(NESTED, df)
    ddf = dd.from_pandas(df, npartitions=5)
    res = hierlm.fit(NESTED, ddf)
    fitted, resid = res.fitted(), res.residuals()
    assert isinstance(fitted, dd.Series) and fitted.npartitions == 5
    for lazy, whole in ((fitted.compute(), memory.fitted()),
                        (resid.compute(), memory.residuals())):
        assert list(lazy.index) == list(whole.index)
        assert _rel(lazy.to_numpy(), whole.to_numpy()) < 1e-10
    new = dd.from_pandas(df.head(200), npartitions=3)
    lazy = res.predict(new, re_form="~0").compute()
    assert _rel(lazy.to_numpy(), memory.predict(df.head(200), re_form="~0").to_numpy()) < 1e-10


def test_what_needs_the_rows_says_so(tmp_path) -> None:
    df = crossed_frame().dropna()
    df.to_parquet(tmp_path / "d.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a singular ML fit
        a = hierlm.fit(CROSSED, tmp_path / "d.parquet", "ml")
        b = hierlm.fit("y ~ x + (1 | user) + (1 | item)", tmp_path / "d.parquet", "ml")
        in_memory = hierlm.fit(CROSSED, df, "ml")
    with pytest.raises(MethodError, match="anova between fits of data read in chunks"):
        hierlm.anova(a, b)
    with pytest.raises(MethodError, match="anova between fits of data read in chunks"):
        hierlm.anova(a, in_memory)
