"""Contract: after the fit, code asks the record's kind, never compares its method string.

Outside the estimator layer (``hierlm/estimate/``) no module may compare a ``.method``
(or ``getattr(x, "method")``, or its ``.lower()``/``.upper()``) with a string literal
(``==``, ``!=``, ``in``, ``not in``, against a string or a tuple, list or set of
strings, or a ``match``/``case`` on string values), nor turn a record's ``method`` into a
method name with ``.lower()``: they ask ``res.is_reml``, ``res.is_ml``,
``res.is_likelihood_fit``, ``res.is_posterior`` or ``res.kind``
(:mod:`hierlm.estimate.kind`), so a new estimator (:mod:`hierlm.estimate.registry`)
needs no edit there.  The source is parsed (``ast``): comments and docstrings do not
count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hierlm

PACKAGE = Path(hierlm.__file__).resolve().parent
OWNER = "estimate"
_CASE = {"lower", "upper", "casefold"}


def _is_method(node: ast.AST) -> bool:
    """``x.method``, ``getattr(x, "method", ...)`` or either's ``.lower()``/``.upper()``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr in _CASE and not node.args:
        node = node.func.value
    if isinstance(node, ast.Attribute):
        return node.attr == "method"
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id == "getattr" and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant) and node.args[1].value == "method")


def _is_string(node: ast.AST) -> bool:
    """A string literal, or a tuple, list or set of them."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return bool(node.elts) and all(_is_string(e) for e in node.elts)
    return False


def _string_pattern(p: ast.pattern) -> bool:
    if isinstance(p, ast.MatchValue):
        return _is_string(p.value)
    if isinstance(p, ast.MatchOr):
        return any(_string_pattern(q) for q in p.patterns)
    return False


def violations(package: Path = PACKAGE) -> list[str]:
    """Every place outside the estimator layer that tells methods apart by their names."""
    out = []
    for f in sorted(package.rglob("*.py")):
        rel = f.relative_to(package.parent)
        if len(rel.parts) > 2 and rel.parts[1] == OWNER:
            continue
        tree = ast.parse(f.read_text(encoding="utf-8"), filename=str(f))
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare):
                operands = [node.left, *node.comparators]
                if any(map(_is_method, operands)) and any(map(_is_string, operands)):
                    out.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.Match) and _is_method(node.subject):
                if any(_string_pattern(c.pattern) for c in node.cases):
                    out.append(f"{rel}:{node.lineno}: match {ast.unparse(node.subject)}")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr in _CASE and _is_method(node.func.value)):
                out.append(f"{rel}:{node.lineno}: {ast.unparse(node)} (a label made a name)")
    return out


def test_no_module_after_the_fit_compares_the_method_string() -> None:
    found = violations()
    assert not found, ("method strings compared outside hierlm/estimate/ (ask res.kind, "
                       "res.is_reml, res.is_posterior, ...):\n" + "\n".join(found))


@pytest.mark.parametrize("source, caught", [
    ("if res.method == 'NUTS': pass", True),
    ("if 'REML' != res.method: pass", True),
    ("ok = res.method in ('REML', 'ML')", True),
    ("ok = fit.method not in ['REML', 'ML']", True),
    ("ok = getattr(f, 'method', None) not in ('REML', 'ML')", True),
    ("ok = res.method.lower() == 'reml'", True),
    ("m = res.method.lower()", True),
    ("match res.method:\n    case 'REML' | 'ML':\n        pass", True),
    ("if res.is_posterior: pass", False),
    ("if method == 'bootstrap': pass", False),
    ("label = f'{res.method} fit'", False),
    ("same = a.method == b.method", False),
    ("opt = options.get('method') == 'x'", False),
])
def test_the_check_sees_each_pattern(tmp_path: Path, source: str, caught: bool) -> None:
    pkg = tmp_path / "hierlm"
    (pkg / "inference").mkdir(parents=True)
    (pkg / "inference" / "m.py").write_text(source + "\n")
    (pkg / OWNER).mkdir()
    (pkg / OWNER / "m.py").write_text(source + "\n")  # the estimator layer may
    assert bool(violations(pkg)) is caught
