"""A test-only estimator in a file of its own: REML started from the ML estimate.

Importing this module registers ``method="reml-from-ml"``; nothing in hierlm is edited
for it.  Its records are labelled ``"REML-ML"`` and are of a REML kind, so every
module after the fit treats them as REML fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hierlm.estimate.estimator import FitProblem
from hierlm.estimate.kind import Criterion, EstimatorKind
from hierlm.estimate.lazy import stored_fields
from hierlm.estimate.profiled_estimator import ML_ESTIMATOR, REML_ESTIMATOR
from hierlm.estimate.record import FitRecord
from hierlm.estimate.registry import register

KIND = EstimatorKind("REML-ML", Criterion.REML)


@dataclass(frozen=True)
class RemlFromMl:
    """Fit by ML, then by REML from the ML estimate of theta."""

    name: str = "reml-from-ml"
    kind: EstimatorKind = KIND

    def fit(self, problem: FitProblem, *, start: np.ndarray | None = None,
            options: dict[str, Any] | None = None, **kwargs: Any) -> FitRecord:
        ml = ML_ESTIMATOR.fit(problem, start=start, options=options, **kwargs)
        rec = REML_ESTIMATOR.fit(problem, start=ml.theta, options=options)
        return FitRecord(**{**stored_fields(rec), "method": self.kind.label})


ESTIMATOR = register(RemlFromMl())
