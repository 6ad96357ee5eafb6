"""Fixed-effect terms and the hypotheses tested for them (lmerTest's type I and III).

A term of the fixed part (``Variety``, ``Date``, ``Variety:Date``) owns the columns of
``X`` whose ``:``-separated pieces start with its variables' names, in order
(``VarietyLadak:DateO7``); a piece equal to the name is a numeric variable, a longer
one a level of a factor.  Ties go to the longest match.

Type I (sequential): with ``X'X = R'R`` (``R`` upper triangular), the rows of
``diag(R)^{-1} R`` for a term's columns (lmerTest's Doolittle rows).

Type III, as lmerTest's ``extract_contrasts_type3`` for treatment contrasts (a design
with other contrasts, ``X = X_t A``, gets the hypotheses ``L_t A`` of its treatment-coded
twin ``X_t``, so the tests do not depend on the coding, as lmerTest's): ``rdX``
is the over-parameterized design (every level of every factor in every term, an
intercept column first); ``L = zapsmall((X^+ rdX)')``; for each term contained in
others (all its variables in theirs, more variables, the same numeric variables:
lmerTest's ``term_contain``), highest order first, its columns of ``L`` are replaced
by their residuals on the containing terms' columns; the hypothesis of a term is
the transpose of its columns of ``L``, restricted to the rows of ``X``'s own columns,
without zero rows.  A model with at most one column or one term gets type I.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from hierlm.design.columns import formulae_common
from hierlm.design.formula import parse_formula
from hierlm.design.matrices import _dependent_columns as dependent_columns
from hierlm.design.model_matrix import build_model_matrix
from hierlm.design.rterms import parse_terms
from hierlm.design.terms import ModelDesign
from hierlm.errors import MethodError
from hierlm.inference.blas import one_blas_thread


@dataclass(frozen=True)
class FixedTerm:
    """One term of the fixed part: its label, variables and columns of ``X``."""

    label: str
    variables: tuple[str, ...]
    columns: tuple[int, ...]


def _term_variables(fixed: str) -> tuple[bool, list[tuple[str, ...]]]:
    """The intercept and each term's variable labels, as R's term labels (the columns'
    names are built from the same labels, :mod:`hierlm.design.model_matrix`)."""
    terms = parse_terms(fixed)
    return terms.intercept, list(terms.terms)


def _column_owners(design: ModelDesign) -> dict[str, tuple[str, ...]]:
    """Column name -> term, from the model matrix (with the model's and treatment contrasts)."""
    coder = design.coder
    if coder is None:
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for treatment in (False, True):
        mm = build_model_matrix(coder.fixed, coder.frame, coder.contrasts, "fixed part",
                                formulae_common, treatment=treatment)
        for name, term in zip(mm.names, mm.term_of, strict=True):
            out.setdefault(name, term)
    return out


def fixed_terms(design: ModelDesign) -> tuple[bool, list[FixedTerm]]:
    """Whether the fixed part has an intercept, and its terms with their columns.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> fixed_terms(d)
    (True, [FixedTerm(label='Days', variables=('Days',), columns=(1,))])
    """
    intercept, variables = _term_variables(parse_formula(design.formula).fixed)
    owner: dict[int, tuple[int, int]] = {}
    for j, name in enumerate(design.fixef_names):
        if name == "(Intercept)":
            continue
        pieces = name.split(":")
        for ti, vs in enumerate(variables):
            if len(vs) == len(pieces) and all(pc.startswith(v) for pc, v in zip(pieces, vs,
                                                                               strict=True)):
                score = sum(len(v) for v in vs)
                if j not in owner or score > owner[j][1]:
                    owner[j] = (ti, score)
    unmapped = [design.fixef_names[j] for j in range(design.p)
                if j not in owner and design.fixef_names[j] != "(Intercept)"]
    if unmapped:  # e.g. a level with ':' in its name: ask the model matrix
        owners = _column_owners(design)
        for j, name in enumerate(design.fixef_names):
            if j not in owner and owners.get(name) in variables:
                owner[j] = (variables.index(owners[name]), 0)
        unmapped = [n for j, n in enumerate(design.fixef_names)
                    if j not in owner and n != "(Intercept)"]
    if unmapped:
        raise MethodError(f"cannot map fixed-effect column(s) {', '.join(unmapped)} to terms "
                          f"of the formula")
    terms = [FixedTerm(label=":".join(vs), variables=vs,
                       columns=tuple(j for j in sorted(owner) if owner[j][0] == ti))
             for ti, vs in enumerate(variables)]
    return intercept, [t for t in terms if t.columns]


def type1_contrasts(design: ModelDesign) -> dict[str, np.ndarray]:
    """Sequential (type I) hypothesis matrices, one per term.

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> type1_contrasts(d)["Days"].round(3).tolist()
    [[0.0, 1.0]]
    """
    _, terms = fixed_terms(design)
    # R's terms() order: by degree, formula order within a degree (the intercept and
    # any column of no term first); the sequence of the sums of squares follows it
    terms = sorted(terms, key=lambda t: len(t.variables))
    owned = [j for t in terms for j in t.columns]
    perm = [j for j in range(design.p) if j not in set(owned)] + owned
    R = np.linalg.qr(design.X[:, perm], mode="r")
    R = R * np.sign(np.diag(R))[:, None]
    U = np.zeros_like(R)
    U[:, perm] = R / np.diag(R)[:, None]  # back to the columns of X
    pos = {j: i for i, j in enumerate(perm)}
    return {t.label: U[[pos[j] for j in t.columns]] for t in terms}


def zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's ``zapsmall``: round to ``digits`` significant digits of the largest entry."""
    mx = float(np.max(np.abs(x), initial=0.0))
    if mx > 0:
        digits = max(0, digits - int(np.ceil(np.log10(mx))))
    return np.round(x, digits)


def _full_coding(design: ModelDesign, terms: list[FixedTerm]
                 ) -> dict[str, list[tuple[str, np.ndarray]]]:
    """Each variable's columns with every level: numeric -> itself, factor -> indicators."""
    X, names = design.X, design.fixef_names
    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    for t in terms:
        for v in t.variables:
            if v in out:
                continue
            main = next((m for m in terms if m.variables == (v,)), None)
            if main is None:
                raise MethodError(f"type 3 tests need the main effect of '{v}' in the model; "
                                  f"use type=1")
            cols = [(names[j], X[:, j]) for j in main.columns]
            if len(cols) == 1 and cols[0][0] == v:
                out[v] = cols
                continue
            total = np.sum([c for _, c in cols], axis=0)
            if not np.allclose(total, 1.0):  # a reference level absent from X
                cols = [(f"{v}<reference>", 1.0 - total), *cols]
            out[v] = cols
    return out


def _contains(a: FixedTerm, b: FixedTerm, numeric: set[str]) -> bool:
    va, vb = set(a.variables), set(b.variables)
    return va <= vb and bool(vb - va) and (va & numeric) == (vb & numeric)


def _treatment_design(design: ModelDesign) -> ModelDesign | None:
    """The design with every factor coded by treatment contrasts, None if it already is."""
    coder = design.coder
    if coder is None:
        return None
    mm = build_model_matrix(coder.fixed, coder.frame, None, "fixed part", formulae_common,
                            treatment=True)
    dropped = set(dependent_columns(mm.values))
    keep = [j for j in range(mm.values.shape[1]) if j not in dropped]
    names = tuple(mm.names[j] for j in keep)
    if names == tuple(design.fixef_names) or len(keep) != design.p:
        return None
    return dataclasses.replace(design, X=mm.values[:, keep], fixef_names=names)


def type3_contrasts(design: ModelDesign) -> dict[str, np.ndarray]:
    """lmerTest's type III hypothesis matrices, one per term (see the module docstring).

    Examples
    --------
    >>> import hierlm
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> type3_contrasts(d)["Days"].round(3).tolist()
    [[0.0, 1.0]]
    """
    with one_blas_thread():  # its QR of n x p: multithreaded BLAS was 0.46 s on 2 busy cores
        treatment = _treatment_design(design)
    if treatment is not None:  # X = X_t A: a hypothesis L_t beta_t is (L_t A) beta
        A = np.linalg.lstsq(treatment.X, design.X, rcond=None)[0]
        return {k: L @ A for k, L in type3_contrasts(treatment).items()}
    intercept, terms = fixed_terms(design)
    if design.p <= 1 or len(terms) <= 1:
        return type1_contrasts(design)
    coding = _full_coding(design, terms)
    numeric = {v for v, cols in coding.items() if len(cols) == 1 and cols[0][0] == v}
    rd_names: list[str] = ["(Intercept)"] if intercept else []
    rd_cols: list[np.ndarray] = [np.ones(design.nobs)] if intercept else []
    for t in terms:
        prods: list[tuple[str, np.ndarray]] = [("", np.ones(design.nobs))]
        for v in t.variables:  # the first variable varies fastest, as in R
            prods = [(f"{n}:{cn}" if n else cn, c * cc) for cn, cc in coding[v]
                     for n, c in prods]
        rd_names += [n for n, _ in prods]
        rd_cols += [c for _, c in prods]
    rdX = np.column_stack(rd_cols)
    with one_blas_thread():
        L = zapsmall((np.linalg.pinv(design.X) @ rdX).T)
    order = sorted(range(len(terms)), key=lambda i: -len(terms[i].variables))
    for i in order:
        t = terms[i]
        cont = [j for u in terms if _contains(t, u, numeric) for j in u.columns]
        if cont:
            B, Y = L[:, cont], L[:, list(t.columns)]
            coef = np.linalg.lstsq(B, Y, rcond=None)[0]
            L[:, list(t.columns)] = zapsmall(Y - B @ coef)
    pos = {n: k for k, n in enumerate(rd_names)}
    rows = [pos[n] for n in design.fixef_names]
    L = L[rows]
    out = {}
    for t in terms:
        Lt = L[:, list(t.columns)].T
        out[t.label] = Lt[np.abs(Lt).sum(axis=1) > 1e-8]
    return out
