"""R's model-formula algebra: a right-hand side -> intercept and ordered terms.

As R's ``terms.formula``: the operators, from loosest to tightest, are ``+ -``,
``* /``, ``%in%``, ``:`` and ``^``; ``a*b = a + b + a:b``, ``a/b = a + a:b`` (all
the variables of the left side with each term of the right), ``a %in% b = a:b``,
``(a + b)^2`` is every product of up to two terms, ``0``/``-1`` remove the
intercept.  A *variable* is a column name (backquoted when not an R name) or a call
(``log(x)``, ``I(x^2)``, ``C(f, Sum)``), labelled as R deparses it.  A term is a set
of variables; its label lists them in the order they first appear in the formula;
terms are sorted by degree, keeping the written order within a degree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

from hierlm.design.names import deparse
from hierlm.errors import FormulaError

_NAME = re.compile(r"(?:[^\W\d]|\.)[\w.]*")  # letters in any script, as R in UTF-8
_NUMBER = re.compile(r"\d+(\.\d*)?([eE][+-]?\d+)?")
_BINARY = {"+": 1, "-": 1, "*": 2, "/": 2, "%in%": 3, ":": 4, "^": 5}


@dataclass(frozen=True)
class Terms:
    """An expanded right-hand side.

    ``variables`` are the variable labels in order of first appearance, ``source``
    what was written for each (for evaluation), and ``terms`` each term's labels in
    that order, sorted by degree.

    Examples
    --------
    >>> t = parse_terms("x:b + a*x")
    >>> t.intercept, t.terms
    (True, (('a',), ('x',), ('x', 'b'), ('x', 'a')))
    """

    intercept: bool
    variables: tuple[str, ...]
    source: dict[str, str]
    terms: tuple[tuple[str, ...], ...]


@dataclass
class _Part:
    terms: list[frozenset[str]]
    intercept: bool | None = None


def _balanced(text: str, i: int) -> int:
    """Index after the parenthesis group that opens at ``text[i]``."""
    depth, quote = 0, ""
    while i < len(text):
        ch = text[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"`":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise FormulaError(f"unbalanced parentheses in {text!r}")


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) tokens: 'op', '(', ')', 'num' and 'var' (a name or a call)."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif text.startswith("%in%", i):
            out.append(("op", "%in%"))
            i += 4
        elif text.startswith("**", i):  # Python's power, R's '^'
            out.append(("op", "^"))
            i += 2
        elif ch in "+-*/:^":
            out.append(("op", ch))
            i += 1
        elif ch in "()":
            out.append((ch, ch))
            i += 1
        elif ch == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise FormulaError(f"unclosed backquote in {text!r}")
            out.append(("var", text[i:j + 1]))
            i = j + 1
        elif (m := _NUMBER.match(text, i)) and not _NAME.match(text, i):
            out.append(("num", m.group()))
            i = m.end()
        elif m := _NAME.match(text, i):
            j = m.end()
            while j < len(text) and text[j].isspace():
                j += 1
            if j < len(text) and text[j] == "(":
                j = _balanced(text, j)
                out.append(("var", text[i:j]))
                i = j
            else:
                out.append(("var", m.group()))
                i = m.end()
        else:
            raise FormulaError(f"unexpected {ch!r} at {text[i:]!r} in {text!r}")
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.order: dict[str, None] = {}
        self.source: dict[str, str] = {}

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def parse(self, min_prec: int = 0) -> _Part:
        tok = self.peek()
        if tok is None:
            raise FormulaError(f"incomplete formula {self.text!r}")
        self.i += 1
        if tok == ("op", "-"):
            left = _minus(_Part([]), self.parse(2))
        elif tok == ("op", "+"):
            left = self.parse(2)
        elif tok[0] == "(":
            left = self.parse(0)
            if self.peek() != (")", ")"):
                raise FormulaError(f"missing ')' in {self.text!r}")
            self.i += 1
        elif tok[0] == "num":
            if tok[1] not in ("0", "1"):
                raise FormulaError(f"a number ({tok[1]}) as a term in {self.text!r}: only "
                                   f"0 and 1 (the intercept) are terms")
            left = _Part([], tok[1] == "1")
        elif tok[0] == "var":
            label = deparse(tok[1])
            self.order.setdefault(label, None)
            self.source.setdefault(label, tok[1])
            left = _Part([frozenset([label])])
        else:
            raise FormulaError(f"unexpected {tok[1]!r} in {self.text!r}")
        while (tok := self.peek()) is not None and tok[0] == "op" and _BINARY[tok[1]] > min_prec:
            op = tok[1]
            self.i += 1
            if op == "^":
                nxt = self.peek()
                if nxt is None or nxt[0] != "num" or not nxt[1].isdigit():
                    raise FormulaError(f"'^' in {self.text!r} needs a whole number, as in "
                                       f"(a + b)^2; write powers as I(x^2)")
                self.i += 1
                left = _power(left, int(nxt[1]))
                continue
            right = self.parse(_BINARY[op])
            left = _combine(op, left, right)
        return left


def _union(*parts: list[frozenset[str]]) -> list[frozenset[str]]:
    out: dict[frozenset[str], None] = {}
    for p in parts:
        out.update(dict.fromkeys(p))
    return list(out)


def _product(a: list[frozenset[str]], b: list[frozenset[str]]) -> list[frozenset[str]]:
    return _union([x | y for x in a for y in b])


def _minus(a: _Part, b: _Part) -> _Part:
    icpt = a.intercept if b.intercept is None else not b.intercept
    return _Part([t for t in a.terms if t not in b.terms], icpt)


def _power(a: _Part, k: int) -> _Part:
    if len(a.terms) == 1 and len(a.terms[0]) == 1 and k > 1:
        (v,) = a.terms[0]
        raise FormulaError(f"'{v}^{k}' outside I() is R's interaction power, which for one "
                           f"variable is just {v}; write I({v}^{k}) for the power")
    out = a.terms
    for _ in range(k - 1):
        out = _union(out, _product(out, a.terms))
    return _Part(out, a.intercept)


def _combine(op: str, a: _Part, b: _Part) -> _Part:
    if op == "+":
        return _Part(_union(a.terms, b.terms), a.intercept if b.intercept is None else b.intercept)
    if op == "-":
        return _minus(a, b)
    if not a.terms or not b.terms:
        raise FormulaError(f"'{op}' needs variables on both sides (not 0 or 1)")
    if op in (":", "%in%"):
        return _Part(_product(a.terms, b.terms))
    if op == "*":
        return _Part(_union(a.terms, b.terms, _product(a.terms, b.terms)))
    # '/': a + (all variables of a):b
    whole = frozenset().union(*a.terms)
    return _Part(_union(a.terms, _product([whole], b.terms)))


def parse_terms(rhs: str) -> Terms:
    """Expand a formula's right-hand side as R's ``terms()`` (see the module docstring).

    Examples
    --------
    >>> t = parse_terms("0 + (a + b + x)^2 - a:b")
    >>> t.intercept, [":".join(v) for v in t.terms]
    (False, ['a', 'b', 'x', 'a:x', 'b:x'])
    >>> parse_terms("I(x ** 2) + log(`my x`)").terms
    (('I(x^2)',), ('log(`my x`)',))
    """
    if not rhs.strip():
        raise FormulaError("empty right-hand side")
    p = _Parser(rhs)
    part = p.parse(0)
    if p.peek() is not None:
        raise FormulaError(f"unexpected {p.peek()[1]!r} in {rhs!r}")  # type: ignore[index]
    rank = {v: k for k, v in enumerate(p.order)}
    terms = [tuple(sorted(t, key=rank.__getitem__)) for t in part.terms if t]
    terms.sort(key=len)  # stable: the written order within a degree
    assert all(len(a) <= len(b) for a, b in pairwise(terms))
    return Terms(intercept=part.intercept is not False, variables=tuple(p.order),
                 source=p.source, terms=tuple(terms))
