"""Saving and loading fitted results: exact round trips, versioning, atomic writes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hierlm
from hierlm.design.newdata import NewDataCoder
from hierlm.estimate.nuts_info import NutsInfo
from hierlm.results import io
from hierlm.results.result import FitResult


@pytest.fixture(scope="module")
def reml() -> FitResult:
    return hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal values of equal types: pandas with index and dtypes, arrays bit for bit."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert a.attrs == b.attrs
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_exact=True)
    elif isinstance(a, pd.Index):
        pd.testing.assert_index_equal(a, b, exact=True)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        if a.dtype.kind in "biufcmM":
            assert a.tobytes() == b.tobytes(), where
        else:
            assert a.tolist() == b.tolist(), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and np.isnan(a):
        assert np.isnan(b), where
    elif isinstance(a, xr.DataTree):
        assert a.identical(b), where
    elif isinstance(a, NutsInfo):
        assert_same(a.as_dict(), b.as_dict(), where)
    elif isinstance(a, NewDataCoder):
        assert_same(a.to_dict(), b.to_dict(), where)
    else:
        assert a == b, where


def assert_same_result(a: FitResult, b: FitResult) -> None:
    """Every field read back as written; the fitted model is not saved (None on load)."""
    for f in dataclasses.fields(FitResult):
        if f.name == "model":
            assert b.model is None
            continue
        assert_same(getattr(a, f.name), getattr(b, f.name), f.name)


def test_reml_result_round_trips_exactly(reml: FitResult, tmp_path: Path) -> None:
    folder = io.save(reml, tmp_path / "fit.hierlm")
    assert sorted(p.name for p in folder.iterdir()) == ["arrays.nc", "result.json"]
    back = hierlm.load(folder)
    assert_same_result(reml, back)
    assert back.optimizer["trace"] == reml.optimizer["trace"]
    # the summary's Satterthwaite df and p-values need the fitted model, which is not
    # saved: the loaded summary is the one of the result without its model
    assert back.summary() == dataclasses.replace(reml, model=None).summary()
    doc = json.loads((folder / "result.json").read_text())
    assert doc["format_version"] == io.FORMAT_VERSION
    assert doc["hierlm_version"] == hierlm.__version__
    assert doc["fields"]["formula"] == reml.formula


def test_awkward_values_round_trip(reml: FitResult, tmp_path: Path) -> None:
    """Everything the format promises: NaN, inf, dtypes, categoricals, NA, nested dicts."""
    frame = pd.DataFrame({
        "f64": [1.0, np.nan, -np.inf], "i8": np.array([1, 2, 3], dtype=np.int8),
        "u64": np.array([0, 2**64 - 1, 5], dtype=np.uint64), "b": [True, False, True],
        "s": pd.array(["a", None, "c"], dtype="str"), "o": np.array(["x", None, 3], dtype=object),
        "cat": pd.Categorical(["p", "q", "p"], categories=["q", "p", "z"], ordered=True),
        "I64": pd.array([1, None, 3], dtype="Int64"),
        "t": pd.to_datetime(["2020-01-01 00:00", None, "2021-06-30 12:00"]),
        "c128": np.array([1 + 2j, np.nan, 0j]),
    }, index=pd.Index(["r1", "r2", "r3"], name="row"))
    frame.attrs["note"] = "kept"
    extra = {
        "frame": frame, "multi": frame.set_index(["s", "i8"]).iloc[:, :2],
        "range": pd.Series([0.1, 0.2], name=("a", 1)), "empty": np.zeros((0, 3)),
        "scalars": [np.float32(1.5), np.int64(-3), np.bool_(True), 2**70, -0.0, float("nan")],
        "nested": {1: (None, {"k": [np.arange(4).reshape(2, 2)]}), "x": float("-inf")},
        "strings": np.array(["ab", "c"]), "bytes_free": "ü∑ unicode",
    }
    res = dataclasses.replace(reml, optimizer=extra, messages=("one", "two"))
    back = hierlm.load(io.save(res, tmp_path / "odd"))
    assert_same_result(res, back)


def nuts_like_tree(seed: int = 0) -> xr.DataTree:
    """A DataTree shaped like ``res.idata`` of a NUTS fit (chains x draws, string coords)."""
    rng = np.random.default_rng(seed)
    post = xr.Dataset(
        {"beta": (("chain", "draw", "fixef"), rng.normal(size=(2, 5, 2))),
         "sigma": (("chain", "draw"), rng.gamma(2.0, size=(2, 5)))},
        coords={"chain": [0, 1], "draw": np.arange(5), "fixef": ["(Intercept)", "Days"]},
        attrs={"created_at": "2026-01-01T00:00:00", "sampling_time": 1.25})
    stats = xr.Dataset({"diverging": (("chain", "draw"), rng.random((2, 5)) > 0.8),
                        "n_steps": (("chain", "draw"), rng.integers(1, 9, (2, 5)))},
                       coords={"chain": [0, 1], "draw": np.arange(5)})
    return xr.DataTree.from_dict({"posterior": post, "sample_stats": stats})


def test_nuts_idata_round_trips(reml: FitResult, tmp_path: Path) -> None:
    diag = pd.DataFrame({"mean": [1.0, 2.0], "r_hat": [1.001, 1.02]},
                        index=pd.Index(["beta[(Intercept)]", "sigma"]))
    info = NutsInfo(sampler="pymc", draws=5, tune=5, chains=2,
                    priors={"lkj_eta": {"Subject": 2.0}}, diagnostics=diag,
                    prior_lines=("sigma ~ HalfStudentT(nu=3, scale=56.17)",),
                    sampling_time=1.25, max_rhat=1.02, loo=None, random_seed=None)
    res = dataclasses.replace(reml, method="NUTS", idata=nuts_like_tree(), nuts=info)
    folder = io.save(res, tmp_path / "nuts.hierlm")
    assert (folder / "idata.nc").is_file()
    back = hierlm.load(folder)
    assert_same_result(res, back)
    assert back.idata["posterior"]["beta"].dtype == np.float64
    assert back.idata["sample_stats"]["diverging"].dtype == bool


def _as_version_1(folder: Path) -> dict[str, Any]:
    """Rewrite a saved result as format version 1 wrote it: the NUTS information as the
    untyped dict ``extra`` (with ``prior_lines`` a list), empty for REML/ML."""
    doc = json.loads((folder / "result.json").read_text())
    nuts = doc["fields"].pop("nuts")
    extra: dict[str, Any] = {"__type__": "dict", "items": []}
    if nuts is not None:
        extra = nuts["fields"]
        for item in extra["items"]:
            if item[0] == "prior_lines":
                item[1] = item[1]["items"]  # a list in version 1, not a tuple
    doc["fields"]["extra"] = extra
    doc["format_version"] = 1
    (folder / "result.json").write_text(json.dumps(doc))
    return doc


def test_version_1_files_load_with_typed_nuts_info(reml: FitResult, tmp_path: Path) -> None:
    diag = pd.DataFrame({"mean": [1.0], "sd": [0.1], "r_hat": [1.0], "ess_bulk": [900.0],
                         "ess_tail": [800.0]}, index=["sigma"])
    info = NutsInfo(sampler="nutpie", draws=5, tune=7, chains=2, diagnostics=diag,
                    prior_lines=("sigma ~ HalfStudentT(nu=3, scale=56.17)",),
                    divergences=3, max_rhat=1.0, min_ess_bulk=900.0, random_seed=11)
    nuts = dataclasses.replace(reml, method="NUTS", idata=nuts_like_tree(), nuts=info)
    doc = _as_version_1(io.save(nuts, tmp_path / "nuts.hierlm"))
    assert "nuts" not in doc["fields"] and doc["fields"]["extra"]["items"]
    back = hierlm.load(tmp_path / "nuts.hierlm")
    assert isinstance(back.nuts, NutsInfo)
    assert_same(info.as_dict(), back.nuts.as_dict())
    with pytest.warns(UserWarning, match="3 divergent transitions"):
        assert "Sampler: nutpie, 2 chains x 5 draws (7 tuning)" in back.summary()
    _as_version_1(io.save(reml, tmp_path / "reml.hierlm"))
    assert hierlm.load(tmp_path / "reml.hierlm").nuts is None


def test_version_1_extra_with_unknown_keys_is_refused(reml: FitResult, tmp_path: Path) -> None:
    folder = io.save(reml, tmp_path / "fit.hierlm")
    doc = _as_version_1(folder)
    doc["fields"]["extra"] = {"__type__": "dict", "items": [["sampler", "pymc"],
                                                           ["mystery", 1]]}
    (folder / "result.json").write_text(json.dumps(doc))
    with pytest.raises(hierlm.ResultFileError, match="is damaged.*mystery"):
        hierlm.load(folder)


def test_extra_is_a_deprecated_view_of_nuts(reml: FitResult) -> None:
    with pytest.warns(DeprecationWarning, match="FitResult.nuts"):
        assert reml.extra == {}
    info = NutsInfo(sampler="pymc", draws=5, tune=5, chains=1, divergences=2)
    with pytest.warns(DeprecationWarning):
        view = dataclasses.replace(reml, nuts=info).extra
    assert view["divergences"] == 2 and view["sampler"] == "pymc"


def test_save_replaces_a_saved_result_but_nothing_else(reml: FitResult, tmp_path: Path) -> None:
    target = tmp_path / "fit.hierlm"
    io.save(dataclasses.replace(reml, formula="old"), target)
    io.save(reml, target)
    assert hierlm.load(target).formula == reml.formula
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.hierlm"]
    other = tmp_path / "notes.txt"
    other.write_text("mine")
    with pytest.raises(hierlm.ResultFileError, match="not a saved hierlm result"):
        io.save(reml, other)
    assert other.read_text() == "mine"


@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_save_leaves_no_half_written_files(
        reml: FitResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool) -> None:
    target = tmp_path / "fit.hierlm"
    if existing:
        io.save(dataclasses.replace(reml, formula="previous"), target)
    calls = []

    def interrupt(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", interrupt)
    with pytest.raises(KeyboardInterrupt):
        io.save(reml, target)
    monkeypatch.undo()
    assert calls
    assert sorted(p.name for p in tmp_path.iterdir()) == (["fit.hierlm"] if existing else [])
    if existing:
        assert hierlm.load(target).formula == "previous"


def test_incompatible_format_version_is_refused(reml: FitResult, tmp_path: Path) -> None:
    folder = io.save(reml, tmp_path / "fit.hierlm")
    doc = json.loads((folder / "result.json").read_text())
    doc["format_version"] = io.FORMAT_VERSION + 1
    doc["hierlm_version"] = "9.0"
    (folder / "result.json").write_text(json.dumps(doc))
    with pytest.raises(hierlm.ResultFileError,
                       match="format_version 3 .*hierlm 9.0.*reads format_version 1 and 2"
                       ) as info:
        hierlm.load(folder)
    assert isinstance(info.value, hierlm.HierlmError)
    assert info.value.__cause__ is None


def test_not_a_result_and_damaged_files(reml: FitResult, tmp_path: Path) -> None:
    with pytest.raises(hierlm.ResultFileError, match="no result.json"):
        hierlm.load(tmp_path)
    folder = io.save(reml, tmp_path / "fit.hierlm")
    (folder / "arrays.nc").write_bytes(b"not netCDF")
    with pytest.raises(hierlm.ResultFileError, match="is damaged") as info:
        hierlm.load(folder)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    (folder / "result.json").write_text("{")
    with pytest.raises(hierlm.ResultFileError, match="cannot be read"):
        hierlm.load(folder)


def test_unsupported_values_are_refused_before_writing(reml: FitResult, tmp_path: Path) -> None:
    res = dataclasses.replace(reml, optimizer={"fn": print})
    with pytest.raises(hierlm.ResultFileError, match="builtin_function_or_method"):
        io.save(res, tmp_path / "fit.hierlm")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_real_nuts_fit_round_trips(tmp_path: Path) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy(),
                         method="nuts", draws=30, tune=30, chains=2, random_seed=1,
                         progressbar=False)
    assert res.idata is not None
    assert_same_result(res, hierlm.load(io.save(res, tmp_path / "nuts.hierlm")))


def test_weighted_result_with_typed_levels_round_trips(tmp_path: Path) -> None:
    data = hierlm.load_sleepstudy()
    data = data.assign(Subject=data.Subject.astype(int), w=1.0 + data.Days % 3,
                       o=0.5 * data.Days, f=pd.Categorical(np.where(data.Days < 5, "a", "b")))
    res = hierlm.fit("Reaction ~ Days + f + (Days | Subject)", data, weights="w", offset="o")
    back = hierlm.load(io.save(res, tmp_path / "w.hierlm"))
    assert_same_result(res, back)
    assert back.ranef().level.dtype == np.int64
    new = data.iloc[[0, 50]].assign(Subject=[308, 999])
    pd.testing.assert_frame_equal(
        back.predict(new, allow_new_levels=True, interval="confidence"),
        res.predict(new, allow_new_levels=True, interval="confidence"), rtol=1e-10)
