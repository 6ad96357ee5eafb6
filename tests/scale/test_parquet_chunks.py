"""Fits from parquet read in chunks equal the in-memory fits of the same rows."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

import hierlm
from hierlm.errors import DataError, FormulaError, MethodError, SingularFitWarning
from hierlm.objective import gram_sources
from tests.scale.data import CROSSED, NESTED, crossed_frame, nested_frame, write_partitioned

RTOL = 1e-10


def _rel(a: object, b: object) -> float:
    """Normwise relative difference ``||a - b|| / ||b||`` (entrywise for a scalar).

    Normwise for theta: an entry near 0 is set by the optimizer's stopping rule to
    about 1e-12 absolute, in memory as from chunks, whatever the data's path.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def assert_same_fit(chunked: hierlm.FitResult, memory: hierlm.FitResult) -> None:
    """Criterion, fixef and theta to 1e-10 relative; names, levels and counts exactly.

    The chunked path sums the same products in another order, so the Gram blocks
    agree to rounding and the optimizer's path may differ in its last digits.
    """
    assert _rel(chunked.objective, memory.objective) < RTOL
    assert list(chunked.fixef.index) == list(memory.fixef.index)
    assert _rel(chunked.fixef, memory.fixef) < RTOL
    assert _rel(chunked.theta, memory.theta) < RTOL
    assert _rel(chunked.sigma, memory.sigma) < RTOL
    assert chunked.nobs == memory.nobs and chunked.n_dropped == memory.n_dropped
    assert chunked.groups == memory.groups
    a, b = chunked.ranef(), memory.ranef()
    assert a[["group", "term"]].equals(b[["group", "term"]])
    assert [str(v) for v in a["level"]] == [str(v) for v in b["level"]]
    assert _rel(a["value"].to_numpy() + 1.0, b["value"].to_numpy() + 1.0) < 1e-8
    va, vb = chunked.varcorr, memory.varcorr
    assert va[["group", "term1"]].equals(vb[["group", "term1"]])


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gram_sources, "CHUNK_ROWS", 97)  # dozens of chunks per pass


@pytest.fixture(scope="module")
def crossed() -> tuple[pd.DataFrame, hierlm.FitResult]:
    df = crossed_frame()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rows with a missing response
        return df, hierlm.fit(CROSSED, df)


def test_crossed_from_partitioned_parquet(tmp_path, small_chunks, crossed) -> None:
    df, memory = crossed
    path = write_partitioned(df, tmp_path / "crossed")
    assert len(list(ds.dataset(path, partitioning="hive").to_batches(batch_size=97))) > 30
    res = hierlm.fit(CROSSED, path)
    assert_same_fit(res, memory)
    assert res.n_dropped == 7
    # the inference that needs only the Gram blocks works as in memory
    assert np.allclose(res.coef_table()["df"], memory.coef_table()["df"], rtol=1e-6)
    summary = res.summary()
    assert "Scaled residuals" not in summary and "Number of obs: 2993" in summary


