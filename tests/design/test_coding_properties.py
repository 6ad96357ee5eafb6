"""Property test: new data are coded exactly as the fitting data, whatever the level names.

Random level names with dots, ``T.``, brackets, colons, spaces, unicode and digits,
including pairs that an older naming scheme merged (``ST.LOUIS``/``SLOUIS``,
``T.a``/``a``, ``[a]``/``a``), as text, categorical or ordered categorical columns.
``predict(data)`` recodes the fitting rows from scratch through the new-data path, so it
must equal ``fitted()``; every level of the factor must own its own, differently named
column, tied to its rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import hierlm

ALPHABET = st.sampled_from(list("aAbT.T. 0123456789_:[]()-é字ßΩ"))
LEVEL = st.one_of(st.text(ALPHABET, min_size=1, max_size=6),
                  st.sampled_from(["ST.LOUIS", "SLOUIS", "T.a", "a", "[a]", "a b", "1", "01"]))
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def _data(levels: list[str], kind: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 16 * len(levels)
    f = np.array(levels, dtype=object)[np.arange(n) % len(levels)]
    d = pd.DataFrame({"f": f, "x": rng.normal(size=n),
                      "g": [f"g{i % 7}" for i in range(n)]})
    d["y"] = rng.normal(size=n) + d["x"] + rng.normal(size=len(levels))[np.arange(n) % len(levels)]
    if kind != "text":
        cats = list(rng.permutation(np.array(levels, dtype=object)))
        d["f"] = pd.Categorical(d["f"], categories=cats, ordered=kind == "ordered")
    return d


@SETTINGS
@given(levels=st.lists(LEVEL, min_size=2, max_size=5, unique=True),
       kind=st.sampled_from(["text", "categorical", "ordered"]), seed=st.integers(0, 2**16))
@example(levels=["ST.LOUIS", "SLOUIS", "NEW YORK"], kind="text", seed=1)
@example(levels=["T.a", "a", "[a]"], kind="categorical", seed=2)
def test_predict_on_the_fitting_data_equals_fitted(levels: list[str], kind: str,
                                                   seed: int) -> None:
    d = _data(levels, kind, seed)
    res = hierlm.fit("y ~ f * x + (1 | g)", d)
    np.testing.assert_allclose(res.predict(d).to_numpy(), res.fitted().to_numpy(),
                               rtol=0, atol=1e-10)
    names = list(res.fixef.index)
    assert len(set(names)) == len(names) == 2 * len(levels)
    order = list(d["f"].cat.categories) if kind != "text" else sorted(levels)
    if kind != "ordered":  # treatment: one column per level after the first, named by it
        assert names[1:len(levels)] == [f"f{lv}" for lv in order[1:]]
        X = res.coder.code(None).X
        for j, lv in enumerate(order[1:], start=1):
            np.testing.assert_array_equal(X[:, j], (d["f"] == lv).to_numpy(dtype=float))
