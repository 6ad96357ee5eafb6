"""The parts of a design built on first read (the coder's frame, a term's level values)
are the fitting rows' values, whatever the caller does to the data afterwards."""

from __future__ import annotations

import numpy as np
import pandas as pd

import hierlm
from hierlm.design.lazy import Deferred
from hierlm.design.matrices import build_design


def _data() -> pd.DataFrame:
    d = hierlm.load_sleepstudy()
    d["Subject"] = d["Subject"].astype(str)
    return d


def test_coder_frame_and_levels_ignore_later_changes_to_the_data() -> None:
    data = _data()
    expected = data[["Days", "Subject"]].copy()
    d = build_design("Reaction ~ Days + (Days | Subject)", data)
    assert isinstance(vars(d.coder)["frame"], Deferred)  # not built yet
    assert isinstance(vars(d.terms[0])["level_values"], Deferred)
    data.loc[0, "Days"] = 99  # in place, after the design was built
    data["Subject"] = "x"
    pd.testing.assert_frame_equal(d.coder.frame, expected)
    values = d.terms[0].values
    assert list(values) == sorted(set(expected["Subject"]))
    assert values.dtype == pd.Index(["a"]).dtype  # text keeps pandas' text dtype
    assert d.coder.frame is d.coder.frame  # built once


def test_arrow_text_codes_match_sorted_unique() -> None:
    # levels with non-ASCII text, digits and case: sorted by code point as np.unique sorts
    rng = np.random.default_rng(3)
    labels = np.array(["b", "B", "a10", "a9", "é", "Z", "ä", "a"])
    g = labels[rng.integers(0, len(labels), 200)]
    data = pd.DataFrame({"y": rng.normal(size=200), "g": pd.array(g, dtype="str")})
    d = build_design("y ~ 1 + (1 | g)", data)
    uniques, codes = np.unique(g.astype(object), return_inverse=True)
    assert d.terms[0].levels == tuple(uniques)
    np.testing.assert_array_equal(d.terms[0].codes, codes)
    assert d.terms[0].codes.dtype == np.int64


def test_design_arrays_do_not_share_the_callers_memory() -> None:
    # every used column (the frame used as it is) and a frame with an unused column
    for extra in (False, True):
        data = _data()
        if extra:
            data["unused"] = 1.0
        d = build_design("Reaction ~ Days + (Days | Subject)", data)
        y, X, Xt = d.y.copy(), d.X.copy(), d.terms[0].X.copy()
        _ = d.coder.frame  # built, and the design's working frame released
        import gc

        gc.collect()
        data.loc[0, "Reaction"] = 1e6  # in place, after the design was built
        data.loc[0, "Days"] = 99
        np.testing.assert_array_equal(d.y, y)
        np.testing.assert_array_equal(d.X, X)
        np.testing.assert_array_equal(d.terms[0].X, Xt)
        assert d.coder.frame.loc[0, "Days"] == 0
