"""Save a :class:`~hierlm.FitResult` to open formats and load it back exactly.

A saved result is a directory (by convention named ``*.hierlm``) holding:

``result.json``
    ``format`` (``"hierlm.FitResult"``), ``format_version`` (an integer, see
    :data:`FORMAT_VERSION`; version 1 files are read too), ``hierlm_version`` and
    every field of the result (a NUTS fit's :class:`~hierlm.estimate.nuts_info.NutsInfo`
    field by field): strings, numbers, booleans, lists, dicts, the optimizer's trace,
    pandas objects (index, columns, dtypes, string and object values) as tagged JSON
    objects.  Finite floats are written with Python's shortest round-trip ``repr``;
    NaN and infinities as tagged strings.
``arrays.nc``
    A netCDF-4 file (xarray, ``h5netcdf`` engine) with every numeric array: numpy
    arrays and the numeric columns and indexes of pandas objects, each a variable
    ``v<k>`` referenced from the JSON, stored with its dtype and bit-exact (no fill
    values, no scaling; complex and date-time arrays as their raw 64-bit words).
``idata.nc``
    The NUTS draws, ``res.idata`` (an ``xarray.DataTree``), as netCDF-4 groups;
    absent when ``res.idata`` is None.

Nothing is pickled.  :func:`save` writes into a temporary sibling directory and
renames it into place at the end (:mod:`hierlm.results.replace`), so an interrupted
save (an exception or KeyboardInterrupt) leaves either the previous result or
nothing, never a half-written one, and saves racing for one path leave the last one.
An existing saved result at ``path`` is replaced only when it holds hierlm's files
and nothing else; any other existing file or directory is left alone and reported.
Every failure to write is one :class:`~hierlm.errors.ResultFileError`.
:func:`read_record` (and so :func:`hierlm.load`) refuses, with
:class:`~hierlm.errors.ResultFileError`, a directory written with a newer or unknown
``format_version``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from hierlm.errors import ResultFileError
from hierlm.estimate.nuts_info import NutsInfo
from hierlm.estimate.record import FitRecord
from hierlm.objective.interrupts import interrupts_deferred
from hierlm.results.replace import check_replaceable, folder_lock, replace_dir
from hierlm.version import __version__

__all__ = ["FORMAT", "FORMAT_VERSION", "read_record", "save"]

FORMAT = "hierlm.FitResult"
#: 2: NUTS information in the typed field ``nuts``; version 1 held it in the untyped
#: ``extra`` dict, still read (:func:`_upgrade_v1`).
FORMAT_VERSION = 2
_READABLE = (1, 2)
_JSON, _ARRAYS, _IDATA = "result.json", "arrays.nc", "idata.nc"
_OWN = (_JSON, _ARRAYS, _IDATA)  # every file save writes (result.json first)
_ENGINE: Literal["h5netcdf"] = "h5netcdf"
_RAW = {"c": np.float64, "m": np.int64, "M": np.int64}  # stored as their raw words


class _Encoder:
    """Turns values into JSON-able objects, collecting numeric arrays on the side."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def array(self, a: np.ndarray) -> dict[str, Any]:
        a = np.asarray(a)
        if a.dtype.kind not in "biufcmM":
            return {"__type__": "objarray", "dtype": a.dtype.str, "shape": list(a.shape),
                    "items": [self.value(v) for v in a.ravel(order="C").tolist()]}
        name = f"v{len(self.arrays)}"
        raw = a.dtype.kind in _RAW
        stored = np.ascontiguousarray(a)
        if raw:
            stored = stored.view(_RAW[a.dtype.kind])
        self.arrays[name] = stored
        return {"__type__": "ndarray", "var": name, "dtype": a.dtype.str, "raw": raw,
                "shape": list(a.shape)}

    def values(self, arr: pd.Index | pd.Series) -> dict[str, Any]:
        """The values of an Index or a column, with their exact dtype."""
        dtype = arr.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            cat = pd.Categorical(arr)
            return {"kind": "category", "ordered": bool(dtype.ordered),
                    "categories": self.index(dtype.categories), "codes": self.array(cat.codes)}
        if isinstance(dtype, np.dtype) and dtype.kind in "biufcmM":
            return {"kind": "numpy", "data": self.array(np.asarray(arr))}
        return {"kind": "list", "dtype": str(dtype),
                "items": [self.value(v) for v in list(arr)]}

    def index(self, idx: pd.Index) -> dict[str, Any]:
        if isinstance(idx, pd.MultiIndex):
            return {"__type__": "multiindex", "names": [self.value(n) for n in idx.names],
                    "levels": [self.values(idx.get_level_values(i))
                               for i in range(idx.nlevels)]}
        if isinstance(idx, pd.RangeIndex):
            return {"__type__": "rangeindex", "name": self.value(idx.name),
                    "range": [idx.start, idx.stop, idx.step]}
        return {"__type__": "index", "name": self.value(idx.name), "values": self.values(idx)}

    def value(self, v: Any) -> Any:
        if v is None or isinstance(v, bool | str) or type(v) is int:
            return v
        if type(v) is float:
            return v if math.isfinite(v) else {"__type__": "float", "value": repr(v)}
        if isinstance(v, np.generic):
            return {"__type__": "scalar", "data": self.array(np.asarray(v))}
        if v is pd.NA:
            return {"__type__": "NA"}
        if v is pd.NaT:
            return {"__type__": "NaT"}
        if isinstance(v, np.ndarray):
            return self.array(v)
        if isinstance(v, pd.DataFrame):
            return {"__type__": "frame", "index": self.index(v.index),
                    "columns": self.index(v.columns), "attrs": self.value(dict(v.attrs)),
                    "data": [self.values(v.iloc[:, j]) for j in range(v.shape[1])]}
        if isinstance(v, pd.Series):
            return {"__type__": "series", "name": self.value(v.name), "index": self.index(v.index),
                    "attrs": self.value(dict(v.attrs)), "values": self.values(v)}
        if isinstance(v, pd.Index):
            return self.index(v)
        if isinstance(v, NutsInfo):
            return {"__type__": "nuts_info", "fields": self.value(v.as_dict())}
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if isinstance(v, tuple):
            return {"__type__": "tuple", "items": [self.value(x) for x in v]}
        if isinstance(v, dict):
            return {"__type__": "dict", "items": [[self.value(k), self.value(x)]
                                                  for k, x in v.items()]}
        raise ResultFileError(f"cannot save a value of type {type(v).__name__}: {v!r:.60}")


