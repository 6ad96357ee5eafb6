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
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hierlm.errors import ResultFileError
from hierlm.estimate.nuts_info import NutsInfo
from hierlm.estimate.record import FitRecord
from hierlm.objective.interrupts import interrupts_deferred
from hierlm.results.io_codec import Decoder, Encoder
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
    enc = Encoder()
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
        fields = Decoder(arrays).value({"__type__": "dict", "items": [
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
