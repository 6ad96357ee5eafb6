"""The saved result's JSON codec: every value comes back exactly, through JSON text."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hierlm.errors import ResultFileError
from hierlm.results.io_codec import Decoder, Encoder


def round_trip(v: object) -> object:
    enc = Encoder()
    text = json.dumps(enc.value(v), allow_nan=False)  # strict JSON: no NaN tokens
    return Decoder(dict(enc.arrays)).value(json.loads(text))


def test_floats_and_scalars_come_back_bit_for_bit() -> None:
    for v in (0.1, -0.0, 1e-310, float("nan"), float("inf"), -float("inf"), 3, True, None, "x"):
        back = round_trip(v)
        assert type(back) is type(v)
        if isinstance(v, float):
            assert np.float64(back).tobytes() == np.float64(v).tobytes()
        else:
            assert back == v
    back = round_trip(np.float32(0.1))
    assert isinstance(back, np.float32) and back == np.float32(0.1)


def test_arrays_of_every_numeric_kind_keep_dtype_shape_and_bits() -> None:
    arrays = [np.arange(6.0).reshape(2, 3) / 7, np.array([1 + 2j, np.nan]),
              np.array(["2024-01-02", "NaT"], dtype="datetime64[ns]"),
              np.array([1, 2], dtype=np.int32), np.array([True, False]),
              np.array(["a", None], dtype=object)]
    for a in arrays:
        back = round_trip(a)
        assert isinstance(back, np.ndarray) and back.dtype == a.dtype and back.shape == a.shape
        if a.dtype.kind == "O":
            assert back.tolist() == a.tolist()
        else:
            assert back.tobytes() == a.tobytes()


def test_pandas_objects_keep_index_dtype_and_values() -> None:
    s = pd.Series([1.5, np.nan], index=pd.Index(["a", "b"], name="k"), name="v")
    frame = pd.DataFrame({"x": [1, 2], "f": pd.Categorical(["u", "w"], ordered=True)},
                         index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["g", "i"]))
    pd.testing.assert_series_equal(round_trip(s), s)
    pd.testing.assert_frame_equal(round_trip(frame), frame)


def test_an_unknown_type_is_one_clear_error() -> None:
    with pytest.raises(ResultFileError, match="cannot save a value of type object"):
        Encoder().value(object())
