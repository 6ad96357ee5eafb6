"""Parse lme4-style model formulas into a :class:`~hierlm.design.terms.FormulaSpec`.

A formula ``response ~ right-hand side`` has a fixed part, made of ordinary terms, and
one or more random-effects terms ``(expr | group)``.  The parser splits the right-hand
side at its top-level ``+`` and ``-`` signs, takes every parenthesised term with a
``|`` at its top level as a random-effects term and joins the rest, verbatim, into the
fixed part (``C(x)``, ``I(x**2)``, ``np.log(x)``, ``x*z`` are handed on untouched to
``formulae``).  Random-effects terms are expanded exactly as lme4 does:

* ``(1 | g)``, ``(1 + x | g)``, ``(x | g)``, ``(0 + x | g)``, ``(x - 1 | g)``: one term
  each, with the left side kept as written (whitespace normalised); an implicit
  intercept, as in ``(x | g)``, is added later when the term is evaluated.
* ``(1 + x || g)``: uncorrelated terms, one per term of the left side (lme4's
  ``expandDoubleVerts``): ``(1 | g)`` and ``(0 + x | g)``.  The intercept gets its own
  term unless the left side has ``0`` or ``-1``; ``x*z`` expands to ``x``, ``z`` and
  ``x:z``, while ``x:z`` stays one term.
* ``cs(0 + f | g)``, ``cs(0 + f | g, hom=True)``, ``us(...)``, ``diag(...)``,
  ``ar1(..., het=True)``, ``toep(..., hom=True)``: the same term with a covariance
  structure (:data:`~hierlm.design.terms.STRUCTURES`).  The structure's name and keyword
  are read by the parser, never called; a keyword takes ``True`` or ``False``.  An
  unknown structure, keyword or value, or ``||`` inside a structure, is refused.
* ``(1 | a/b)``: nesting (lme4's ``expandSlash``) gives ``(1 | a)`` and ``(1 | b:a)``;
  ``a/b/c`` gives ``a``, ``b:a`` and ``c:b:a``.  ``(1 | a:b)`` is one term on the
  interaction of ``a`` and ``b``.  A grouping name is an identifier (dots and unicode
  letters allowed: ``PCT.g``, ``gruppé``) or backquoted (`` `my group` ``).

The fixed part is ``"1"`` when no fixed term is written.  A term written twice, fixed
or random, is refused (lme4 silently ignores a repeated fixed term).  Every problem raises
:class:`~hierlm.errors.FormulaError` with a one-line message naming the offending piece.
"""

from __future__ import annotations

import re
from itertools import combinations, pairwise

from hierlm.design.formula_safety import STRUCTURE_FUNCTIONS
from hierlm.design.terms import STRUCTURES, FormulaSpec, RandomTermSpec
from hierlm.errors import FormulaError

__all__ = ["parse_formula"]

