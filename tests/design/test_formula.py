"""Tests for hierlm.design.formula.parse_formula: lme4 expansion rules and errors."""

from __future__ import annotations

import pytest

from hierlm.design.formula import parse_formula
from hierlm.design.terms import FormulaSpec, RandomTermSpec
from hierlm.errors import FormulaError


def R(expr: str, *factors: str) -> RandomTermSpec:
    return RandomTermSpec(expr, factors)


def random_of(formula: str) -> tuple[RandomTermSpec, ...]:
    return parse_formula(formula).random


# --- touchstone formulas ------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "response", "fixed", "random"),
    [
        (
            "Reaction ~ 1 + Days + (1 + Days | Subject)",
            "Reaction",
            "1 + Days",
            (R("1 + Days", "Subject"),),
        ),
        (
            "Reaction ~ 1 + Days + (1 + Days || Subject)",
            "Reaction",
            "1 + Days",
            (R("1", "Subject"), R("0 + Days", "Subject")),
        ),
        (
            "strength ~ 1 + (1 | batch/cask)",
            "strength",
            "1",
            (R("1", "batch"), R("1", "cask", "batch")),
        ),
        (
            "diameter ~ 1 + (1 | plate) + (1 | sample)",
            "diameter",
            "1",
            (R("1", "plate"), R("1", "sample")),
        ),
        (
            "y ~ 1 + service * dept + (1 | s) + (1 | d)",
            "y",
            "1 + service * dept",
            (R("1", "s"), R("1", "d")),
        ),
    ],
)
def test_touchstone_formulas(formula, response, fixed, random):
    assert parse_formula(formula) == FormulaSpec(formula, response, fixed, random)


def test_group_label_is_lme4_name():
    spec = parse_formula("strength ~ 1 + (1 | batch/cask)")
    assert [t.group for t in spec.random] == ["batch", "cask:batch"]
    assert spec.columns == ("batch", "cask")


# --- single-bar terms ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("y ~ (1 | g)", (R("1", "g"),)),
        ("y ~ (1 + x | g)", (R("1 + x", "g"),)),
        ("y ~ (0 + x | g)", (R("0 + x", "g"),)),
        ("y ~ (x - 1 | g)", (R("x - 1", "g"),)),
        ("y ~ (x | g)", (R("x", "g"),)),
        ("y ~ (-1 + x | g)", (R("-1 + x", "g"),)),
        ("y ~ (1+x|g)", (R("1 + x", "g"),)),
        ("y ~ (  1\n +\tx  |  g )", (R("1 + x", "g"),)),
        ("y ~ (1 + I(x**2) + log(z) | g)", (R("1 + I(x**2) + log(z)", "g"),)),
        ("y ~ ((1 | g))", (R("1", "g"),)),
        ("y ~ (((1 + x | g)))", (R("1 + x", "g"),)),
    ],
)
def test_single_bar_terms(formula, expected):
    assert random_of(formula) == expected


# --- double-bar (uncorrelated) terms ------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("y ~ (1 + x || g)", (R("1", "g"), R("0 + x", "g"))),
        ("y ~ (x || g)", (R("1", "g"), R("0 + x", "g"))),
        ("y ~ (0 + x + z || g)", (R("0 + x", "g"), R("0 + z", "g"))),
        ("y ~ (x + z - 1 || g)", (R("0 + x", "g"), R("0 + z", "g"))),
        ("y ~ (-1 + x || g)", (R("0 + x", "g"),)),
        ("y ~ (1 || g)", (R("1", "g"),)),
        ("y ~ (1 + x:z || g)", (R("1", "g"), R("0 + x:z", "g"))),
        ("y ~ (1 + x : z || g)", (R("1", "g"), R("0 + x:z", "g"))),
        # R's terms(): x*z is x + z + x:z, and terms are ordered by degree
        ("y ~ (x*z || g)", (R("1", "g"), R("0 + x", "g"), R("0 + z", "g"), R("0 + x:z", "g"))),
        ("y ~ (x:z + w || g)", (R("1", "g"), R("0 + w", "g"), R("0 + x:z", "g"))),
        ("y ~ (1 + x + z - z || g)", (R("1", "g"), R("0 + x", "g"))),
        ("y ~ (1 + I(x**2) || g)", (R("1", "g"), R("0 + I(x**2)", "g"))),
        (
            "y ~ (1 + x || a/b)",
            (R("1", "a"), R("1", "b", "a"), R("0 + x", "a"), R("0 + x", "b", "a")),
        ),
    ],
)
def test_double_bar_terms(formula, expected):
    assert random_of(formula) == expected


