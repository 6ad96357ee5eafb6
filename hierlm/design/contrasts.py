"""R's contrasts: how a factor with ``k`` levels becomes columns of a model matrix.

A factor coded *by contrasts* contributes ``C[codes]``, where the ``k x (k - 1)``
contrast matrix ``C`` is one of R's (``stats::contr.*``):

* ``treatment`` (R's default for unordered factors): the identity without the column
  of the reference level (``base``, the first level unless chosen); columns are named
  by their levels.
* ``sum``: the identity on the first ``k - 1`` levels, the last level's row ``-1``;
  columns ``1 .. k-1``.
* ``helmert``: column ``j`` is ``-1`` on levels ``1..j``, ``j`` on level ``j + 1``
  and 0 after; columns ``1 .. k-1``.
* ``poly`` (R's default for ordered factors): orthonormal polynomials in the scores
  ``1..k`` (R's ``make.poly``: the Q factor of the Vandermonde matrix of the centred
  scores, signs as ``diag(R)``), without the constant; columns ``.L``, ``.Q``,
  ``.C``, ``^4``, ...

A factor coded *by indicators* (R's code 2, when the term's margin is absent) gets the
``k x k`` identity, columns named by the levels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hierlm.errors import FormulaError

KINDS = ("treatment", "sum", "helmert", "poly")
_ALIASES = {**{k: k for k in KINDS}, **{f"contr.{k}": k for k in KINDS},
            "Treatment": "treatment", "Sum": "sum", "Helmert": "helmert", "Poly": "poly"}


@dataclass(frozen=True)
class ContrastSpec:
    """One factor's contrasts: ``kind`` (one of :data:`KINDS`) and, for treatment,
    the reference level (None: the first level).

    Examples
    --------
    >>> ContrastSpec("treatment", "b").describe()
    "treatment (reference 'b')"
    """

    kind: str
    reference: Any = None

    def describe(self) -> str:
        return self.kind + ("" if self.reference is None else f" (reference {self.reference!r})")

    def to_plain(self) -> list[Any]:
        """``[kind]`` or ``[kind, reference]``: a value a saved result can hold."""
        return [self.kind] if self.reference is None else [self.kind, self.reference]


def parse_contrast(spec: object, column: str) -> ContrastSpec:
    """A :class:`ContrastSpec` from what a user writes for ``column``.

    Accepted: ``"contr.treatment"``/``"treatment"``, ``"contr.sum"``/``"sum"``,
    ``"contr.helmert"``/``"helmert"``, ``"contr.poly"``/``"poly"`` (R's names, also
    ``"Sum"`` etc.), a pair ``("treatment", level)`` naming the reference level, or a
    :class:`ContrastSpec`.

    Examples
    --------
    >>> parse_contrast("contr.sum", "x"), parse_contrast(("treatment", "b"), "x")
    (ContrastSpec(kind='sum', reference=None), ContrastSpec(kind='treatment', reference='b'))
    >>> parse_contrast("contr.nonesuch", "x")
    Traceback (most recent call last):
    ...
    hierlm.errors.FormulaError: contrasts for 'x': unknown contrasts 'contr.nonesuch'; use \
one of contr.treatment, contr.sum, contr.helmert, contr.poly (or ('treatment', level))
    """
    if isinstance(spec, ContrastSpec):
        if spec.kind not in KINDS:
            raise FormulaError(f"contrasts for '{column}': unknown kind {spec.kind!r}")
        return spec
    if isinstance(spec, (list, tuple)) and len(spec) in (1, 2) and isinstance(spec[0], str):
        base = parse_contrast(spec[0], column)
        if len(spec) == 1:
            return base
        if base.kind != "treatment":
            raise FormulaError(f"contrasts for '{column}': only treatment contrasts take a "
                               f"reference level, got {tuple(spec)!r}")
        return ContrastSpec("treatment", spec[1])
    if isinstance(spec, str) and spec.strip() in _ALIASES:
        return ContrastSpec(_ALIASES[spec.strip()])
    raise FormulaError(f"contrasts for '{column}': unknown contrasts {spec!r}; use one of "
                       f"contr.treatment, contr.sum, contr.helmert, contr.poly "
                       f"(or ('treatment', level))")


def parse_contrasts(contrasts: object) -> dict[str, ContrastSpec]:
    """The ``contrasts=`` argument of ``fit``/``Model``: column name -> ContrastSpec.

    Examples
    --------
    >>> parse_contrasts({"x": "sum"})
    {'x': ContrastSpec(kind='sum', reference=None)}
    """
    if contrasts is None:
        return {}
    if not isinstance(contrasts, Mapping):
        raise FormulaError(f"contrasts must be a dict of column name -> contrasts, as R's "
                           f"list(x = 'contr.sum'), got {type(contrasts).__name__}")
    return {str(k): parse_contrast(v, str(k)) for k, v in contrasts.items()}


def poly_matrix(k: int) -> np.ndarray:
    """R's ``contr.poly(k)``: orthonormal polynomial contrasts on scores ``1..k``."""
    scores = np.arange(1.0, k + 1.0)
    V = np.vander(scores - scores.mean(), k, increasing=True)
    Q, R = np.linalg.qr(V)
    Z = Q * np.sign(np.diag(R))
    Z = Z / np.linalg.norm(Z, axis=0)
    return Z[:, 1:]


def poly_names(k: int) -> tuple[str, ...]:
    """R's column names of ``contr.poly(k)``: ``.L``, ``.Q``, ``.C``, ``^4``, ..."""
    return tuple([".L", ".Q", ".C"][j] if j < 3 else f"^{j + 1}" for j in range(k - 1))


def contrast_matrix(spec: ContrastSpec, labels: Sequence[str],
                    reference: int | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """The ``k x (k - 1)`` contrast matrix of ``spec`` on levels ``labels``, with R's
    column names; ``reference`` is the index of treatment's base level (default 0).

    Examples
    --------
    >>> M, names = contrast_matrix(ContrastSpec("sum"), ["a", "b", "c"])
    >>> M.tolist(), names
    ([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], ('1', '2'))
    """
    k = len(labels)
    numbered = tuple(str(j) for j in range(1, k))
    if spec.kind == "treatment":
        base = 0 if reference is None else reference
        keep = [j for j in range(k) if j != base]
        return np.eye(k)[:, keep], tuple(labels[j] for j in keep)
    if spec.kind == "sum":
        M = np.vstack([np.eye(k - 1), -np.ones((1, k - 1))])
        return M, numbered
    if spec.kind == "helmert":
        M = np.zeros((k, k - 1))
        for j in range(k - 1):
            M[: j + 1, j] = -1.0
            M[j + 1, j] = j + 1.0
        return M, numbered
    if spec.kind == "poly":
        return poly_matrix(k), poly_names(k)
    raise FormulaError(f"unknown contrasts {spec.kind!r}")  # parse_contrast keeps this out
