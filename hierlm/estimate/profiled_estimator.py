"""REML and ML as estimators: the profiled criterion's optimum in theta (or psi).

``method="reml"`` minimizes lme4's REML criterion, ``method="ml"`` the deviance
``-2 log L``, both profiled over ``beta`` and ``sigma``
(:func:`hierlm.estimate.frequentist.fit_profiled`); with a residual structure
(``residual=`` / ``sigma=``) the criterion is profiled over its parameters too
(:func:`hierlm.estimate.residual_fit.fit_residual`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hierlm.errors import MethodError
from hierlm.estimate.estimator import FitProblem
from hierlm.estimate.kind import ML, REML, EstimatorKind
from hierlm.estimate.record import FitRecord

__all__ = ["ML_ESTIMATOR", "REML_ESTIMATOR", "ProfiledEstimator"]


@dataclass(frozen=True)
class ProfiledEstimator:
    """REML (``kind=REML``) or ML (``kind=ML``) by the profiled criterion.

    Examples
    --------
    >>> import hierlm
    >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> rec = REML_ESTIMATOR.fit(FitProblem(m.objective))
    >>> rec.method, rec.is_reml, round(rec.objective, 4)
    ('REML', True, 1743.6283)
    """

    name: str
    kind: EstimatorKind

    def __post_init__(self) -> None:
        if not self.kind.is_likelihood_fit:
            raise MethodError(f"a profiled estimator optimizes REML or ML, not {self.kind}")

    def fit(self, problem: FitProblem, *, start: np.ndarray | None = None,
            options: dict[str, Any] | None = None, **kwargs: Any) -> FitRecord:
        """Optimize the criterion (module docstring); no arguments besides ``start`` and
        ``options``."""
        if kwargs:
            raise MethodError(f"unexpected argument(s) for method={self.name!r}: "
                              f"{', '.join(sorted(kwargs))}")
        reml = self.kind.is_reml
        if problem.residual is not None:
            from hierlm.estimate.residual_fit import fit_residual

            return fit_residual(problem.design, problem.residual, reml=reml, start=start,
                                options=options)
        # imported here: ``import hierlm`` loads the registry, not the optimizers
        from hierlm.estimate.frequentist import fit_profiled

        return fit_profiled(problem.objective, reml=reml, start=start, options=options)


REML_ESTIMATOR = ProfiledEstimator("reml", REML)
ML_ESTIMATOR = ProfiledEstimator("ml", ML)
