"""A fit on a Dask cluster of 2 worker processes equals the in-memory fit."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

import hierlm
from tests.scale.data import CROSSED, NESTED, crossed_frame, nested_frame, write_partitioned
from tests.scale.test_parquet_chunks import _rel, assert_same_fit

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")


@pytest.mark.timeout(300)
def test_crossed_on_local_cluster(tmp_path) -> None:
    df = crossed_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rows with a missing response
        memory = hierlm.fit(CROSSED, df)
    path = write_partitioned(df, tmp_path / "crossed")
    with (distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                   dashboard_address=None) as cluster,
          distributed.Client(cluster) as client):
        ddf = dd.read_parquet(path, split_row_groups=True)
        assert ddf.npartitions > 10
        res = hierlm.fit(CROSSED, ddf)
        # the workers ran both passes: a task per partition each, plus the merges
        executed = client.run(lambda dask_worker: dask_worker.state.executed_count)
        assert len(executed) == 2
        assert sum(executed.values()) >= 2 * ddf.npartitions
        # fitted values and residuals: partition-wise tasks on the workers
        fitted = res.fitted().compute()
        resid = res.residuals().compute()
        after = client.run(lambda dask_worker: dask_worker.state.executed_count)
        assert sum(after.values()) >= sum(executed.values()) + 2 * ddf.npartitions
    assert_same_fit(res, memory)
    ordered = pd.concat([df[df["part"] == k] for k in sorted(df["part"].unique())])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        whole = hierlm.fit(CROSSED, ordered.reset_index(drop=True))
    assert len(fitted) == len(resid) == memory.nobs
    assert _rel(fitted.to_numpy(), whole.fitted().to_numpy()) < 1e-10
    assert _rel(resid.to_numpy(), whole.residuals().to_numpy()) < 1e-10
    assert res.n_dropped == 7


def test_dask_dataframe_local_scheduler() -> None:
    df = crossed_frame().dropna()
    memory = hierlm.fit(CROSSED, df)
    assert_same_fit(hierlm.fit(CROSSED, dd.from_pandas(df, npartitions=7)), memory)


def test_nested_with_text_predictor_from_read_parquet(tmp_path) -> None:
    # Dask reads text as pandas' string dtype, not object: same levels and names
    df = nested_frame()
    memory = hierlm.fit(NESTED, df)
    ddf = dd.read_parquet(write_partitioned(df, tmp_path / "nested"), split_row_groups=True)
    assert ddf.npartitions > 10
    res = hierlm.fit(NESTED, ddf)
    assert_same_fit(res, memory)
    assert list(res.fixef.index) == ["(Intercept)", "treatlow", "treatplacebo", "x"]