_PAIRS = {")": "(", "]": "[", "}": "{"}
_QUOTES = "'\"`"
_NAME = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\s*\(")
_BOOLS = {"True": True, "TRUE": True, "T": True, "False": False, "FALSE": False, "F": False}


def parse_formula(formula: str) -> FormulaSpec:
    """Split an lme4-style formula into response, fixed part and random-effects terms.

    Parameters
    ----------
    formula : str
        A formula such as ``"Reaction ~ 1 + Days + (1 + Days | Subject)"``; it must
        contain at least one random-effects term ``(expr | group)``.

    Returns
    -------
    FormulaSpec
        The formula as given, the response expression, the fixed part as a formula
        right-hand side for ``formulae`` and the expanded random-effects terms in the
        order written.

    Raises
    ------
    FormulaError
        If the formula is malformed, has no random-effects term or repeats a term.

    Examples
    --------
    >>> spec = parse_formula("Reaction ~ 1 + Days + (1 + Days || Subject)")
    >>> spec.response, spec.fixed
    ('Reaction', '1 + Days')
    >>> [(t.expr, t.group) for t in spec.random]
    [('1', 'Subject'), ('0 + Days', 'Subject')]
    >>> spec = parse_formula("strength ~ (1 | batch/cask)")
    >>> spec.fixed, [t.factors for t in spec.random]
    ('1', [('batch',), ('cask', 'batch')])
    >>> parse_formula("y ~ x")
    Traceback (most recent call last):
    ...
    hierlm.errors.FormulaError: formula has no random-effects term such as (1 | group): \
'y ~ x'; hierlm fits only mixed models, use an ordinary linear model instead
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, got {type(formula).__name__}")
    shown = _show(formula)
    if not shown:
        raise FormulaError("formula is empty")
    depth = _depths(formula)
    tildes = [i for i, ch in enumerate(formula) if ch == "~" and depth[i] >= 0]
    if not tildes:
        raise FormulaError(f"formula has no '~': {shown!r}")
    if len(tildes) > 1:
        raise FormulaError(f"formula has more than one '~': {shown!r}")
    response = formula[: tildes[0]].strip()
    if not response:
        raise FormulaError(f"formula has an empty response (left of '~'): {shown!r}")
    rhs = formula[tildes[0] + 1 :]
    commas = [i for i, ch in _top_chars(rhs).items() if ch == ","]
    if commas:
        raise FormulaError(f"unexpected ',' at {_show(rhs[commas[0]:])!r} in {shown!r}; "
                           f"join terms with '+'")
    if not rhs.strip():
        raise FormulaError(f"formula has an empty right-hand side (right of '~'): {shown!r}")

    fixed: list[tuple[str, str]] = []
    random: list[RandomTermSpec] = []
    for sign, piece in _split_signed(rhs, shown):
        structure, bar_piece = _structure(piece)
        bar = _bar_term(bar_piece)
        if structure != "us" and sign == "-":
            raise FormulaError(
                f"a random-effects term cannot be removed with '-': {_show(piece)!r}")
        if bar is None:
            if "|" in _top_chars(piece, any_depth=True).values():
                raise FormulaError(
                    f"'|' outside a random-effects term (expr | group): {_show(piece)!r}"
                )
            fixed.append((sign, piece))
        elif sign == "-":
            raise FormulaError(
                f"a random-effects term cannot be removed with '-': {_show(piece)!r}"
            )
        elif structure != "us" and bar[2]:
            raise FormulaError(f"'||' inside a covariance structure: {_show(piece)!r}; "
                               "write the term with a single '|' (diag(...) makes the "
                               "effects uncorrelated)")
        else:
            random.extend(RandomTermSpec(t.expr, t.factors, structure)
                          for t in _expand(*bar, piece))
    if not random:
        raise FormulaError(
            f"formula has no random-effects term such as (1 | group): {shown!r}; "
            "hierlm fits only mixed models, use an ordinary linear model instead"
        )
    written: set[str] = set()
    for sign, piece in fixed:
        key = ":".join(_show(part) for part in _split_at(piece, ":"))
        if sign == "+" and key not in ("0", "1") and key in written:
            raise FormulaError(f"duplicated fixed-effects term {key!r} in {shown!r}")
        written.add(key)
    seen: set[RandomTermSpec] = set()
    for term in random:
        if term in seen:
            raise FormulaError(f"duplicated random-effects term '({term.expr} | {term.group})'")
        seen.add(term)
    return FormulaSpec(formula, response, _join(fixed) if fixed else "1", tuple(random))


def _show(text: str) -> str:
    """``text`` on one line, whitespace runs collapsed, for messages and expressions."""
    return " ".join(text.split())


def _depths(text: str) -> list[int]:
    """Bracket depth of each character of ``text`` (-1 inside quotes or backquotes).

    Both brackets of a top-level group have depth 0.  Raises FormulaError on
    unbalanced brackets or an unclosed quote.
    """
    depths: list[int] = []
    stack: list[int] = []
    quote = ""
    for i, ch in enumerate(text):
        if quote:
            depths.append(-1)
            quote = "" if ch == quote else quote
            continue
        if ch in _QUOTES:
            quote = ch
            depths.append(-1)
            continue
        if ch in _PAIRS:
            if not stack or text[stack[-1]] != _PAIRS[ch]:
                raise FormulaError(
                    f"unexpected {ch!r} after {_show(text[:i])!r} in formula {_show(text)!r}"
                )
            stack.pop()
        depths.append(len(stack))
        if ch in "([{":
            stack.append(i)
    if quote:
        raise FormulaError(f"unclosed {quote!r} in formula {_show(text)!r}")
    if stack:
        i = stack[-1]
        raise FormulaError(
            f"unclosed {text[i]!r} at {_show(text[i:])!r} in formula {_show(text)!r}"
        )
    return depths


def _top_chars(text: str, any_depth: bool = False) -> dict[int, str]:
    """Unquoted characters of ``text`` at bracket depth 0 (or any depth), by index."""
    return {
        i: ch
        for i, (ch, d) in enumerate(zip(text, _depths(text), strict=True))
        if (d >= 0 if any_depth else d == 0)
    }


def _split_at(text: str, sep: str) -> list[str]:
    """Split ``text`` at unquoted top-level occurrences of the character ``sep``."""
    cuts = [i for i, ch in _top_chars(text).items() if ch == sep]
    return [text[a + 1 : b].strip() for a, b in pairwise([-1, *cuts, len(text)])]


def _split_signed(text: str, where: str) -> list[tuple[str, str]]:
    """Split a sum of terms at its top-level ``+``/``-`` into ``(sign, term)`` pairs."""
    cuts = [i for i, ch in _top_chars(text).items() if ch in "+-"]
    signs = ["+", *(text[i] for i in cuts)]
    bounds = pairwise([-1, *cuts, len(text)])
    pieces = [(sign, text[a + 1 : b].strip()) for sign, (a, b) in zip(signs, bounds, strict=True)]
    if len(pieces) > 1 and not pieces[0][1]:
        pieces.pop(0)  # a leading sign, as in "-1 + x"
    if any(not piece for _, piece in pieces):
        raise FormulaError(f"empty term (a stray '+' or '-') in {where!r}")
    return pieces


def _join(pieces: list[tuple[str, str]]) -> str:
    """Inverse of :func:`_split_signed`: ``"a + b - c"``, with a leading ``-`` kept."""
    first_sign, first = pieces[0]
    head = ("-" if first_sign == "-" else "") + first
    return head + "".join(f" {sign} {piece}" for sign, piece in pieces[1:])


def _structure(piece: str) -> tuple[str, str]:
    """``(structure, "(left | group)")`` of ``name(left | group, kw=value)``.

    A piece that is not a call with a ``|`` at its top level is returned unchanged with
    structure ``"us"``.  Nothing is evaluated: the name and keyword are looked up in
    :data:`~hierlm.design.formula_safety.STRUCTURE_FUNCTIONS`.
    """
    match = _CALL.match(piece)
    if match is None or not piece.endswith(")"):
        return "us", piece
    if any(d == 0 for d in _depths(piece)[match.end():-1]):
        return "us", piece  # "f(a):g(b)": the first bracket closes early
    inner = piece[match.end():-1]
    parts = _split_at(inner, ",")
    if "|" not in _top_chars(parts[0]).values():
        return "us", piece  # an ordinary call in the fixed part, such as np.log(x)
    name, shown = match.group(1), _show(piece)
    if name not in STRUCTURE_FUNCTIONS:
        raise FormulaError(f"unknown covariance structure {name!r} in {shown!r}; known: "
                           f"{', '.join(STRUCTURE_FUNCTIONS)}")
    keywords: dict[str, bool] = {}
    for arg in parts[1:]:
        key, eq, value = (x.strip() for x in arg.partition("="))
        allowed = STRUCTURE_FUNCTIONS[name]
        if not eq or key not in allowed:
            known = f"it takes {', '.join(k + '=True' for k in allowed)}" if allowed else \
                "it takes no keyword"
            raise FormulaError(f"unknown argument {arg.strip()!r} of {name}() in {shown!r}; "
                               f"{known}")
        if value not in _BOOLS:
            raise FormulaError(f"{name}(..., {key}=) takes True or False, got {value!r} in "
                               f"{shown!r}")
        if key in keywords:
            raise FormulaError(f"{name}(..., {key}=) given twice in {shown!r}")
        keywords[key] = _BOOLS[value]
    chosen = [k for k, v in keywords.items() if v]
    structure = next(key for key, (fn, kw) in STRUCTURES.items()
                     if fn == name and kw == (chosen[0] if chosen else None))
    return structure, f"({parts[0]})"


def _bar_term(piece: str) -> tuple[str, str, bool] | None:
    """``(left, group, is_double_bar)`` if ``piece`` is ``(left | group)``, else None."""
    inner: str | None = None
    text = piece
    while text.startswith("(") and text.endswith(")"):
        if any(d == 0 for d in _depths(text)[1:-1]):
            break  # "(a):(b)": the first bracket closes early
        inner = text = text[1:-1].strip()
    if inner is None:
        return None
    bars = [i for i, ch in _top_chars(inner).items() if ch == "|"]
    if not bars:
        return None
    double = len(bars) == 2 and bars[1] == bars[0] + 1
    if len(bars) > 1 and not double:
        raise FormulaError(f"random-effects term has more than one '|': {_show(piece)!r}")
    return inner[: bars[0]].strip(), inner[bars[-1] + 1 :].strip(), double


def _expand(left: str, group: str, double: bool, term: str) -> list[RandomTermSpec]:
    """The random-effects specs of one bar term ``term``, expanded as lme4 does."""
    term = _show(term)
    if not left:
        raise FormulaError(f"random-effects term has an empty left side of '|': {term!r}")
    if not group:
        raise FormulaError(f"random-effects term has an empty grouping side of '|': {term!r}")
    nesting = _grouping(group, term)
    intercept, labels, removed = _left_terms(left, term, double)
    if double:
        labels = [t for t in labels if t not in removed]
        labels.sort(key=lambda t: len(_split_at(t, ":")))  # R's terms(): by degree
        exprs = (["1"] if intercept else []) + [f"0 + {t}" for t in labels]
    else:
        exprs = [_join([(s, _show(t)) for s, t in _split_signed(left, term)])]
    if not intercept and not labels:
        raise FormulaError(f"random-effects term has no columns: {term!r}")
    return [RandomTermSpec(expr, factors) for expr in exprs for factors in nesting]


def _left_terms(left: str, term: str, double: bool) -> tuple[bool, list[str], set[str]]:
    """Intercept flag, added term labels and removed labels of a bar's left side.

    For ``||`` terms, ``a*b`` is expanded to ``a``, ``b`` and ``a:b`` as R's ``terms``
    does; other operators that would create several terms are refused.
    """
    intercept, labels, removed = True, list[str](), set[str]()
    for sign, text in _split_signed(left, term):
        text = ":".join(_show(part) for part in _split_at(text, ":"))
        if text in ("0", "1"):
            intercept = (text == "1") == (sign == "+")
        elif sign == "-":
            removed.add(text)
        elif not double:
            labels.append(text)
        else:
            factors = _split_at(text, "*")
            tops = _top_chars(text).values()
            if "/" in tops or "^" in tops or not all(factors):
                raise FormulaError(
                    f"cannot split {text!r} into uncorrelated terms in {term!r}; "
                    "write its terms out with '+' and ':'"
                )
            for size in range(1, len(factors) + 1):
                for combo in combinations(factors, size):
                    label = ":".join(combo)
                    if label not in labels:
                        labels.append(label)
    return intercept, labels, removed


def _grouping(group: str, term: str) -> list[tuple[str, ...]]:
    """Factor tuples of a grouping side: ``a/b:c`` gives ``[("a",), ("b", "c", "a")]``."""
    levels = [
        tuple(_name(name, group, term) for name in _split_at(level, ":"))
        for level in _split_at(group, "/")
    ]
    return [
        tuple(n for level in reversed(levels[: k + 1]) for n in level) for k in range(len(levels))
    ]


def _name(name: str, group: str, term: str) -> str:
    """A grouping column name, backquotes removed; FormulaError if not a plain name."""
    if len(name) > 2 and name[0] == name[-1] == "`" and "`" not in name[1:-1]:
        return name[1:-1]
    if _NAME.fullmatch(name) or name.replace(".", "_").isidentifier():  # unicode: gruppé
        return name
    raise FormulaError(
        f"grouping side {_show(group)!r} of random-effects term {term!r} "
        "must be column names joined by ':' or '/'"
    )
