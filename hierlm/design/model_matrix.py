"""R's ``model.matrix`` for a formula's right-hand side.

The columns of a term are the row-wise products of its variables' columns, the first
variable varying fastest (R's ``a1:b1, a2:b1, a1:b2, ...``), named by joining the
pieces with ``:``.  A numeric variable contributes its column(s).  A factor
contributes its contrast matrix ``C[codes]`` or, where R uses indicator coding, the
identity: as R's ``TermCode``, a factor in a term is coded by contrasts when the term
without it is empty or contained in an earlier term (terms sorted by degree), else by
indicators; without an intercept, the first factor of the first term that has one is
coded by indicators (so ``0 + f`` has one column per level).  The ``contrasts=``
argument (column -> contrasts) sets the contrasts of a factor column, as R's
``model.matrix(..., contrasts.arg)``; contrasts written in ``C()`` take precedence.

New rows go through the same variables (levels, contrasts and transformation state of
the fitting rows), so the fitting rows coded as new data give the same matrix.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hierlm.design.contrasts import ContrastSpec
from hierlm.design.fitting_rows import FittingRows
from hierlm.design.names import check_unique
from hierlm.design.rterms import Terms, parse_terms
from hierlm.design.variables import (
    Evaluator,
    FactorVariable,
    NumericVariable,
    Variable,
    make_variable,
    with_reference,
)
from hierlm.errors import FormulaError

#: The expansion of a right-hand side is a frozen value of its text: made once per process.
_parsed_terms = functools.lru_cache(maxsize=256)(parse_terms)


@dataclass(eq=False)
class ModelMatrix:
    """A right-hand side evaluated on the fitting rows.

    ``values`` (n x p) and ``names`` are the fitting rows' matrix; ``term_of[j]`` is the
    term (tuple of variable labels, ``()`` for the intercept) that owns column ``j``;
    :meth:`code` codes new rows.

    Examples
    --------
    >>> import pandas as pd
    >>> from hierlm.design.columns import formulae_common
    >>> d = pd.DataFrame({"a": ["p", "q", "r", "p"], "b": ["u", "u", "v", "v"]})
    >>> build_model_matrix("a:b", d, evaluate=formulae_common).names
    ('(Intercept)', 'ap:bu', 'aq:bu', 'ar:bu', 'ap:bv', 'aq:bv', 'ar:bv')
    """

    terms: Terms
    variables: dict[str, Variable]
    codings: list[list[bool]]  # per term, per variable: indicator coding?
    names: tuple[str, ...]
    term_of: tuple[tuple[str, ...], ...]
    values: np.ndarray = field(repr=False)

    def code(self, frame: pd.DataFrame | FittingRows, training: bool = False) -> np.ndarray:
        """The matrix of ``frame``'s rows, coded like the fitting rows."""
        n = len(frame)
        evaluated: dict[str, np.ndarray] = {}
        for label, var in self.variables.items():
            if isinstance(var, FactorVariable):
                evaluated[label] = (var.train_codes if training and var.train_codes is not None
                                    else var.codes(frame))
            else:
                evaluated[label] = var.matrix(frame, training)
        cols: list[np.ndarray] = [np.ones(n)] if self.terms.intercept else []
        for term, full in zip(self.terms.terms, self.codings, strict=True):
            prods = [np.ones(n)]
            for label, ind in zip(term, full, strict=True):
                var = self.variables[label]
                if isinstance(var, FactorVariable):
                    M, _ = var.coding(ind)
                    pieces = M[evaluated[label]]
                else:
                    pieces = evaluated[label]
                prods = [p * pieces[:, k] for k in range(pieces.shape[1]) for p in prods]
            cols += prods
        return np.column_stack(cols) if cols else np.zeros((n, 0))


def _indicator_codings(terms: Terms, variables: Mapping[str, Variable]) -> list[list[bool]]:
    """R's TermCode: True where a factor is coded by indicators (see the module docstring)."""
    sets = [frozenset(t) for t in terms.terms]
    out = []
    for i, t in enumerate(terms.terms):
        row = []
        for v in t:
            if not isinstance(variables[v], FactorVariable):
                row.append(False)
                continue
            margin = sets[i] - {v}
            row.append(bool(margin) and not any(margin <= s for s in sets[:i]))
        out.append(row)
    if not terms.intercept:
        for i, t in enumerate(terms.terms):
            first = next((k for k, v in enumerate(t) if isinstance(variables[v], FactorVariable)),
                         None)
            if first is not None:
                out[i][first] = True
                break
    return out


def _apply_contrasts(variables: dict[str, Variable], contrasts: Mapping[str, ContrastSpec],
                     what: str) -> None:
    for key, spec in contrasts.items():
        targets = [v for v in variables.values()
                   if v.label == key or (isinstance(v, NumericVariable) and v.column == key)
                   or (isinstance(v, FactorVariable) and v.column == key)]
        if not targets:
            raise FormulaError(f"contrasts given for '{key}', which is not a variable of the "
                               f"{what}")
        for v in targets:
            if isinstance(v, NumericVariable):
                raise FormulaError(f"contrasts given for '{key}', which is numeric; contrasts "
                                   f"apply to factors (text or categorical columns, or C(x))")
            if not v.explicit:
                v.contrast = spec
                with_reference(v)


def build_model_matrix(rhs: str, frame: pd.DataFrame | FittingRows,
                       contrasts: Mapping[str, ContrastSpec] | None = None,
                       what: str = "fixed part", evaluate: Evaluator | None = None,
                       treatment: bool = False) -> ModelMatrix:
    """R's model matrix of ``rhs`` on ``frame`` (see the module docstring).

    ``evaluate`` evaluates a call variable with formulae
    (:func:`hierlm.design.matrices.formulae_common`); it is needed only when ``rhs``
    has calls other than ``C()``.  ``treatment=True`` codes every factor by treatment
    contrasts, whatever was asked for (a design with the same column space).
    """
    terms = _parsed_terms(rhs)
    variables: dict[str, Variable] = {}
    for label in terms.variables:
        if not any(label in t for t in terms.terms):  # only in a removed term
            continue
        variables[label] = make_variable(label, terms.source[label], frame, what,
                                         evaluate or _no_evaluator)
    _apply_contrasts(variables, contrasts or {}, what)
    if treatment:
        for v in variables.values():
            if isinstance(v, FactorVariable):
                v.contrast, v.reference = ContrastSpec("treatment"), None
    codings = _indicator_codings(terms, variables)
    names: list[str] = ["(Intercept)"] if terms.intercept else []
    sources: list[str] = ["the intercept"] if terms.intercept else []
    owners: list[tuple[str, ...]] = [()] if terms.intercept else []
    for term, full in zip(terms.terms, codings, strict=True):
        pieces = [""]
        for label, ind in zip(term, full, strict=True):
            var = variables[label]
            if isinstance(var, FactorVariable):
                own = [label + p for p in var.coding(ind)[1]]
            else:
                own = [label + var.piece(k) for k in range(var.width)]
            pieces = [f"{p}:{o}" if p else o for o in own for p in pieces]
        names += pieces
        sources += [f"term {':'.join(term)}"] * len(pieces)
        owners += [term] * len(pieces)
    check_unique(names, sources, what)
    mm = ModelMatrix(terms=terms, variables=variables, codings=codings, names=tuple(names),
                     term_of=tuple(owners), values=np.zeros((0, 0)))
    mm.values = mm.code(frame, training=True)
    return mm


def _no_evaluator(expr: str, frame: pd.DataFrame, what: str) -> Any:
    raise FormulaError(f"{what}: cannot evaluate {expr!r} here")
