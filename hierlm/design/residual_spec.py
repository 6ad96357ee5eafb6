"""The ``residual=`` and ``sigma=`` strings: parsed, never evaluated.

A residual (R-side) structure is nlme's: the residual covariance of the observations is
``sigma^2 S C S``, with ``S = diag(s_i)`` the residual SDs relative to ``sigma`` and
``C`` block diagonal by group:

* ``ar1(visit | subject)``: ``C[i, j] = phi^|visit_i - visit_j|`` within a subject,
  ``visit`` integer-valued, gaps allowed (nlme's ``corAR1(form = ~ visit | subject)``);
* ``car1(time | subject)``: the same with real times, ``0 <= phi < 1`` (``corCAR1``);
* ``cs(1 | subject)``: ``C[i, j] = rho`` for ``i != j`` within a subject
  (``corCompSymm(form = ~ 1 | subject)``).

``sigma="~ a + b"`` is a log-linear model of the relative SDs: ``log s_i = x_i' delta``
with ``x_i`` the row of the right-hand side's model matrix without its intercept (the
reference level has ``s = 1``).  With one factor it is nlme's ``varIdent(form = ~ 1 |
a)``: ``exp(delta_g)`` is nlme's SD ratio of level ``g``.

The structure strings are matched by a small grammar (a function name, a column or
``1``, a bar, a column), so nothing in them is ever run; the ``sigma=`` right-hand side
is checked by :func:`hierlm.design.formula_safety.check_expression` and coded by the
same model-matrix code as the fixed part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hierlm.design.formula_safety import check_expression
from hierlm.errors import DataError, FormulaError

#: The residual correlation structures and what they are in nlme.
STRUCTURES = {"ar1": "corAR1", "car1": "corCAR1", "cs": "corCompSymm"}
_NAME = r"[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`"
_SPEC = re.compile(rf"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(\s*({_NAME}|1)\s*\|\s*({_NAME})\s*\)\s*$")


@dataclass(frozen=True)
class ResidualSpec:
    """A parsed ``residual=`` string.

    Attributes
    ----------
    kind : {"ar1", "car1", "cs"}
        The correlation structure.
    time : str or None
        The time (``ar1``, ``car1``) column; None for ``cs``.
    group : str
        The grouping column: observations of different groups are uncorrelated.
    """

    kind: str
    time: str | None
    group: str

    @property
    def text(self) -> str:
        """The structure as written canonically, e.g. ``"ar1(visit | subject)"``."""
        return f"{self.kind}({self.time or 1} | {self.group})"

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.group,) if self.time is None else (self.time, self.group)


def _unquote(name: str) -> str:
    return name[1:-1] if name.startswith("`") else name


def parse_residual(text: object) -> ResidualSpec:
    """Parse ``"ar1(visit | subject)"``, ``"car1(time | subject)"`` or ``"cs(1 | subject)"``.

    Examples
    --------
    >>> parse_residual("ar1(visit | subject)")
    ResidualSpec(kind='ar1', time='visit', group='subject')
    >>> parse_residual("cs(1|plot)").text
    'cs(1 | plot)'
    >>> parse_residual("arma(visit | subject)")
    Traceback (most recent call last):
    ...
    hierlm.errors.FormulaError: unknown residual structure 'arma' in 'arma(visit | subject)'; \
use one of ar1(time | group), car1(time | group), cs(1 | group)
    """
    if not isinstance(text, str):
        raise FormulaError(f"residual= must be a string such as 'ar1(visit | subject)', "
                           f"not {type(text).__name__}")
    usage = "use one of ar1(time | group), car1(time | group), cs(1 | group)"
    m = _SPEC.match(text)
    if m is None:
        raise FormulaError(f"cannot parse residual structure {text!r}; {usage}")
    kind, time, group = m.group(1).lower(), m.group(2), _unquote(m.group(3))
    if kind not in STRUCTURES:
        raise FormulaError(f"unknown residual structure {m.group(1)!r} in {text!r}; {usage}")
    if kind == "cs":
        if time != "1":
            raise FormulaError(f"cs() takes no time: write 'cs(1 | {group})', not {text!r}")
        return ResidualSpec(kind, None, group)
    if time == "1":
        raise FormulaError(f"{kind}() needs a time column: '{kind}(time | {group})', "
                           f"not {text!r}")
    return ResidualSpec(kind, _unquote(time), group)


def parse_sigma(text: object) -> str:
    """The right-hand side of a ``sigma=`` formula (``"~ group"`` -> ``"group"``), checked.

    Examples
    --------
    >>> parse_sigma("~ Sex")
    'Sex'
    >>> parse_sigma("Sex")
    Traceback (most recent call last):
    ...
    hierlm.errors.FormulaError: sigma= is a one-sided formula such as '~ group', not 'Sex'
    """
    if not isinstance(text, str) or not text.strip().startswith("~"):
        raise FormulaError(f"sigma= is a one-sided formula such as '~ group', not {text!r}")
    rhs = text.strip()[1:].strip()
    if not rhs or "|" in rhs or "~" in rhs:
        raise FormulaError(f"sigma= is a one-sided formula of fixed terms such as "
                           f"'~ group', not {text!r}")
    check_expression(rhs, "sigma= formula")
    return rhs


def check_times(spec: ResidualSpec, time: pd.Series, group_codes: np.ndarray) -> np.ndarray:
    """The time column as floats, with nlme's rules: finite, unique within a group and,
    for ``ar1``, integer-valued.

    Examples
    --------
    >>> s = parse_residual("ar1(visit | id)")
    >>> check_times(s, pd.Series([1, 2, 4]), np.array([0, 0, 0])).tolist()
    [1.0, 2.0, 4.0]
    >>> check_times(s, pd.Series([1, 2, 2]), np.array([0, 0, 0]))
    Traceback (most recent call last):
    ...
    hierlm.errors.DataError: residual ar1(visit | id): time 'visit' repeats within a group \
of 'id' (first at 'visit' = 2.0 in row 2); each observation of a group needs its own time
    """
    name = spec.time
    if not pd.api.types.is_numeric_dtype(time) or pd.api.types.is_bool_dtype(time):
        raise DataError(f"residual {spec.text}: time column '{name}' must be numeric, "
                        f"not {time.dtype}")
    t = time.to_numpy(dtype=float)
    if not np.all(np.isfinite(t)):
        raise DataError(f"residual {spec.text}: time column '{name}' has missing or "
                        f"non-finite values")
    if spec.kind == "ar1" and not np.all(t == np.round(t)):
        bad = int(np.flatnonzero(t != np.round(t))[0])
        raise DataError(f"residual {spec.text}: ar1 needs integer visits, but '{name}' is "
                        f"{float(t[bad])!r} in row {bad}; use car1({name} | {spec.group}) "
                        f"for real times")
    order = np.lexsort((t, group_codes))
    same = (np.diff(group_codes[order]) == 0) & (np.diff(t[order]) == 0)
    if np.any(same):
        row = int(order[1:][same][0])
        raise DataError(f"residual {spec.text}: time '{name}' repeats within a group of "
                        f"'{spec.group}' (first at '{name}' = {float(t[row])!r} in row {row}); "
                        f"each observation of a group needs its own time")
    return t
