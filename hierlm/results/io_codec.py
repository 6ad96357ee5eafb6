"""JSON encoding of a saved result's values, numeric arrays collected on the side.

:class:`Encoder` turns a result's field values (numbers, strings, NumPy arrays, pandas
objects, :class:`~hierlm.estimate.nuts_info.NutsInfo`, dicts, lists) into JSON-able
objects tagged with ``"__type__"``; every numeric array goes to ``Encoder.arrays`` under
a name ``v<k>`` and is referenced from the JSON, to be written bit-exact to netCDF by
:mod:`hierlm.results.io`.  Finite floats are kept as Python floats (``json`` writes the
shortest round-trip ``repr``), NaN and infinities as tagged strings; complex and
date-time arrays as their raw 64-bit words.  :class:`Decoder` is the exact inverse.
Nothing is pickled.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from hierlm.errors import ResultFileError
from hierlm.estimate.nuts_info import NutsInfo

__all__ = ["Decoder", "Encoder"]

_RAW = {"c": np.float64, "m": np.int64, "M": np.int64}  # stored as their raw words


class Encoder:
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


class Decoder:
    """Inverse of :class:`Encoder`, reading arrays from the loaded netCDF variables."""

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
