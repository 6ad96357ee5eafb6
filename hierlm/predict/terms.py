"""What prediction needs from a result: the terms ``re_form`` keeps, ``b`` by term, the model.

``re_form`` follows lme4: None keeps every random term, ``"~0"`` none, and a formula
such as ``"~(1 | Subject)"`` the terms it names.  A term is matched by its grouping
factor and, where the factor has several terms (``(1 + x || g)``), by its expression.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hierlm.covariance.layout import templates
from hierlm.design.formula import parse_formula
from hierlm.design.newdata import NewDataCoder
from hierlm.design.terms import ModelDesign, RandomTerm
from hierlm.errors import DataError, FormulaError, MethodError
from hierlm.objective.profiled import ProfiledObjective, compile_objective

_NONE = {"~0", "~-1", "0", "NA", "~1", "1"}


def coder_of(res: Any) -> NewDataCoder:
    """The result's new-data coder (a MethodError if the result has none)."""
    coder = getattr(res, "coder", None)
    if coder is None:
        raise MethodError("this result has no record of its data coding (it was saved by an "
                          "older hierlm); refit the model to predict")
    return coder


def coder_templates(coder: NewDataCoder, theta: np.ndarray) -> list[np.ndarray]:
    """The templates ``T_k`` of theta (the coder's terms carry the design's ``p``)."""
    return templates(coder, theta)  # type: ignore[arg-type]


def select_terms(coder: NewDataCoder, re_form: str | None) -> tuple[int, ...]:
    """Indices of the random terms ``re_form`` keeps (see the module docstring).

    Examples
    --------
    >>> import hierlm
    >>> data = hierlm.load_sleepstudy().assign(Week=lambda f: f.Days // 7)
    >>> d = hierlm.build_design("Reaction ~ (1 | Subject) + (1 | Week)", data)
    >>> [select_terms(d.coder, f) for f in (None, "~0", "~(1 | Week)")]
    [(0, 1), (), (1,)]
    """
    if re_form is None:
        return tuple(range(len(coder.terms)))
    if not isinstance(re_form, str):
        raise FormulaError(f"re_form must be None, '~0' or a formula, got {re_form!r}")
    if "".join(re_form.split()) in _NONE:
        return ()
    text = re_form.strip()
    spec = parse_formula(("_ " if text.startswith("~") else "_ ~ ") + text)
    chosen: list[int] = []
    for ts in spec.random:
        same = [k for k, t in enumerate(coder.terms) if t.factors == tuple(ts.factors)]
        exact = [k for k in same if coder.terms[k].expr == ts.expr]
        pick = exact or (same if len(same) == 1 else [])
        if not pick:
            raise FormulaError(f"re_form term ({ts.expr} | {ts.group}) is not a random term "
                               f"of the model")
        chosen.extend(k for k in pick if k not in chosen)
    return tuple(sorted(chosen))


def ranef_arrays(res: Any) -> list[np.ndarray]:
    """The conditional modes (posterior means for NUTS) per term, each ``(levels, p)``."""
    coder = coder_of(res)
    values = res.ranef_table["value"].to_numpy(dtype=np.float64)
    out, off = [], 0
    for t in coder.terms:
        nl, p = len(t.levels), len(t.coef_names)
        out.append(values[off:off + nl * p].reshape(p, nl).T)
        off += nl * p
    if off != len(values):
        raise DataError("the result's random-effects table does not match its terms")
    return out


def fitted_objective(res: Any) -> ProfiledObjective:
    """The compiled objective of the fit: ``res.model``'s, or rebuilt from the coder's rows.

    A result read back from disk has no model; its design is rebuilt from the rows the
    coder keeps (no formula evaluation beyond coding them) and its graph linked again.
    """
    if res.model is not None:
        return res.model.objective

    coder = coder_of(res)
    rows = coder.code(None)
    terms = tuple(RandomTerm(group=t.group, coef_names=t.coef_names, levels=t.levels,
                             codes=c, X=zx, structure=t.structure)
                  for t, c, zx in zip(coder.terms, rows.codes, rows.Z_X, strict=True))
    design = ModelDesign(formula=coder.formula, response=coder.response,
                         y=np.asarray(res.y, dtype=float), X=rows.X,
                         fixef_names=coder.fixef_names, terms=terms, n_dropped=res.n_dropped,
                         weights=coder.weights, offset=coder.offset, coder=coder)
    return compile_objective(design)