class _Decoder:
    """Inverse of :class:`_Encoder`, reading arrays from the loaded netCDF variables."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    def array(self, spec: dict[str, Any]) -> np.ndarray:
        dtype = np.dtype(spec["dtype"])
        if spec["__type__"] == "objarray":
            items = [self.value(v) for v in spec["items"]]
            out = np.empty(len(items), dtype=dtype)
            out[:] = items
            return out.reshape(spec["shape"])
        a = self.arrays[spec["var"]]
        a = a.view(dtype) if spec["raw"] else a.astype(dtype, copy=False)
        return np.ascontiguousarray(a).reshape(spec["shape"])

    def values(self, spec: dict[str, Any]) -> Any:
        if spec["kind"] == "category":
            cats = self.index(spec["categories"])
            return pd.Categorical.from_codes(self.array(spec["codes"]), categories=cats,
                                             ordered=spec["ordered"])
        if spec["kind"] == "numpy":
            return self.array(spec["data"])
        items = [self.value(v) for v in spec["items"]]
        if spec["dtype"] == "object":
            out = np.empty(len(items), dtype=object)
            out[:] = items
            return out
        return pd.array(items, dtype=spec["dtype"])

    def series(self, spec: dict[str, Any], index: pd.Index) -> pd.Series:
        """A column or Series with exactly the saved dtype (no inference of ``str``)."""
        values = self.values(spec)
        return pd.Series(values, index=index, dtype=getattr(values, "dtype", None), copy=False)

    def index(self, spec: dict[str, Any]) -> pd.Index:
        if spec["__type__"] == "multiindex":
            return pd.MultiIndex.from_arrays([self.values(s) for s in spec["levels"]],
                                             names=[self.value(n) for n in spec["names"]])
        if spec["__type__"] == "rangeindex":
            start, stop, step = spec["range"]
            return pd.RangeIndex(start, stop, step, name=self.value(spec["name"]))
        values = self.values(spec["values"])
        return pd.Index(values, dtype=getattr(values, "dtype", None),
                        name=self.value(spec["name"]), copy=False)

    def value(self, v: Any) -> Any:
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if not isinstance(v, dict):
            return v
        kind = v["__type__"]
        if kind == "float":
            return float(v["value"])
        if kind == "scalar":
            return self.array(v["data"])[()]
        if kind in ("ndarray", "objarray"):
            return self.array(v)
        if kind in ("index", "rangeindex", "multiindex"):
            return self.index(v)
        if kind == "frame":
            index, columns = self.index(v["index"]), self.index(v["columns"])
            rows = pd.RangeIndex(len(index))
            frame = pd.DataFrame({j: self.series(s, rows) for j, s in enumerate(v["data"])},
                                 index=rows)
            frame.index, frame.columns = index, columns
            frame.attrs.update(self.value(v["attrs"]))
            return frame
        if kind == "series":
            series = self.series(v["values"], self.index(v["index"]))
            series.name = self.value(v["name"])
            series.attrs.update(self.value(v["attrs"]))
            return series
        if kind == "tuple":
            return tuple(self.value(x) for x in v["items"])
        if kind == "nuts_info":
            return NutsInfo.from_dict(self.value(v["fields"]))
        if kind == "dict":
            return {self.value(k): self.value(x) for k, x in v["items"]}
        return {"NA": pd.NA, "NaT": pd.NaT}[kind]


def _require_backend() -> None:
    """ImportError with the fix, before anything is written or read."""
    try:
        import h5netcdf  # noqa: F401
        import h5py  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"saving and loading hierlm results needs the h5netcdf and h5py "
                          f"packages ({exc}); pip install h5netcdf h5py") from None


def _write_arrays(arrays: dict[str, np.ndarray], file: Path) -> None:
    import xarray as xr  # here, not at the top: ``import hierlm`` stays light

    variables = {name: ([f"{name}_{i}" for i in range(a.ndim)], a) for name, a in arrays.items()}
    ds = xr.Dataset(variables)
    encoding = {name: {"_FillValue": None} for name in arrays}
    ds.to_netcdf(file, engine=_ENGINE, encoding=encoding)


def _read_arrays(file: Path) -> dict[str, np.ndarray]:
    import xarray as xr

    with xr.open_dataset(file, engine=_ENGINE, mask_and_scale=False, decode_times=False,
                         decode_timedelta=False, decode_coords=False) as ds:
        return {str(name): np.asarray(ds[name].values) for name in ds.data_vars}


def save(result: FitRecord, path: str | os.PathLike[str]) -> Path:
    """Save a fitted result to the directory ``path`` (see the module docstring).

    Parameters
    ----------
    result : FitResult or FitRecord
        Any fitted result (REML, ML or NUTS).
    path : str or path-like
        Directory to create.  An existing saved result there (hierlm's files and
        nothing else) is replaced; an empty directory is filled.

    Returns
    -------
    pathlib.Path
        The directory written.

    Raises
    ------
    ResultFileError
        If ``path`` exists and is not a saved result or holds files hierlm did not
        write (nothing is removed then), cannot be written (permissions, disk), or a
        field holds a value of a type the format does not store.

    Examples
    --------
    >>> import tempfile, hierlm
    >>> from hierlm.results.io import save
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> folder = save(res, f"{tempfile.mkdtemp()}/sleep.hierlm")
    >>> sorted(p.name for p in folder.iterdir())
    ['arrays.nc', 'result.json']
    >>> hierlm.load(folder).fixef.equals(res.fixef)
    True
    """
    _require_backend()
    if not isinstance(result, FitRecord):
        raise ResultFileError(f"can only save a FitResult, got {type(result).__name__}")
    target = Path(path)
    check_replaceable(target, _OWN, FORMAT)
    enc = _Encoder()
    fields = {f.name: enc.value(getattr(result, f.name))
              for f in dataclasses.fields(result) if f.name not in ("idata", "model", "coder")}
    if result.coder is not None:
        fields["coder"] = enc.value(result.coder.to_dict())
    doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "hierlm_version": __version__,
           "idata": result.idata is not None, "fields": fields}
    text = json.dumps(doc, indent=1, allow_nan=False)
    tmp: Path | None = None
    try:
        # SIGINT is held back until the block ends, so that it cannot fall between
        # mkdtemp making the folder and ``tmp`` naming it (the folder would be left)
        # nor between the renames (the old result would be left aside)
        with interrupts_deferred():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp",
                                        dir=target.parent))
            _write_arrays(enc.arrays, tmp / _ARRAYS)
            if result.idata is not None:
                result.idata.to_netcdf(tmp / _IDATA, engine=_ENGINE)
            (tmp / _JSON).write_text(text, encoding="utf-8")
        with folder_lock(target.parent), interrupts_deferred():
            replace_dir(tmp, target, _OWN, FORMAT)
            tmp = None  # in place: nothing of it left to remove
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)  # made by mkdtemp above: all ours
        if isinstance(exc, OSError):
            raise ResultFileError(f"cannot write '{target}': {exc.strerror or exc}") from None
        raise
    return target


def _upgrade_v1(fields: dict[str, Any]) -> None:
    """Version 1 kept a NUTS fit's settings and diagnostics in the dict ``extra`` (the
    keys of :class:`NutsInfo`, empty for REML/ML fits): typed into ``nuts``."""
    extra = fields.pop("extra", None)
    if extra:
        fields["nuts"] = NutsInfo.from_dict(extra)


def read_record(path: str | os.PathLike[str]) -> FitRecord:
    """Read the fields of a result written by :func:`save` (:func:`hierlm.load` reads the
    :class:`~hierlm.FitResult` itself).

    Parameters
    ----------
    path : str or path-like
        The directory that :func:`save` wrote.

    Returns
    -------
    FitRecord
        Equal to the saved result field by field: pandas objects with their index and
        dtypes, numpy arrays bit for bit, and the NUTS ``idata``.

    Raises
    ------
    ResultFileError
        If ``path`` is not a saved result, was written with an incompatible
        ``format_version``, or is damaged.

    Examples
    --------
    >>> read_record("no/such/dir")
    Traceback (most recent call last):
    ...
    hierlm.errors.ResultFileError: 'no/such/dir' is not a saved hierlm result (no result.json)
    """
    _require_backend()
    folder = Path(path)
    if not (folder / _JSON).is_file():
        raise ResultFileError(f"'{folder}' is not a saved hierlm result (no {_JSON})")
    try:
        doc = json.loads((folder / _JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ResultFileError(f"'{folder / _JSON}' cannot be read: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ResultFileError(f"'{folder}' is not a saved hierlm result (format "
                              f"{doc.get('format') if isinstance(doc, dict) else None!r})")
    version = doc.get("format_version")
    if version not in _READABLE:
        raise ResultFileError(
            f"'{folder}' has format_version {version!r} (written by hierlm "
            f"{doc.get('hierlm_version', '?')}); this hierlm reads format_version "
            f"{' and '.join(map(str, _READABLE))} only")
    try:
        with interrupts_deferred():
            arrays = _read_arrays(folder / _ARRAYS)
        fields = _Decoder(arrays).value({"__type__": "dict", "items": [
            [k, v] for k, v in doc["fields"].items()]})
        if doc.get("idata"):
            import xarray as xr

            with interrupts_deferred(), xr.open_datatree(folder / _IDATA,
                                                         engine=_ENGINE) as tree:
                fields["idata"] = tree.load().copy()
        if version == 1:
            _upgrade_v1(fields)
    except Exception as exc:
        raise ResultFileError(f"'{folder}' is damaged: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    known = {f.name for f in dataclasses.fields(FitRecord)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ResultFileError(f"'{folder}' has field(s) this hierlm does not know: "
                              f"{', '.join(unknown)}")
    missing = sorted(f.name for f in dataclasses.fields(FitRecord)
                     if f.name not in fields and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if missing:
        raise ResultFileError(f"'{folder}' is damaged: missing field(s) "
                              f"{', '.join(missing)} in {_JSON}")
    try:
        if isinstance(fields.get("coder"), dict):
            from hierlm.design.newdata import NewDataCoder

            fields["coder"] = NewDataCoder.from_dict(fields["coder"])
        return FitRecord(**fields)
    except Exception as exc:
        raise ResultFileError(f"'{folder}' is damaged: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
