"""Malformed input: one clear hierlm error, a one-line message naming the fault.

Every case must raise the right :class:`hierlm.HierlmError` subclass, with a
single-line message containing the column, term or value at fault, no chained
exception on display (``raise ... from None``), and the caller's DataFrame unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

import hierlm

N = 40


def base() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "y": rng.normal(size=N) + 3.0,
        "x": rng.normal(size=N),
        "c": np.ones(N),
        "s": ["u"] * N,
        "g": np.repeat(list("abcd"), N // 4),
        "f": pd.Categorical(rng.choice(list("pqr"), size=N)),
    })


def _set(**cols: Any) -> Callable[[], pd.DataFrame]:
    def make() -> pd.DataFrame:
        d = base()
        for name, value in cols.items():
            d[name] = value(d) if callable(value) else value
        return d
    return make


def _first(value: float) -> Callable[[pd.DataFrame], np.ndarray]:
    return lambda d: np.r_[value, d["x"].to_numpy()[1:]]


def _dup_columns() -> pd.DataFrame:
    d = base()
    return pd.concat([d, d[["x"]]], axis=1)


def _multiindex() -> pd.DataFrame:
    d = base()
    d.columns = pd.MultiIndex.from_tuples([(c, "") for c in d.columns])
    return d


F, D = hierlm.FormulaError, hierlm.DataError
OK = "y ~ x + (1 | g)"

# id: (formula, data maker, exception, substring of the message)
CASES: dict[str, tuple[Any, Callable[[], Any], type[Exception], str]] = {
    # formula problems
    "missing tilde": ("y x + (1 | g)", base, F, "no '~'"),
    "two tildes": ("y ~ x ~ (1 | g)", base, F, "more than one '~'"),
    "unclosed paren": ("y ~ x + (1 | g", base, F, "unclosed '('"),
    "stray close paren": ("y ~ x) + (1 | g)", base, F, "unexpected ')'"),
    "empty left of bar": ("y ~ x + ( | g)", base, F, "empty left side of '|': '( | g)'"),
    "empty group": ("y ~ x + (x | )", base, F, "empty grouping side of '|': '(x | )'"),
    "unknown function": ("y ~ foo(x) + (1 | g)", base, F, "'foo'"),
    "duplicated random term": ("y ~ x + (1 | g) + (1 | g)", base, F, "'(1 | g)'"),
    "duplicated fixed term": ("y ~ x + x + (1 | g)", base, F, "duplicated fixed-effects term 'x'"),
    "no random term": ("y ~ x", base, F, "no random-effects term"),
    "bar outside parens": ("y ~ x | g", base, F, "'x | g'"),
    "expression as group": ("y ~ x + (1 | g + s)", base, F, "'g + s'"),
    "empty response": ("~ x + (1 | g)", base, F, "empty response"),
    "formula not a string": (42, base, F, "got int"),
    "stray plus": ("y ~ x + + (1 | g)", base, F, "empty term"),
    # data problems
    "unknown column": ("y ~ zz + (1 | g)", base, D, "not found in data: zz"),
    "unknown group column": ("y ~ x + (1 | gg)", base, D, "not found in data: gg"),
    "unknown slope column": ("y ~ x + (zz | g)", base, D, "not found in data: zz"),
    "string response": ("s ~ x + (1 | g)", base, D, "response 's'"),
    "object response": ("y ~ x + (1 | g)", _set(y=lambda d: d["y"].astype(object)), D,
                        "response 'y'"),
    "bool response": ("b ~ x + (1 | g)", _set(b=lambda d: d["x"] > 0), D, "response 'b'"),
    "complex response": ("z ~ x + (1 | g)", _set(z=lambda d: d["y"] + 1j), D, "'z'"),
    "all-NaN response": (OK, _set(y=np.nan), D, "y are entirely missing"),
    "+inf response": (OK, _set(y=lambda d: np.r_[np.inf, d["y"].to_numpy()[1:]]), D,
                      "response 'y'"),
    "-inf response": (OK, _set(y=lambda d: np.r_[-np.inf, d["y"].to_numpy()[1:]]), D,
                      "response 'y'"),
    "+inf predictor": (OK, _set(x=_first(np.inf)), D, "'x'"),
    "-inf slope": ("y ~ 1 + (1 + x | g)", _set(x=_first(-np.inf)), D, "(1 + x | g)"),
    "NaN from transform": ("np.log(y) ~ x + (1 | g)", _set(y=lambda d: d["y"] - 3.0), D,
                           "'np.log(y)'"),
    "constant response": (OK, _set(y=2.5), D, "response 'y' is constant"),
    "empty frame": (OK, lambda: base().iloc[:0], D, "no rows"),
    "one row": (OK, lambda: base().iloc[:1], D, "only 1 complete row"),
    "single-level group": ("y ~ x + (1 | s)", base, D, "'s'"),
    "levels equal nobs": ("y ~ x + (1 | i)", _set(i=np.arange(N)), D, "'i' has 40 levels"),
    "too many random effects": ("y ~ x + (1 + x | h)", _set(h=np.arange(N) // 2), D,
                                "(1 + x | h) has 40 random effects"),
    "slope on constant": ("y ~ x + (1 + c | g)", base, D, "(1 + c | g)"),
    "slope of zeros": ("y ~ x + (0 + z | g)", _set(z=0.0), D, "(0 + z | g)"),
    "not a DataFrame": (OK, lambda: base().to_dict("list"), D, "got dict"),
    "ndarray data": (OK, lambda: base().to_numpy(), D, "got ndarray"),
    "infinite float group": ("y ~ x + (1 | gf)",
                             _set(gf=lambda d: np.r_[np.inf, np.arange(N - 1) % 4.0]), D,
                             "'gf'"),
    "duplicate column names": (OK, _dup_columns, D, "more than once in data: x"),
    "MultiIndex columns": (OK, _multiindex, D, "MultiIndex"),
}


def assert_clean(exc: BaseException) -> None:
    """One line, and no chained exception shown in the traceback."""
    msg = str(exc)
    assert msg and "\n" not in msg, msg
    assert exc.__cause__ is None
    assert exc.__context__ is None or exc.__suppress_context__


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_raises_one_clear_error(case: str) -> None:
    formula, make, exc_type, fragment = CASES[case]
    data = make()
    before = data.copy(deep=True) if isinstance(data, pd.DataFrame) else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # np.log of negative numbers
        with pytest.raises(exc_type) as info:
            hierlm.build_design(formula, data)
    assert isinstance(info.value, hierlm.HierlmError)
    assert fragment in str(info.value), str(info.value)
    assert_clean(info.value)
    if before is not None:
        pd.testing.assert_frame_equal(data, before)


def test_battery_is_large_enough() -> None:
    assert len(CASES) >= 30


def test_fit_raises_the_same_errors_as_build_design() -> None:
    data = base()
    with pytest.raises(hierlm.DataError, match="not found in data: zz"):
        hierlm.fit("y ~ zz + (1 | g)", data)
    with pytest.raises(hierlm.FormulaError, match="no '~'"):
        hierlm.Model("y x + (1 | g)", data)


# --- problems that are not errors -----------------------------------------------------

def test_collinear_columns_are_dropped_with_a_warning() -> None:
    data = base().assign(x2=lambda d: 2.0 * d["x"], x3=lambda d: d["x"] - 1.0)
    before = data.copy(deep=True)
    with pytest.warns(UserWarning, match=r"rank deficient; dropping column\(s\) x2, x3"):
        design = hierlm.build_design("y ~ x + x2 + x3 + (1 | g)", data)
    assert design.fixef_names == ("(Intercept)", "x")
    pd.testing.assert_frame_equal(data, before)


def test_level_absent_after_na_drop_is_dropped() -> None:
    data = base()
    data.loc[data["f"] == "r", "y"] = np.nan
    before = data.copy(deep=True)
    with pytest.warns(UserWarning, match="dropped 1[0-9] of 40 rows"):
        design = hierlm.build_design("y ~ f + (1 | g)", data)
    assert design.fixef_names == ("(Intercept)", "fq")
    assert design.n_dropped == int((before["f"] == "r").sum())
    pd.testing.assert_frame_equal(data, before)


def test_unused_categories_of_a_grouping_factor_are_dropped() -> None:
    data = base().assign(g=lambda d: pd.Categorical(d["g"], categories=list("abcdez")))
    design = hierlm.build_design(OK, data)
    assert design.terms[0].levels == ("a", "b", "c", "d")


def test_float_group_with_nan_drops_those_rows() -> None:
    data = base().assign(gf=np.r_[np.nan, np.arange(N - 1) % 4.0])
    with pytest.warns(UserWarning, match="dropped 1 of 40 rows"):
        design = hierlm.build_design("y ~ x + (1 | gf)", data)
    assert design.nobs == N - 1 and design.terms[0].levels == ("0", "1", "2", "3")


def test_crossed_terms_may_have_more_random_effects_than_observations_together() -> None:
    """As in lme4, only each term's own number of random effects must be below n."""
    data = base().assign(a=np.arange(N) % 25, b=(np.arange(N) * 7) % 23)
    design = hierlm.build_design("y ~ x + (1 | a) + (1 | b)", data)
    assert design.q >= design.nobs