# --- grouping factors: nesting and interactions -------------------------------------


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("y ~ (1 | a/b)", (R("1", "a"), R("1", "b", "a"))),
        ("y ~ (1 | a/b/c)", (R("1", "a"), R("1", "b", "a"), R("1", "c", "b", "a"))),
        ("y ~ (1 | a:b)", (R("1", "a", "b"),)),
        ("y ~ (1 | b:a)", (R("1", "b", "a"),)),
        ("y ~ (1 + x | a/b)", (R("1 + x", "a"), R("1 + x", "b", "a"))),
        ("y ~ (1 | a:b/c)", (R("1", "a", "b"), R("1", "c", "a", "b"))),
        ("y ~ (1 | a / b)", (R("1", "a"), R("1", "b", "a"))),
        ("y ~ (1 | `my group`)", (R("1", "my group"),)),
        ("y ~ (1 | `a b`/c)", (R("1", "a b"), R("1", "c", "a b"))),
        ("y ~ (1 | g.1_x)", (R("1", "g.1_x"),)),
        ("y ~ (1 | .g)", (R("1", ".g"),)),
    ],
)
def test_grouping_expansion(formula, expected):
    assert random_of(formula) == expected


def test_nested_group_labels():
    spec = parse_formula("y ~ (1 | a/b/c)")
    assert [t.group for t in spec.random] == ["a", "b:a", "c:b:a"]


# --- several terms, fixed part and response -----------------------------------------


@pytest.mark.parametrize(
    ("formula", "response", "fixed", "random"),
    [
        ("y ~ (1|g) + x", "y", "x", (R("1", "g"),)),
        ("y ~ x + (1 + x | g) + z", "y", "x + z", (R("1 + x", "g"),)),
        ("y ~ (1|s) + (1|d)", "y", "1", (R("1", "s"), R("1", "d"))),
        ("y ~ (1 | g) + (0 + x | g)", "y", "1", (R("1", "g"), R("0 + x", "g"))),
        ("y ~ (1 | g) + (x | g)", "y", "1", (R("1", "g"), R("x", "g"))),
        ("y ~ 0 + (1|g)", "y", "0", (R("1", "g"),)),
        ("y ~ -1 + (1|g)", "y", "-1", (R("1", "g"),)),
        ("y ~ 0 + x + (1|g)", "y", "0 + x", (R("1", "g"),)),
        ("y ~ x - 1 + (1|g)", "y", "x - 1", (R("1", "g"),)),
        ("y ~ x + (1|g) - 1", "y", "x - 1", (R("1", "g"),)),
        ("y~x+(1|g)", "y", "x", (R("1", "g"),)),
        ("  y  ~\n  x +\n  (1 | g)  ", "y", "x", (R("1", "g"),)),
        ("np.log(y) ~ np.log(x) + (1|g)", "np.log(y)", "np.log(x)", (R("1", "g"),)),
        (
            "y ~ C(x) + I(x**2) + x*z + x:z + (1|g)",
            "y",
            "C(x) + I(x**2) + x*z + x:z",
            (R("1", "g"),),
        ),
        (
            "y ~ C(z, Treatment('a|b')) + (1|g)",
            "y",
            "C(z, Treatment('a|b'))",
            (R("1", "g"),),
        ),
        ("y ~ (x + z) + (1|g)", "y", "(x + z)", (R("1", "g"),)),
        ("y ~ I(x - 1) + (1|g)", "y", "I(x - 1)", (R("1", "g"),)),
    ],
)
def test_fixed_part_and_response(formula, response, fixed, random):
    assert parse_formula(formula) == FormulaSpec(formula, response, fixed, random)


def test_spec_keeps_formula_as_given():
    text = "y ~ x +  (1|g)"
    assert parse_formula(text).formula == text


