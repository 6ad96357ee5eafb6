"""Coefficient names as R writes them.

A variable is labelled as R's ``deparse`` prints it: a syntactic name as written
(``PCT.x``), any other name in backquotes (`` `my x` ``), a call with R's spacing
(``I(x^2)``, ``log(x + 1)``, ``C(f, Sum)``; Python's ``**`` is printed ``^``).  A
column is the variable's label followed by a factor level or contrast name
(``cityST.LOUIS``, ``schgend.L``) or, for a matrix-valued variable, the column number
(``poly(x, 2)1``); an interaction column joins its pieces with ``:``.  Nothing is
stripped or rewritten, so two columns get one name only when R's names collide too
(``a`` with level ``b1`` and ``ab`` with level ``1``): :func:`check_unique` makes that an
error naming both.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence

from hierlm.errors import DataError

_R_NAME = re.compile(r"^((\.(?!\d)|(?!_)[^\W\d])[\w.]*)$")
_RESERVED = {"if", "else", "repeat", "while", "function", "for", "next", "break", "TRUE",
             "FALSE", "NULL", "Inf", "NaN", "NA", "in"}
_OPS = {ast.Add: (" + ", 1), ast.Sub: (" - ", 1), ast.Mult: (" * ", 2), ast.Div: (" / ", 2),
        ast.Mod: (" %% ", 2), ast.FloorDiv: (" %/% ", 2), ast.Pow: ("^", 4)}
_CMP = {ast.Gt: ">", ast.Lt: "<", ast.GtE: ">=", ast.LtE: "<=", ast.Eq: "==", ast.NotEq: "!="}


def is_r_name(name: str) -> bool:
    """Whether ``name`` needs no backquotes in R (``PCT.x`` yes, ``my x`` no)."""
    return bool(_R_NAME.match(name)) and name not in _RESERVED


def quote_name(name: str) -> str:
    """``name`` as R prints a symbol: backquoted unless it is a syntactic name."""
    return name if is_r_name(name) else f"`{name}`"


def _const(v: object) -> str:
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


class _Deparser:
    def __init__(self, quoted: dict[str, str]) -> None:
        self.quoted = quoted

    def __call__(self, node: ast.AST, prec: int = 0) -> str:
        text, own = self.node(node)
        return f"({text})" if own < prec else text

    def node(self, node: ast.AST) -> tuple[str, int]:
        if isinstance(node, ast.Name):
            return self.quoted.get(node.id, quote_name(node.id)), 9
        if isinstance(node, ast.Attribute):
            return f"{self(node.value, 9)}.{node.attr}", 9
        if isinstance(node, ast.Constant):
            return _const(node.value), 9
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            sym, p = _OPS[type(node.op)]
            left, right = (p + 1, p) if isinstance(node.op, ast.Pow) else (p, p + 1)
            return f"{self(node.left, left)}{sym}{self(node.right, right)}", p
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            sign = "-" if isinstance(node.op, ast.USub) else "+"
            return f"{sign}{self(node.operand, 3)}", 3
        if (isinstance(node, ast.Compare) and len(node.ops) == 1
                and type(node.ops[0]) in _CMP):
            return (f"{self(node.left, 1)} {_CMP[type(node.ops[0])]} "
                    f"{self(node.comparators[0], 1)}", 0)
        if isinstance(node, ast.Call):
            args = [self(a) for a in node.args]
            args += [f"{k.arg} = {self(k.value)}" for k in node.keywords]
            return f"{self(node.func, 9)}({', '.join(args)})", 9
        if isinstance(node, (ast.List, ast.Tuple)):
            return "c(" + ", ".join(self(e) for e in node.elts) + ")", 9
        raise ValueError(type(node).__name__)


def to_python(text: str) -> tuple[str, dict[str, str]]:
    """``text`` with R's ``^`` as ``**`` and backquoted names as placeholders."""
    quoted: dict[str, str] = {}

    def sub(m: re.Match[str]) -> str:
        key = f"_hierlm_q{len(quoted)}_"
        quoted[key] = m.group(0)
        return key

    return re.sub(r"`[^`]*`", sub, text).replace("^", "**"), quoted


def python_power(text: str) -> str:
    """``text`` with R's ``^`` written ``**``, backquoted names kept.

    Examples
    --------
    >>> python_power("I(`a^b`^2)")
    'I(`a^b`**2)'
    """
    py, quoted = to_python(text)
    for key, original in quoted.items():
        py = py.replace(key, original)
    return py


def deparse(text: str) -> str:
    """A variable's label as R deparses it.

    Examples
    --------
    >>> deparse("I(x**2)"), deparse("log( x+1 )"), deparse("`PCT.x`"), deparse("`my x`")
    ('I(x^2)', 'log(x + 1)', 'PCT.x', '`my x`')
    """
    text = text.strip()
    if text.startswith("`") and text.endswith("`") and text.count("`") == 2:
        return quote_name(text[1:-1])
    if is_r_name(text) or text.isidentifier():
        return quote_name(text)
    py, quoted = to_python(text)
    quoted = {k: (quote_name(v[1:-1])) for k, v in quoted.items()}
    try:
        return _Deparser(quoted)(ast.parse(py, mode="eval").body)
    except (SyntaxError, ValueError):  # not Python syntax: keep it, spaces normalised
        return " ".join(text.split())


def check_unique(names: Sequence[str], sources: Sequence[str], what: str) -> None:
    """DataError if two columns share a name (R would give them one name too).

    Examples
    --------
    >>> check_unique(["ab1", "ab1"], ["a = 'b1'", "ab = '1'"], "fixed part")
    Traceback (most recent call last):
    ...
    hierlm.errors.DataError: fixed part: two columns would both be named 'ab1' (a = 'b1' and \
ab = '1'); rename a column or a level so the coefficients can be told apart
    """
    seen: dict[str, int] = {}
    for j, n in enumerate(names):
        if n in seen:
            raise DataError(f"{what}: two columns would both be named {n!r} "
                            f"({sources[seen[n]]} and {sources[j]}); rename a column or a "
                            f"level so the coefficients can be told apart")
        seen[n] = j
