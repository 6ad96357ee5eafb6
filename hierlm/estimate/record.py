"""The typed record an estimator returns: the estimates of one fit, plain values only.

The estimators (:mod:`hierlm.estimate.frequentist`, :mod:`hierlm.estimate.nuts`)
produce a :class:`FitRecord`; :class:`hierlm.results.result.FitResult` is the same
record with the methods of the public face (summary, predict, confint, save, ...), made
from it by :meth:`~hierlm.results.result.FitResult.from_record`.  Keeping the record
here lets the estimators, and the layers below the results, do without
:mod:`hierlm.results`.  ``method`` is the estimator's label; what the estimates are
(REML or ML optimum, posterior summary) is :attr:`FitRecord.kind`
(:mod:`hierlm.estimate.kind`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hierlm.estimate.kind import EstimatorKind, kind_of
from hierlm.estimate.lazy import deferred, lazy_fields
from hierlm.estimate.nuts_info import NutsInfo


@dataclass(frozen=True, eq=False)
class FitRecord:
    """The fields of a fitted linear mixed model (see :class:`hierlm.FitResult`).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.estimate.frequentist import fit_profiled
    >>> from hierlm.objective import compile_objective
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> rec = fit_profiled(compile_objective(d), reml=True)
    >>> type(rec).__name__, round(rec.sigma, 3)
    ('FitRecord', 25.592)
    """

    formula: str
    method: str
    fixef: pd.Series
    fixef_se: pd.Series
    vcov: pd.DataFrame
    sigma: float
    theta: np.ndarray
    varcorr: pd.DataFrame
    loglik: float
    aic: float
    bic: float
    objective: float
    nobs: int
    n_dropped: int
    is_singular: bool
    converged: bool
    ranef_table: pd.DataFrame
    y: np.ndarray | None
    fitted_values: np.ndarray | None
    groups: dict[str, int]
    n_evals: int
    optimizer: dict[str, Any] = field(default_factory=dict)
    messages: tuple[str, ...] = ()
    idata: Any = None
    nuts: NutsInfo | None = None
    model: Any = field(default=None, repr=False)
    coder: Any = field(default=None, repr=False)
    row_labels: Any = None
    dropped_rows: Any = None
    # (an empty Series built on first read: pandas takes 0.05-0.1 ms to make one)
    residual_parameters: pd.Series = field(default_factory=lambda: deferred(lambda: pd.Series(
        dtype=float, name="residual_parameters")))
    residual_scale: np.ndarray | None = None
    residual: str | None = None
    sigma_formula: str | None = None

    covariance_parameters: pd.Series | None = None

    @property
    def n_covariance_parameters(self) -> int:
        """Number of covariance parameters (the structures' psi; theta when unstructured)."""
        if self.covariance_parameters is not None:
            return len(self.covariance_parameters)
        return len(self.theta)

    @property
    def kind(self) -> EstimatorKind:
        """What the estimates are (:mod:`hierlm.estimate.kind`), from :attr:`method`."""
        return kind_of(self.method)

    @property
    def is_reml(self) -> bool:
        """The estimates optimize the REML criterion."""
        return self.kind.is_reml

    @property
    def is_ml(self) -> bool:
        """The estimates maximize the likelihood."""
        return self.kind.is_ml

    @property
    def is_likelihood_fit(self) -> bool:
        """The estimates optimize the REML criterion or the likelihood (not a posterior)."""
        return self.kind.is_likelihood_fit

    @property
    def is_posterior(self) -> bool:
        """The estimates summarize posterior draws (``idata``)."""
        return self.kind.posterior

    @property
    def extra(self) -> dict[str, Any]:
        """Deprecated: the fields of :attr:`nuts` as a dict (empty for REML/ML fits).

        Read ``res.nuts.<field>`` instead; this copy is kept for code written before
        :class:`~hierlm.estimate.nuts_info.NutsInfo`.
        """
        warnings.warn("FitResult.extra is deprecated; read the typed FitResult.nuts "
                      "(hierlm.estimate.nuts_info.NutsInfo) instead", DeprecationWarning,
                      stacklevel=2)
        return {} if self.nuts is None else self.nuts.as_dict()


# Computed on first read when an estimator passes them deferred (hierlm.estimate.lazy).
lazy_fields(FitRecord, "fixef", "fixef_se", "vcov", "varcorr", "ranef_table", "fitted_values",
            "covariance_parameters", "residual_parameters", "row_labels", "dropped_rows")