# --- errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        (None, "formula must be a string, got NoneType"),
        (3, "formula must be a string, got int"),
        ("", "formula is empty"),
        ("  \n ", "formula is empty"),
        ("y x + (1|g)", "formula has no '~': 'y x + (1|g)'"),
        ("y ~ x ~ (1|g)", "formula has more than one '~': 'y ~ x ~ (1|g)'"),
        (" ~ x + (1|g)", "formula has an empty response (left of '~'): '~ x + (1|g)'"),
        ("y ~  ", "formula has an empty right-hand side (right of '~'): 'y ~'"),
        ("y ~ x + (1|g", "unclosed '(' at '(1|g' in formula 'y ~ x + (1|g'"),
        ("y ~ x) + (1|g)", "unexpected ')' after 'y ~ x' in formula 'y ~ x) + (1|g)'"),
        ("y ~ [x) + (1|g)", "unexpected ')' after 'y ~ [x' in formula 'y ~ [x) + (1|g)'"),
        ("y ~ `a + (1|g)", "unclosed '`' in formula 'y ~ `a + (1|g)'"),
        ("y ~ ( | g)", "random-effects term has an empty left side of '|': '( | g)'"),
        ("y ~ (x | )", "random-effects term has an empty grouping side of '|': '(x | )'"),
        ("y ~ (x || )", "random-effects term has an empty grouping side of '|': '(x || )'"),
        (
            "y ~ (1 | g + h)",
            "grouping side 'g + h' of random-effects term '(1 | g + h)' "
            "must be column names joined by ':' or '/'",
        ),
        (
            "y ~ (1 | log(g))",
            "grouping side 'log(g)' of random-effects term '(1 | log(g))' "
            "must be column names joined by ':' or '/'",
        ),
        (
            "y ~ (1 | 2g)",
            "grouping side '2g' of random-effects term '(1 | 2g)' "
            "must be column names joined by ':' or '/'",
        ),
        (
            "y ~ (1 | a/)",
            "grouping side 'a/' of random-effects term '(1 | a/)' "
            "must be column names joined by ':' or '/'",
        ),
        (
            "y ~ (1 | a::b)",
            "grouping side 'a::b' of random-effects term '(1 | a::b)' "
            "must be column names joined by ':' or '/'",
        ),
        (
            "y ~ x",
            "formula has no random-effects term such as (1 | group): 'y ~ x'; "
            "hierlm fits only mixed models, use an ordinary linear model instead",
        ),
        ("y ~ (1|g) + (1|g)", "duplicated random-effects term '(1 | g)'"),
        ("y ~ (1 + x | g) + (1+x|g)", "duplicated random-effects term '(1 + x | g)'"),
        ("y ~ (1 | g) + (1 + x || g)", "duplicated random-effects term '(1 | g)'"),
        ("y ~ (1 | a) + (1 | a/b)", "duplicated random-effects term '(1 | a)'"),
        ("y ~ (1 | g | h)", "random-effects term has more than one '|': '(1 | g | h)'"),
        ("y ~ x:(1|g)", "'|' outside a random-effects term (expr | group): 'x:(1|g)'"),
        ("y ~ x - (1|g)", "a random-effects term cannot be removed with '-': '(1|g)'"),
        ("y ~ (0 | g)", "random-effects term has no columns: '(0 | g)'"),
        ("y ~ (0 || g)", "random-effects term has no columns: '(0 || g)'"),
        ("y ~ x + + (1|g)", "empty term (a stray '+' or '-') in 'y ~ x + + (1|g)'"),
        (
            "y ~ (x/z || g)",
            "cannot split 'x/z' into uncorrelated terms in '(x/z || g)'; "
            "write its terms out with '+' and ':'",
        ),
    ],
)
def test_errors(formula, message):
    with pytest.raises(FormulaError) as info:
        parse_formula(formula)
    assert str(info.value) == message
    assert "\n" not in str(info.value)


def test_error_messages_stay_on_one_line():
    with pytest.raises(FormulaError, match=r"^duplicated random-effects term '\(1 \| g\)'$"):
        parse_formula("y ~ (1 | g)\n + (1 | g)")
    with pytest.raises(FormulaError) as info:
        parse_formula("y ~\n x")
    assert "\n" not in str(info.value)


def test_formula_error_is_value_error():
    with pytest.raises(ValueError):
        parse_formula("y ~ x")
