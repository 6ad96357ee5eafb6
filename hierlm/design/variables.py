"""The variables of a model formula, evaluated as R's ``model.frame`` would.

A variable is numeric (a numeric column, or a call such as ``log(x)``, ``I(x^2)``,
``scale(x)``, evaluated by formulae, whose stateful transformations keep the fitting
data's state for new rows) or a factor:

* a text, boolean or categorical column; its levels are a categorical's categories in
  their order (R's factor levels), otherwise the sorted distinct values (booleans
  ``FALSE``, ``TRUE``, numbers by value);
* ``C(x, contrasts, levels=[...])``: ``x`` a column, ``contrasts`` one of ``Treatment``,
  ``Treatment('b')`` (reference level ``b``), ``Sum``, ``Helmert``, ``Poly`` or R's
  names (``contr.sum``, ``sum``, ``"contr.sum"``), ``levels`` the level order (the
  first level is treatment's reference).

Contrasts default to treatment, polynomial for an ordered categorical (R's
``options("contrasts")``).  New rows are coded with the fitting data's levels; a level
not seen in fitting is a :class:`~hierlm.errors.DataError`.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hierlm.design.column_reads import arrow_text_codes
from hierlm.design.contrasts import ContrastSpec, contrast_matrix, parse_contrast
from hierlm.design.fitting_rows import FittingRows, text_codes
from hierlm.design.names import is_r_name, python_power, to_python
from hierlm.design.r_dialect import to_formulae
from hierlm.errors import DataError, FormulaError


def level_label(v: object) -> str:
    """A level as R prints it: ``TRUE``/``FALSE``, whole numbers without ``.0``."""
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _is_factor_column(col: pd.Series) -> bool:
    return bool(isinstance(col.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(col)
                or pd.api.types.is_object_dtype(col) or pd.api.types.is_string_dtype(col))


@dataclass(eq=False)
class FactorVariable:
    """A factor: its data column, levels (values, in order) and contrasts."""

    label: str
    column: str
    levels: pd.Index
    contrast: ContrastSpec
    explicit: bool = False  # contrasts written in C(); the contrasts= argument cannot override
    reference: int | None = None
    #: the fitting rows' codes, where found with the levels (a text column: Arrow's
    #: dictionary encoding); None: looked up by :meth:`codes`
    train_codes: np.ndarray | None = field(default=None, repr=False)
    _codings: dict[tuple[Any, ...], tuple[np.ndarray, tuple[str, ...]]] = field(
        default_factory=dict, repr=False)

    @property
    def level_labels(self) -> tuple[str, ...]:
        return tuple(level_label(v) for v in self.levels)

    def codes(self, frame: pd.DataFrame | FittingRows) -> np.ndarray:
        col = frame[self.column]
        values = col.astype(object) if isinstance(col.dtype, pd.CategoricalDtype) else col
        codes = self.levels.get_indexer(pd.Index(values.to_numpy(dtype=object)))
        if np.any(codes < 0):
            unseen = pd.unique(col[codes < 0].astype(object))
            shown = ", ".join(repr(v) for v in unseen[:10]) + (" ..." if len(unseen) > 10 else "")
            raise DataError(f"column '{self.column}' has level(s) not among the model's levels "
                            f"of {self.label}: {shown}")
        return codes

    def coding(self, full: bool) -> tuple[np.ndarray, tuple[str, ...]]:
        """Indicator (``full``) or contrast matrix, with the column names' level pieces
        (made once per setting of the contrasts; read-only)."""
        key = (full, self.contrast, self.reference, id(self.levels))
        hit = self._codings.get(key)
        if hit is None:
            hit = ((np.eye(len(self.levels)), self.level_labels) if full else
                   contrast_matrix(self.contrast, self.level_labels, self.reference))
            hit[0].flags.writeable = False
            self._codings[key] = hit
        return hit


@dataclass(eq=False)
class NumericVariable:
    """A numeric variable: a column, or a call evaluated by formulae."""

    label: str
    column: str | None
    width: int = 1
    common: Any = field(default=None, repr=False)
    train: np.ndarray | None = field(default=None, repr=False)

    def matrix(self, frame: pd.DataFrame | FittingRows, training: bool = False) -> np.ndarray:
        if self.column is not None:
            col = frame[self.column]
            if not pd.api.types.is_numeric_dtype(col):
                raise DataError(f"column '{self.column}' must be numeric, got dtype {col.dtype}")
            return col.to_numpy(dtype=np.float64).reshape(-1, 1)
        if training and self.train is not None:
            return self.train
        try:
            coded = self.common.evaluate_new_data(frame)
        except Exception as exc:  # formulae raises many types; report one clear error
            text = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise DataError(f"cannot code new data for {self.label}: {text}") from None
        return _numeric(coded, self.label)

    def piece(self, j: int) -> str:
        return "" if self.width == 1 else str(j + 1)


Variable = FactorVariable | NumericVariable


def _numeric(common: Any, label: str) -> np.ndarray:
    values = common.as_dataframe().to_numpy()
    if np.iscomplexobj(values):
        raise DataError(f"{label} has complex values")
    return np.asarray(values, dtype=np.float64)


def _name_of(node: ast.AST, quoted: dict[str, str]) -> str | None:
    """A data column named by an ast node (``x``, ``PCT.x``, a backquoted name), else None."""
    if isinstance(node, ast.Name):
        return quoted[node.id][1:-1] if node.id in quoted else node.id
    if isinstance(node, ast.Attribute):
        inner = _name_of(node.value, quoted)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


def _spec_of(node: ast.AST, source: str) -> ContrastSpec:
    """The contrasts of ``C(x, <node>)``."""
    text = ast.unparse(node)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return parse_contrast(node.value, source)
    if isinstance(node, (ast.Name, ast.Attribute)):
        return parse_contrast(text, source)
    if isinstance(node, ast.Call) and ast.unparse(node.func) in ("Treatment", "contr.treatment"):
        args = list(node.args) + [k.value for k in node.keywords
                                  if k.arg in ("reference", "ref", "base")]
        if len(args) != 1 or len(node.args) + len(node.keywords) != 1 or not isinstance(
                args[0], ast.Constant):
            raise FormulaError(f"{source}: write a reference level as Treatment('level')")
        return ContrastSpec("treatment", args[0].value)
    if isinstance(node, ast.Call):
        raise FormulaError(f"{source}: {ast.unparse(node.func)}(...) takes no arguments here; "
                           f"only Treatment('level') names a level (R's contr.sum always "
                           f"leaves out the last level: reorder with levels=[...])")
    raise FormulaError(f"{source}: unknown contrasts {text!r}")


def parse_c_call(source: str) -> tuple[str, ContrastSpec | None, list[Any] | None] | None:
    """``(column, contrasts, levels)`` of a ``C(...)`` variable; None if not a C() call.

    Examples
    --------
    >>> parse_c_call("C(f, Treatment('b'), levels=['b', 'a'])")
    ('f', ContrastSpec(kind='treatment', reference='b'), ['b', 'a'])
    """
    if not source.lstrip().startswith("C(") and not source.lstrip().startswith("C ("):
        return None
    py, quoted = to_python(source)
    try:
        node = ast.parse(py.strip(), mode="eval").body
    except SyntaxError:
        raise FormulaError(f"cannot parse {source!r}") from None
    assert isinstance(node, ast.Call)
    if not node.args or len(node.args) > 2:
        raise FormulaError(f"{source}: write C(column), C(column, Sum) or "
                           f"C(column, levels=[...])")
    column = _name_of(node.args[0], quoted)
    if column is None:
        raise FormulaError(f"{source}: the first argument of C() must be a column name")
    spec = _spec_of(node.args[1], source) if len(node.args) == 2 else None
    levels = None
    for kw in node.keywords:
        if kw.arg in ("contr", "contrast") and spec is None:
            spec = _spec_of(kw.value, source)
        elif kw.arg == "levels":
            try:
                levels = list(ast.literal_eval(kw.value))
            except ValueError:
                raise FormulaError(f"{source}: levels must be a list of values, as "
                                   f"levels=['b', 'a']") from None
        else:
            raise FormulaError(f"{source}: unknown argument {kw.arg!r} of C()")
    return column, spec, levels


def _levels_of(col: pd.Series, label: str) -> pd.Index:
    return _checked_levels(col, label)[0]


def _checked_levels(col: pd.Series, label: str,
                    text: tuple[np.ndarray, tuple[str, ...]] | None = None
                    ) -> tuple[pd.Index, np.ndarray | None]:
    """:func:`_levels_and_codes`, with DataError for fewer than two levels."""
    levels, codes = _levels_and_codes(col, label, text)
    if len(levels) < 2:  # R: "contrasts can be applied only to factors with 2 or more levels"
        shown = f" ({level_label(levels[0])!r})" if len(levels) else ""
        raise DataError(f"factor {label} has a single level{shown} in the rows used; a factor "
                        f"in a model needs at least 2 levels")
    return levels, codes


def _levels_and_codes(col: pd.Series, label: str,
                      text: tuple[np.ndarray, tuple[str, ...]] | None = None
                      ) -> tuple[pd.Index, np.ndarray | None]:
    """The column's levels in order and, for text held by Arrow, each row's code.

    A text column's sorted distinct values and codes come from one dictionary encoding
    (:func:`hierlm.design.column_reads.arrow_text_codes`: the same levels as
    ``sorted(pd.unique(col))``, and the codes that :meth:`FactorVariable.codes` would
    look up: that lookup took 0.15 ms for alfalfa's ``Variety``, 72 rows).  ``text``:
    those codes and levels, where the caller has them.
    """
    if text is None:
        text = arrow_text_codes(col)
    if text is not None:
        return pd.Index(list(text[1]), dtype=object), text[0]
    if isinstance(col.dtype, pd.CategoricalDtype):
        return pd.Index(list(col.cat.categories), dtype=object), None
    values = pd.unique(col)
    try:
        ordered = sorted(values)
    except TypeError:
        kinds = sorted({type(v).__name__ for v in values})
        raise DataError(f"{label} mixes value types ({', '.join(kinds)}); make the column one "
                        f"type (for example text) or a pandas Categorical") from None
    return pd.Index(ordered, dtype=object), None


def _match_level(levels: pd.Index, value: object, label: str) -> int:
    for j, v in enumerate(levels):
        if v == value or level_label(v) == str(value):
            return j
    raise DataError(f"{label}: level {value!r} is not a level of the data (levels: "
                    f"{', '.join(map(repr, map(level_label, levels)))})")


Evaluator = Callable[[str, Any, str], Any]


def make_variable(label: str, source: str, frame: pd.DataFrame | FittingRows, what: str,
                  evaluate: Evaluator) -> Variable:
    """Evaluate one variable on the fitting rows (see the module docstring).

    ``evaluate(expr, frame, what)`` returns formulae's common-effects matrix of the
    formulae-dialect expression ``expr`` (:func:`hierlm.design.matrices.formulae_common`).
    """
    name = source[1:-1] if source.startswith("`") else source
    if source.startswith("`") or is_r_name(source) or source.isidentifier():
        col = frame[name]
        if _is_factor_column(col):
            ordered = isinstance(col.dtype, pd.CategoricalDtype) and bool(col.cat.ordered)
            found_levels, found_codes = _checked_levels(col, label, text_codes(frame, name))
            return FactorVariable(label, name, found_levels,
                                  ContrastSpec("poly" if ordered else "treatment"),
                                  train_codes=found_codes)
        return NumericVariable(label, name)
    c = parse_c_call(source)
    if c is not None:
        column, spec, levels = c
        if column not in frame.columns:
            raise DataError(f"column(s) not found in data: {column}")
        col = frame[column]
        present = _levels_of(col, label)
        ordered = isinstance(col.dtype, pd.CategoricalDtype) and bool(col.cat.ordered)
        if levels is not None:
            idx = [_match_level(present, v, label) for v in levels]
            missing = [level_label(present[j]) for j in range(len(present)) if j not in idx]
            if missing:
                raise DataError(f"{label}: levels=[...] leaves out level(s) "
                                f"{', '.join(map(repr, missing))} of column '{column}'")
            if len(set(idx)) != len(idx):
                raise DataError(f"{label}: levels=[...] names a level twice")
            present = pd.Index([present[j] for j in idx], dtype=object)
        var = FactorVariable(label, column, present,
                             spec or ContrastSpec("poly" if ordered else "treatment"),
                             explicit=spec is not None)
        return with_reference(var)
    common = evaluate(f"0 + {to_formulae(python_power(source))}", frame, what)
    if common is None:
        raise FormulaError(f"{what}: {label} gives no column")
    kinds = {getattr(comp, "kind", None) for t in common.terms.values()  # type: ignore[attr-defined]
             for comp in getattr(t, "components", ())}
    if "offset" in kinds:
        raise FormulaError(f"{what}: {label}: give an offset with fit(..., offset='column')")
    if "categoric" in kinds:
        raise FormulaError(f"{what}: {label} gives categories; write C(column) for a factor")
    train = _numeric(common, label)
    return NumericVariable(label, None, width=train.shape[1], common=common, train=train)


def with_reference(var: FactorVariable) -> FactorVariable:
    """``var`` with its treatment reference level located among its levels."""
    if var.contrast.kind == "treatment" and var.contrast.reference is not None:
        var.reference = _match_level(var.levels, var.contrast.reference, var.label)
    else:
        var.reference = None
    return var
