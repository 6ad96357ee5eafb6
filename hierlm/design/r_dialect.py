"""R's meaning of the functions an lme4 user writes in a formula, in formulae's dialect.

formulae evaluates the fixed part; where its meaning differs from R's, the formula is
rewritten first: ``scale(x)`` is R's (centre, divide by the *sample* SD,
``(x - mean) / sd(x)`` with ``ddof = 1``; formulae's own divides by the population SD),
``log``, ``exp``, ``sqrt`` and friends need no ``np.`` prefix.  R's ``^`` (a syntax
error in formulae) is translated before: inside a call it is the power ``**``
(:func:`hierlm.design.names.to_python`), between terms R's interaction power
(:mod:`hierlm.design.rterms`).
"""

from __future__ import annotations

import re

import numpy as np

from hierlm.errors import FormulaError


class RScale:
    """R's ``scale(x)``: centre by the mean and divide by the *sample* SD (``ddof=1``).

    A formulae stateful transform (the mean and SD of the fitting data are kept for new
    data).  formulae's own ``scale`` divides by the population SD, so hierlm rewrites
    ``scale(`` to this transform (see :func:`to_formulae`).

    Examples
    --------
    >>> RScale()(np.array([1.0, 2.0, 3.0])).tolist()
    [-1.0, 0.0, 1.0]
    """

    __stateful_transform__ = True

    def __init__(self) -> None:
        self.params: tuple[float, float] | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.params is None:
            self.params = (float(np.mean(x)), float(np.std(x, ddof=1)))
        mean, sd = self.params
        return (np.asarray(x, dtype=float) - mean) / sd


# Functions an R user writes without a prefix (``log(x)``), and R's ``scale``.
R_NAMESPACE: dict[str, object] = {
    "log": np.log, "exp": np.exp, "sqrt": np.sqrt, "log10": np.log10, "log2": np.log2,
    "log1p": np.log1p, "abs": np.abs, "r_scale_": RScale,
}
_SCALE_CALL = re.compile(r"(?<![\w.])scale\(")


def to_formulae(expr: str) -> str:
    """An expression in formulae's dialect: R's ``scale(`` -> ``r_scale_(``.

    ``^`` raises FormulaError: formulae writes powers and interaction powers as ``**``.

    Examples
    --------
    >>> to_formulae("scale(x) + np.scale(z)")
    'r_scale_(x) + np.scale(z)'
    """
    if "^" in expr:
        raise FormulaError(f"'^' in {expr!r}: write powers as '**', e.g. I(x**2), and "
                           f"(a + b)**2 for all interactions up to degree 2")
    return _SCALE_CALL.sub("r_scale_(", expr)
