"""NUTS as an estimator: the posterior, sampled on the marginal likelihood.

``method="nuts"`` samples ``beta``, ``sigma`` and the covariance parameters with the
random effects integrated out (:func:`hierlm.estimate.nuts.sample`; with a residual
structure :func:`hierlm.estimate.nuts_residual_fit.sample_with_residual`).  Its
arguments are the sampler's keyword arguments; the data must be held in memory.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hierlm.errors import MethodError
from hierlm.estimate.estimator import FitProblem
from hierlm.estimate.kind import NUTS, EstimatorKind
from hierlm.estimate.record import FitRecord

__all__ = ["NUTS_ESTIMATOR", "NutsEstimator"]


def check_arguments(name: str, sample: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """One MethodError naming the unknown arguments and listing the valid ones.

    Examples
    --------
    >>> def sample(objective, *, draws=1000, chains=4): ...
    >>> check_arguments("nuts", sample, {"draws": 10})
    >>> check_arguments("nuts", sample, {"draw": 10})
    Traceback (most recent call last):
    ...
    hierlm.errors.MethodError: unexpected argument(s) for method='nuts': draw; ...
    """
    valid = [arg for arg, par in inspect.signature(sample).parameters.items()
             if par.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise MethodError(f"unexpected argument(s) for method={name!r}: {', '.join(unknown)}; "
                          f"valid arguments: {', '.join(valid)}")


@dataclass(frozen=True)
class NutsEstimator:
    """The NUTS posterior (module docstring).

    Examples
    --------
    >>> NUTS_ESTIMATOR.name, NUTS_ESTIMATOR.kind.posterior
    ('nuts', True)
    """

    name: str = "nuts"
    kind: EstimatorKind = NUTS

    def fit(self, problem: FitProblem, *, start: np.ndarray | None = None,
            options: dict[str, Any] | None = None, **kwargs: Any) -> FitRecord:
        """Sample the posterior; ``kwargs`` are :func:`hierlm.estimate.nuts.sample`'s
        (``start`` and ``options``, REML/ML's, are not used)."""
        if not problem.in_memory:
            raise MethodError(f"method={self.name!r} needs the data in memory; data read in "
                              f"chunks (parquet or Dask) are fitted by 'reml' or 'ml'")
        # imported here: PyMC and ArviZ load only when a model is sampled
        from hierlm.estimate.nuts import sample

        check_arguments(self.name, sample, kwargs)
        if problem.residual is not None:
            from hierlm.estimate.nuts_residual_fit import sample_with_residual

            return sample_with_residual(problem.objective, problem.residual, **kwargs)
        return sample(problem.objective, **kwargs)


NUTS_ESTIMATOR = NutsEstimator()
