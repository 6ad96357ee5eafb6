"""Covariance structures in formulas: cs(0 + f | g, hom=True) and its siblings."""

from __future__ import annotations

import pytest

import hierlm
from hierlm.design.formula import parse_formula
from hierlm.design.terms import RandomTermSpec
from hierlm.errors import FormulaError


@pytest.mark.parametrize(("written", "structure"), [
    ("us(1 + x | g)", "us"), ("(1 + x | g)", "us"),
    ("diag(0 + f | g)", "diag"), ("diag(0 + f | g, hom=True)", "homdiag"),
    ("diag(0 + f | g, hom=False)", "diag"),
    ("cs(0 + f | g)", "cs"), ("cs(0 + f | g, hom = TRUE)", "homcs"),
    ("ar1(0 + f | g)", "ar1"), ("ar1(0 + f | g, het=True)", "hetar1"),
    ("toep(0 + f | g)", "toep"), ("toep(0 + f | g, hom=True)", "homtoep"),
])
def test_each_spelling_gives_its_structure(written, structure):
    spec = parse_formula(f"y ~ x + {written}")
    expr = "1 + x" if "1 + x" in written else "0 + f"
    assert spec.random == (RandomTermSpec(expr, ("g",), structure),)
    assert spec.fixed == "x"


def test_structures_with_nesting_and_plain_terms():
    spec = parse_formula("y ~ np.log(x) + ar1(0 + t | a/b, het=True) + (1 | h)")
    assert spec.fixed == "np.log(x)"
    assert spec.random == (RandomTermSpec("0 + t", ("a",), "hetar1"),
                           RandomTermSpec("0 + t", ("b", "a"), "hetar1"),
                           RandomTermSpec("1", ("h",), "us"))
    assert parse_formula("y ~ (1 + x || g)").random == (RandomTermSpec("1", ("g",)),
                                                        RandomTermSpec("0 + x", ("g",)))


@pytest.mark.parametrize(("formula", "message"), [
    ("y ~ foo(0 + t | g)", "unknown covariance structure 'foo'"),
    ("y ~ cs(0 + t | g, het=True)", "unknown argument 'het=True' of cs()"),
    ("y ~ us(1 | g, hom=True)", "it takes no keyword"),
    ("y ~ cs(0 + t | g, hom=1)", "takes True or False, got '1'"),
    ("y ~ cs(0 + t | g, True)", "unknown argument 'True' of cs()"),
    ("y ~ cs(0 + t | g, hom=True, hom=False)", "given twice"),
    ("y ~ cs(0 + t || g)", "'||' inside a covariance structure"),
    ("y ~ x - cs(0 + t | g)", "cannot be removed"),
    ("y ~ os.system(0 + t | g)", "unknown covariance structure 'os.system'"),
])
def test_bad_structures_are_one_clear_formula_error(formula, message):
    with pytest.raises(FormulaError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("|", r"\|")):
        parse_formula(formula)


def test_structure_reaches_the_design_and_the_coder():
    data = hierlm.load_sleepstudy().query("Days < 4").astype({"Days": str})
    d = hierlm.build_design("Reaction ~ Days + cs(0 + Days | Subject, hom=True)", data)
    assert d.terms[0].structure == "homcs"
    assert d.coder.terms[0].structure == "homcs"
    again = type(d.coder).from_dict(d.coder.to_dict())
    assert again.terms[0].structure == "homcs"
