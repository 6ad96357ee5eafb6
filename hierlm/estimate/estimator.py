"""The protocol every estimator follows: a name, a kind, and ``fit(problem) -> FitRecord``.

:meth:`hierlm.Model.fit` looks the method up in :mod:`hierlm.estimate.registry` and
calls its estimator; it does not branch on the method.  A new estimation method is a
new module with one object following :class:`Estimator`, registered with
:func:`hierlm.estimate.registry.register`::

    class MyEstimator:
        name = "mine"                                   # method="mine"
        kind = EstimatorKind("MINE", Criterion.REML)    # the records' method and kind

        def fit(self, problem, *, start=None, options=None, **kwargs):
            ...                                          # -> FitRecord

    register(MyEstimator())

The record it returns carries ``method = kind.label``; every module after the fit asks
the record's kind (``res.is_reml``, ``res.is_posterior``, ...,
:mod:`hierlm.estimate.kind`), never compares the label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hierlm.design.chunked import ChunkedDesign
from hierlm.design.residual_design import ResidualDesign
from hierlm.design.terms import ModelDesign
from hierlm.estimate.kind import EstimatorKind
from hierlm.estimate.record import FitRecord
from hierlm.objective.profiled import ProfiledObjective

__all__ = ["Estimator", "FitProblem"]


@dataclass(frozen=True)
class FitProblem:
    """What an estimator fits: a model's compiled objective and its residual structure.

    Parameters
    ----------
    objective : ProfiledObjective
        The compiled profiled objective; its ``design`` is the model's design.
    residual : ResidualDesign or None
        The ``residual=`` / ``sigma=`` structure, or None.

    Examples
    --------
    >>> import hierlm
    >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> problem = FitProblem(m.objective)
    >>> problem.design.nobs, problem.in_memory
    (180, True)
    """

    objective: ProfiledObjective
    residual: ResidualDesign | None = None

    @property
    def design(self) -> ModelDesign:
        """The model's design."""
        return self.objective.design

    @property
    def in_memory(self) -> bool:
        """Whether the rows are held (False for data read in chunks: parquet, Dask)."""
        return not isinstance(self.objective.design, ChunkedDesign)


@runtime_checkable
class Estimator(Protocol):
    """An estimation method (module docstring).

    Attributes
    ----------
    name : str
        The ``method=`` it answers to (lower case; matched case-insensitively).
    kind : EstimatorKind
        What its records' estimates are; their ``method`` is ``kind.label``.
    """

    @property
    def name(self) -> str:
        """The ``method=`` name."""
        ...

    @property
    def kind(self) -> EstimatorKind:
        """What the records' estimates are."""
        ...

    def fit(self, problem: FitProblem, *, start: np.ndarray | None = None,
            options: dict[str, Any] | None = None, **kwargs: Any) -> FitRecord:
        """Fit ``problem``; ``start`` and ``options`` as :meth:`hierlm.Model.fit`,
        ``kwargs`` the method's own arguments (an unknown one: MethodError)."""
        ...
