"""Stage 1 on data: term order, rank checks, missing values and grouping labels."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.design.matrices import _dependent_columns, build_design


def frame(n: int = 48, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "y": rng.normal(size=n), "x": rng.normal(size=n), "z": rng.uniform(size=n),
        "a": np.arange(n) % 12, "b": np.arange(n) % 4, "c": (np.arange(n) // 2) % 8,
    })


def test_terms_kept_in_formula_order_when_levels_never_increase() -> None:
    d = build_design("y ~ 1 + (1 | a) + (1 | c) + (0 + x | c) + (1 | b)", frame())
    assert [(t.group, t.coef_names) for t in d.terms] == [
        ("a", ("(Intercept)",)), ("c", ("(Intercept)",)), ("c", ("x",)), ("b", ("(Intercept)",))]


def test_reordered_terms_put_ties_in_reverse_formula_order() -> None:
    """lme4's mkReTrms: ``rev(order(nl))`` once any term has more levels than its predecessor."""
    d = build_design("y ~ 1 + (1 | b) + (1 | c) + (0 + x | c) + (1 | a)", frame())
    assert [(t.group, t.coef_names) for t in d.terms] == [
        ("a", ("(Intercept)",)), ("c", ("x",)), ("c", ("(Intercept)",)), ("b", ("(Intercept)",))]


def test_dependent_columns_are_those_after_their_span() -> None:
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=(2, 30))
    X = np.column_stack([np.ones(30), u, 2 * u, v, u - v + 3, np.zeros(30)])
    assert _dependent_columns(X) == [2, 4, 5]
    assert _dependent_columns(X[:, [0, 1, 3]]) == []
    assert _dependent_columns(np.zeros((5, 0))) == []


def test_nearly_collinear_column_kept_above_tolerance() -> None:
    rng = np.random.default_rng(2)
    u = rng.normal(size=40)
    X = np.column_stack([u, u + 1e-5 * rng.normal(size=40)])
    assert _dependent_columns(X) == []
    X[:, 1] = u + 1e-9 * rng.normal(size=40)
    assert _dependent_columns(X) == [1]


def test_float_grouping_levels_print_like_r() -> None:
    d = frame().assign(b=lambda f: f["b"] * 0.5)
    design = build_design("y ~ x + (1 | b)", d)
    assert design.terms[0].levels == ("0", "0.5", "1", "1.5")


def test_interaction_grouping_and_nesting_labels() -> None:
    design = build_design("y ~ x + (1 | b/c)", frame())
    assert [t.group for t in design.terms] == ["c:b", "b"]
    assert design.terms[0].levels[0] == "0:0"


def test_missing_values_only_in_used_columns_drop_rows() -> None:
    d = frame().assign(unused=np.nan)
    d.loc[[0, 5], "x"] = np.nan
    with pytest.warns(UserWarning, match="dropped 2 of 48 rows"):
        design = build_design("y ~ x + (1 | a)", d)
    assert design.nobs == 46 and design.n_dropped == 2


def test_exact_linear_response_is_refused() -> None:
    d = frame().assign(y=lambda f: 2.0 * f["x"] - 1.0)
    with pytest.raises(hierlm.DataError, match="exact linear function of the fixed effects"):
        build_design("y ~ x + (1 | a)", d)


def test_near_exact_response_is_accepted() -> None:
    d = frame().assign(y=lambda f: 2.0 * f["x"] + 1e-6 * np.sin(np.arange(len(f))))
    assert build_design("y ~ x + (1 | a)", d).nobs == 48


def test_categorical_random_slope_columns() -> None:
    d = frame().assign(f=lambda t: pd.Categorical(np.array(list("pqrs"))[t["c"] % 4]))
    design = build_design("y ~ 1 + (0 + f | b)", d)
    assert design.terms[0].coef_names == ("fp", "fq", "fr", "fs")


def test_caller_frame_unchanged_by_every_step() -> None:
    d = frame().assign(f=lambda t: pd.Categorical(np.array(list("pqrs"))[t["c"] % 4],
                                                  categories=list("pqrst")))
    d.loc[3, "y"] = np.nan
    before = d.copy(deep=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        build_design("y ~ f + x + (1 + x | a) + (1 | b/c)", d)
    pd.testing.assert_frame_equal(d, before)
