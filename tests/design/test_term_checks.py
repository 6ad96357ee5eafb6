"""A random term's matrix checks where it repeats the fixed part or another term.

A term written as the fixed part (or as an earlier term) gets a copy of that matrix;
the finite and rank tests it passed are not repeated, and where the fixed part lost a
dependent column the term's copy is still tested (and refused).  The dependent column
is known from how the data are made.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hierlm.design.matrices import build_design
from hierlm.errors import DataError


def _data(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    x = rng.normal(size=n)
    return pd.DataFrame({"y": rng.normal(size=n), "x": x, "x2": 2.0 * x, "c": 3.0,
                         "g": pd.array([f"g{i % 8}" for i in range(n)], dtype="str"),
                         "h": pd.array([f"h{i % 5}" for i in range(n)], dtype="str")})


def test_terms_repeating_the_fixed_part_keep_its_matrix() -> None:
    d = build_design("y ~ 1 + x + (1 + x | g) + (1 + x | h)", _data())
    for t in d.terms:
        np.testing.assert_array_equal(t.X, d.X)
        assert t.X is not d.X  # each term its own copy
    assert [t.coef_names for t in d.terms] == [("(Intercept)", "x")] * 2


def test_a_term_repeating_a_rank_deficient_fixed_part_is_refused() -> None:
    # the fixed part drops x2 (2 x), with a warning; the term's copy keeps it: refused
    with pytest.warns(UserWarning, match="x2"), pytest.raises(DataError, match="x2"):
        build_design("y ~ 1 + x + x2 + (1 + x + x2 | g)", _data())


def test_a_slope_on_a_constant_is_refused() -> None:
    with pytest.raises(DataError, match="rank-deficient model matrix: column\\(s\\) c"):
        build_design("y ~ 1 + x + (1 + c | g)", _data())
