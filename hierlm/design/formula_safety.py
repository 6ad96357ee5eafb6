"""Formulas are parsed, never run: the fixed whitelist of functions a formula may call.

``formulae`` evaluates no Python source, but it resolves a call ``a.b.c(...)`` by
looking ``a`` up in an evaluation environment and following the attributes ``b`` and
``c`` with ``getattr``.  With the caller's module namespace as that environment,
``pd.io.common.os.system('...')`` reached the operating system.  Two layers close this:

1. :func:`check_expression` parses each expression handed to formulae (the response,
   the fixed part, every random term's left side; also the pieces stored in a saved
   result) with formulae's own scanner and parser, so it sees exactly the tree that
   formulae evaluates, and walks the tree before anything is evaluated.  Every call
   must name a function of :data:`ALLOWED_CALLS` exactly; anything else (an unknown
   function, a dotted path into a module, a name with a dunder part, a call of a call's
   result) is a :class:`~hierlm.errors.FormulaError` naming it.  Variables, numbers,
   strings and formula operators are data, not code: a variable is looked up as a
   column of the data frame.
2. :func:`safe_environment` is the only environment handed to formulae: it holds the
   whitelisted functions and nothing else (``np`` and ``numpy`` are namespaces holding
   only the whitelisted NumPy ufuncs), so even a call that slipped past the check could
   not reach a module.  formulae adds its own transforms and encodings (``C``, ``I``,
   ``center``, ...), which are part of the whitelist or refused by the check.

Covariance structures (``cs(0 + f | g, hom=True)``) are not calls either: the parser
(:mod:`hierlm.design.formula`) reads the name and its keyword from
:data:`STRUCTURE_FUNCTIONS` and hands formulae only the term's left side.

The whitelist is documented in ``docs/robustness.md`` ("Formulas never run code") and
a test keeps the two in step.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import numpy as np

from hierlm.design.r_dialect import R_NAMESPACE
from hierlm.errors import FormulaError

__all__ = ["ALLOWED_CALLS", "NUMPY_FUNCTIONS", "STRUCTURE_FUNCTIONS", "check_expression",
           "safe_environment"]

#: The covariance structures a random term may be wrapped in, with the keywords each
#: takes (a keyword's value is ``True`` or ``False``).  Read by the parser, never called.
STRUCTURE_FUNCTIONS: dict[str, tuple[str, ...]] = {
    "us": (), "diag": ("hom",), "cs": ("hom",), "ar1": ("het",), "toep": ("hom",),
}

# formulae's transforms and encodings that hierlm supports, as written in a formula
# (``scale`` is R's: :func:`hierlm.design.r_dialect.to_formulae` rewrites it).
FORMULAE_FUNCTIONS = ("C", "I", "Treatment", "Sum", "binary", "center", "scale",
                      "standardize", "poly", "bs", "cr", "cc")

# NumPy ufuncs a formula may call as ``np.<name>(...)`` or ``numpy.<name>(...)``: the
# elementwise mathematical functions (no I/O, no state, no random numbers).
NUMPY_FUNCTIONS = ("abs", "absolute", "fabs", "sign", "reciprocal", "square", "sqrt", "cbrt",
                   "exp", "exp2", "expm1", "log", "log10", "log2", "log1p", "power",
                   "maximum", "minimum", "sin", "cos", "tan", "arcsin", "arccos", "arctan",
                   "sinh", "cosh", "tanh", "arcsinh", "arccosh", "arctanh", "floor", "ceil",
                   "rint", "trunc")

# R's functions written without a prefix (``log(x)``): the names of hierlm's R dialect.
# Names ending in "_" are the targets of its rewrites (``scale(`` -> ``r_scale_(``),
# allowed because formulae sees the rewritten text, but not written by users.
R_FUNCTIONS = tuple(name for name in R_NAMESPACE if not name.endswith("_"))
_REWRITTEN = tuple(name for name in R_NAMESPACE if name.endswith("_"))

ALLOWED_CALLS: frozenset[str] = frozenset(
    FORMULAE_FUNCTIONS + R_FUNCTIONS
    + tuple(f"{prefix}.{name}" for prefix in ("np", "numpy") for name in NUMPY_FUNCTIONS))
_CALLABLE = ALLOWED_CALLS | frozenset(_REWRITTEN)

_HELP = ("a formula may call only C, I, Treatment, Sum, binary, center, scale, "
         "standardize, poly, bs, cr, cc, R's log, exp, sqrt, log10, log2, log1p, abs, and "
         "NumPy's elementwise functions as np.<name> (see 'Formulas never run code' in "
         "docs/robustness.md)")


@functools.cache
def _numpy_namespace() -> types.SimpleNamespace:
    """``np`` as a formula sees it: the whitelisted ufuncs only."""
    return types.SimpleNamespace(**{name: getattr(np, name) for name in NUMPY_FUNCTIONS})


@functools.cache
def safe_environment() -> Any:
    """The evaluation environment handed to formulae: whitelisted functions only.

    Examples
    --------
    >>> ns = safe_environment().namespace
    >>> ns["log"] is np.log, ns["np"].sqrt is np.sqrt, "pd" in ns, "os" in ns
    (True, True, False, False)
    """
    from formulae.environment import Environment  # formulae costs ~0.4 s to import

    names: dict[str, object] = {name: R_NAMESPACE[name] for name in R_NAMESPACE}
    names["np"] = names["numpy"] = _numpy_namespace()
    return Environment([names])


def _dunder(name: str) -> bool:
    return any(part.startswith("__") and part.endswith("__") for part in name.split("."))


def _show(node: Any) -> str:
    """A short rendering of a parsed node for messages."""
    from formulae import expr as fx

    if isinstance(node, fx.Variable):
        return str(node.name.lexeme)
    if isinstance(node, fx.QuotedName):
        return str(node.expression.lexeme)
    if isinstance(node, fx.Call):
        return f"{_show(node.callee)}({', '.join(_show(a) for a in node.args)})"
    if isinstance(node, fx.Literal):
        return str(node.lexeme) if node.lexeme is not None else repr(node.value)
    if isinstance(node, fx.Assign):
        return f"{_show(node.name)}={_show(node.value)}"
    return "..."


def _culprits(node: Any) -> list[str]:
    """Each disallowed piece of a parsed formulae expression, in written order."""
    from formulae import expr as fx

    if isinstance(node, fx.Call):
        out = []
        callee = node.callee
        if not isinstance(callee, fx.Variable) or callee.level is not None:
            out.append(f"calling the result of {_show(callee)!r} is not allowed")
        elif callee.name.lexeme not in _CALLABLE:
            out.append(f"function {callee.name.lexeme!r} is not allowed")
        else:
            out += _culprits(callee)
        for arg in node.args:
            out += _culprits(arg)
        return out
    if isinstance(node, fx.Variable):
        name = str(node.name.lexeme)
        return [f"name {name!r} is not allowed (a dunder name)"] if _dunder(name) else []
    if isinstance(node, fx.Assign):  # a keyword argument: its name is no lookup
        return _culprits(node.value)
    if isinstance(node, fx.Grouping):
        return _culprits(node.expression)
    if isinstance(node, fx.Binary):
        return _culprits(node.left) + _culprits(node.right)
    if isinstance(node, fx.Unary):
        return _culprits(node.right)
    if isinstance(node, fx.Literal | fx.QuotedName):
        return []
    return [f"{type(node).__name__} expression is not allowed"]  # pragma: no cover


def check_expression(expr: str, what: str) -> None:
    """Raise FormulaError unless ``expr`` calls only whitelisted functions.

    ``expr`` is formulae's text (after :func:`hierlm.design.r_dialect.to_formulae`)
    of a response, fixed part or random term left side; ``what`` names it in messages.
    Nothing is evaluated.

    Examples
    --------
    >>> check_expression("x + np.log(z) + C(f, Treatment('b')) + I(x**2)", "fixed part")
    >>> check_expression("x + pd.io.common.os.system('ls')", "fixed part")
    Traceback (most recent call last):
    ...
    hierlm.errors.FormulaError: function 'pd.io.common.os.system' is not allowed in fixed \
part 'x + pd.io.common.os.system('ls')'; a formula may call only C, I, Treatment, Sum, \
binary, center, scale, standardize, poly, bs, cr, cc, R's log, exp, sqrt, log10, log2, \
log1p, abs, and NumPy's elementwise functions as np.<name> (see 'Formulas never run \
code' in docs/robustness.md)
    """
    from formulae.parser import Parser
    from formulae.scanner import Scanner

    shown = " ".join(expr.split())
    try:
        tree = Parser(Scanner(expr).scan(add_intercept=False)).parse()
    except Exception as exc:  # formulae's ScanError, ParseError and others
        text = str(exc).strip().splitlines()
        raise FormulaError(f"cannot parse {what} '{shown}': "
                           f"{text[0] if text else type(exc).__name__}") from None
    bad = _culprits(tree)
    if bad:
        raise FormulaError(f"{bad[0]} in {what} '{shown}'; {_HELP}")