# --- method problems ------------------------------------------------------------------

@pytest.fixture(scope="module")
def model() -> hierlm.Model:
    return hierlm.Model(OK, base())


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"method": "bayes"}, "'bayes'"),
    ({"method": 3}, "3"),
    ({"method": "reml", "options": {"maxiter": -1}}, "'maxiter'"),
    ({"method": "reml", "options": {"maxiter": 2.5}}, "'maxiter'"),
    ({"method": "ml", "options": {"ftol": float("nan")}}, "'ftol'"),
    ({"method": "reml", "options": {"tolerance": 1e-6}}, "'tolerance'"),
    ({"method": "reml", "options": [("maxiter", 3)]}, "dict"),
    ({"method": "reml", "start": [1.0, 2.0]}, "length 1"),
    ({"method": "reml", "start": [float("inf")]}, "finite"),
    ({"method": "reml", "draws": 10}, "draws"),
])
def test_bad_method_arguments(model: hierlm.Model, kwargs: dict, fragment: str) -> None:
    with pytest.raises(hierlm.MethodError) as info:
        model.fit(**kwargs)
    assert fragment in str(info.value)
    assert_clean(info.value)


def test_fit_with_unknown_method() -> None:
    data = base()
    before = data.copy(deep=True)
    with pytest.raises(hierlm.MethodError, match="unknown method 'bayes'") as info:
        hierlm.fit(OK, data, method="bayes")
    assert_clean(info.value)
    pd.testing.assert_frame_equal(data, before)


@pytest.mark.parametrize("priors", [
    {"nonexistent": "normal(0, 1)"},
    {"nonexistent": 1.0},
    "not a dict",
])
def test_bad_priors_for_nuts(model: hierlm.Model, priors: Any) -> None:
    with pytest.raises(hierlm.PriorError) as info:
        model.fit("nuts", priors=priors, draws=10, tune=10, chains=1)
    assert_clean(info.value)
    if isinstance(priors, dict):
        assert "nonexistent" in str(info.value)