def test_crossed_ml_from_glob_and_dataset(tmp_path, small_chunks, crossed) -> None:
    df, _ = crossed
    write_partitioned(df, tmp_path / "crossed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # missing responses; singular ML fit
        memory = hierlm.fit(CROSSED, df, "ml")
        warnings.simplefilter("ignore", SingularFitWarning)
    # a glob reads the files without their partition folder names (unused here)
        assert_same_fit(hierlm.fit(CROSSED, str(tmp_path / "crossed" / "*" / "*.parquet"),
                                   "ml"), memory)
        dataset = ds.dataset(tmp_path / "crossed", format="parquet", partitioning="hive")
        assert_same_fit(hierlm.fit(CROSSED, dataset, "ml"), memory)


def test_nested_with_text_predictor(tmp_path, small_chunks) -> None:
    df = nested_frame()
    memory = hierlm.fit(NESTED, df)
    res = hierlm.fit(NESTED, write_partitioned(df, tmp_path / "nested"))
    assert_same_fit(res, memory)
    assert list(res.fixef.index) == ["(Intercept)", "treatlow", "treatplacebo", "x"]
    assert list(res.groups) == ["patient:hosp", "hosp"]


def test_categorical_levels_unused_in_some_chunks(tmp_path, small_chunks) -> None:
    # each file holds one hospital: every chunk sees only some levels of each factor
    # (a dictionary column's categories are sorted, as for a pyarrow table in memory)
    df = nested_frame().sort_values("hosp", kind="stable").reset_index(drop=True)
    df["treat"] = pd.Categorical(df["treat"], categories=["placebo", "low", "high"])
    memory = hierlm.fit(NESTED, df.assign(treat=df["treat"].cat.reorder_categories(
        ["high", "low", "placebo"])))
    assert list(memory.fixef.index) == ["(Intercept)", "treatlow", "treatplacebo", "x"]
    folder = tmp_path / "byhosp"
    folder.mkdir()
    for h, part in df.groupby("hosp"):
        part.to_parquet(folder / f"{h}.parquet", row_group_size=50)
    res = hierlm.fit(NESTED, str(folder / "*.parquet"))
    assert_same_fit(res, memory)


def test_rank_deficient_column_dropped_as_in_memory(tmp_path, small_chunks) -> None:
    df = crossed_frame().dropna()
    df["x2"] = 2.0 * df["x"]
    f = "y ~ x + x2 + (1 | user) + (1 | item)"
    with pytest.warns(UserWarning, match="dropping column"):
        memory = hierlm.fit(f, df)
    df.to_parquet(tmp_path / "d.parquet", row_group_size=100)
    with pytest.warns(UserWarning, match="dropping column.*x2"):
        res = hierlm.fit(f, tmp_path / "d.parquet")
    assert_same_fit(res, memory)


def test_large_response_mean_is_centred(tmp_path) -> None:
    df = crossed_frame().dropna()
    df["y"] = df["y"] + 1e6
    memory = hierlm.fit(CROSSED, df)
    df.to_parquet(tmp_path / "d.parquet", row_group_size=500)
    assert_same_fit(hierlm.fit(CROSSED, tmp_path / "d.parquet"), memory)


def test_rows_are_not_kept(tmp_path) -> None:
    df = crossed_frame().dropna()
    df.to_parquet(tmp_path / "d.parquet")
    res = hierlm.fit(CROSSED, tmp_path / "d.parquet")
    calls = {"simulate": lambda: res.simulate(),
             "anova": lambda: res.anova(), "ranova": lambda: res.ranova(),
             "kenward-roger": lambda: res.coef_table("kenward-roger"),
             "contrast": lambda: res.contrast([[0, 1]], ddf="kenward-roger"),
             "bootstrap": lambda: res.bootstrap(2, progressbar=False),
             "confint": lambda: res.confint("bootstrap", n=2),
             "moments": lambda: res.marginal_moments(df.head()),
             "datatree": lambda: res.to_datatree(),
             "save": lambda: res.save(str(tmp_path / "r.json"))}
    for name, call in calls.items():
        with pytest.raises(MethodError, match="read in chunks .parquet or Dask. does not keep"):
            call()
            pytest.fail(name)
    with pytest.raises(MethodError, match="needs the data in memory"):
        hierlm.Model(CROSSED, tmp_path / "d.parquet").fit("nuts")


@pytest.mark.parametrize(("formula", "kwargs", "error", "match"), [
    ("y ~ scale(x) + (1 | user)", {}, FormulaError, "scale.*whole column"),
    ("y ~ x + (1 | usr)", {}, DataError, "not found in data: usr"),
    ("y ~ x + (1 | user)", {"weights": [1.0, 2.0]}, MethodError, "name of a column"),
])
def test_bad_input(tmp_path, formula, kwargs, error, match) -> None:
    crossed_frame().to_parquet(tmp_path / "d.parquet")
    with pytest.raises(error, match=match):
        hierlm.fit(formula, tmp_path / "d.parquet", **kwargs)


def test_missing_path() -> None:
    with pytest.raises(DataError, match="no such file"):
        hierlm.fit(CROSSED, "/nonexistent/data.parquet")
    with pytest.raises(DataError, match="no file matches"):
        hierlm.fit(CROSSED, "/nonexistent/*.parquet")


def test_parquet_fit_does_not_import_dask(tmp_path) -> None:
    import subprocess
    import sys

    crossed_frame().dropna().to_parquet(tmp_path / "d.parquet")
    code = (f"import sys, hierlm\nhierlm.fit({CROSSED!r}, {str(tmp_path / 'd.parquet')!r})\n"
            f"print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=600)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_inference_from_the_gram_blocks(tmp_path) -> None:
    """Satterthwaite tests, Wald and profile intervals need only the objective."""
    df = nested_frame()
    memory = hierlm.fit(NESTED, df)
    df.to_parquet(tmp_path / "d.parquet", row_group_size=300)
    res = hierlm.fit(NESTED, tmp_path / "d.parquet")
    L = [[0, 1, -1, 0], [0, 0, 0, 1]]
    pd.testing.assert_frame_equal(res.contrast(L), memory.contrast(L), rtol=1e-6)
    pd.testing.assert_frame_equal(res.confint("wald"), memory.confint("wald"), rtol=1e-8)
    pd.testing.assert_frame_equal(res.confint("profile"), memory.confint("profile"),
                                  rtol=1e-5)


def test_numeric_column_made_a_factor(tmp_path, small_chunks) -> None:
    # C(shift) needs every level of a numeric column, which no single chunk holds
    df = crossed_frame().dropna().sort_values("item", kind="stable").reset_index(drop=True)
    df["shift"] = df["item"] % 3
    f = "y ~ x + C(shift) + (1 | user)"
    memory = hierlm.fit(f, df)
    df.to_parquet(tmp_path / "d.parquet", row_group_size=100)
    res = hierlm.fit(f, tmp_path / "d.parquet")
    assert_same_fit(res, memory)
    assert len(res.fixef) == 4


def test_gram_blocks_equal_in_memory_blocks(tmp_path, small_chunks) -> None:
    """The summed blocks are the in-memory blocks: y enters centred on another
    least-squares solve, so its row is compared through the invariant ``r'r``."""
    df = nested_frame()
    memory = hierlm.Model(NESTED, df).objective.gram
    df.to_parquet(tmp_path / "d.parquet", row_group_size=100)
    chunked = hierlm.Model(NESTED, tmp_path / "d.parquet").objective.gram
    assert chunked.n == memory.n and chunked.m == memory.m
    np.testing.assert_allclose(chunked.A11, memory.A11, rtol=1e-13)
    np.testing.assert_array_equal(chunked.nz_row, memory.nz_row)
    np.testing.assert_array_equal(chunked.nz_level, memory.nz_level)
    y = chunked.m - 1
    np.testing.assert_allclose(chunked.nz_val[chunked.nz_row < y],
                               memory.nz_val[memory.nz_row < y], rtol=1e-12)
    np.testing.assert_allclose(chunked.A_RR[:y, :y], memory.A_RR[:y, :y], rtol=1e-12)
    np.testing.assert_allclose(chunked.beta_offset, memory.beta_offset, rtol=1e-10)
    # r'r: the squared norm of y's residual on X, in memory through a QR solve
    X = hierlm.build_design(NESTED, df).X
    r = df["y"].to_numpy() - X @ np.linalg.lstsq(X, df["y"].to_numpy(), rcond=None)[0]
    assert abs(chunked.A_RR[y, y] - r @ r) < 1e-11 * (r @ r)


def test_a_chunk_without_complete_rows(tmp_path) -> None:
    df = crossed_frame()
    empty = df.iloc[:50].assign(y=np.nan)  # a whole file of rows with a missing response
    folder = tmp_path / "files"
    folder.mkdir()
    df.to_parquet(folder / "a.parquet")
    empty.to_parquet(folder / "b.parquet")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        memory = hierlm.fit(CROSSED, pd.concat([df, empty], ignore_index=True))
    res = hierlm.fit(CROSSED, folder)
    assert_same_fit(res, memory)
    assert res.n_dropped == 57


def test_contrasts_as_in_memory(tmp_path, small_chunks) -> None:
    df = nested_frame()
    contrasts = {"treat": "contr.sum"}
    memory = hierlm.fit(NESTED, df, contrasts=contrasts)
    res = hierlm.fit(NESTED, write_partitioned(df, tmp_path / "nested"), contrasts=contrasts)
    assert_same_fit(res, memory)
    assert list(res.fixef.index) == ["(Intercept)", "treat1", "treat2", "x"]
