"""Stage 4: the fitted-model value returned by :func:`hierlm.fit`.

A frozen dataclass of plain values (numpy arrays, pandas objects); nothing in it
refers back to the compiled graph, so it can be saved, compared and passed around.
``ranef_table``, ``varcorr`` and ``fitted_values`` are computed when first read
(:mod:`hierlm.estimate.lazy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierlm.estimate.lazy import field_names, stored_fields
from hierlm.estimate.record import FitRecord
from hierlm.results.inference_methods import InferenceMixin
from hierlm.results.io import save as save_result
from hierlm.results.results_section import ResultsSectionMixin
from hierlm.results.summary import format_summary


@dataclass(frozen=True, eq=False)
class FitResult(FitRecord, InferenceMixin, ResultsSectionMixin):
    """A fitted linear mixed model.

    Attributes
    ----------
    formula : str
        The model formula.
    method : str
        ``"REML"``, ``"ML"`` or ``"NUTS"`` (or the label of another registered
        estimator, :mod:`hierlm.estimate.registry`).  What the estimates are is asked
        of ``kind`` (:class:`hierlm.estimate.kind.EstimatorKind`) and the properties
        ``is_reml``, ``is_ml``, ``is_likelihood_fit`` (REML or ML) and
        ``is_posterior`` (NUTS), not of this label.
    fixef, fixef_se : pandas.Series
        Fixed-effect estimates and standard errors, by coefficient name.
    vcov : pandas.DataFrame
        Covariance matrix of the fixed-effect estimates.
    sigma : float
        Residual standard deviation.
    theta : ndarray
        Relative covariance factor parameters, lme4's packing (for a structured
        covariance, the template its parameters imply).
    covariance_parameters : pandas.Series or None
        Each term's own covariance parameters on the response scale, named
        ``"<group>: <parameter>"``: SDs (``sd_<column>``, or ``sd`` for a homogeneous
        structure), correlations (``cor_<a>.<b>`` of an unstructured term, ``rho`` of
        ``cs``/``ar1``, ``rho_lag<k>`` of ``toep``); None for NUTS fits.
    varcorr : pandas.DataFrame
        ``group, term1, term2, variance_or_cov, sd_or_corr``; residual row last.
    loglik, aic, bic : float
        As lme4 (REML fits report the REML log-likelihood).
    objective : float
        lme4's REML criterion (REML) or deviance (ML).
    nobs, n_dropped : int
        Observations used, and rows dropped for missing values.
    is_singular, converged : bool
        lme4's ``isSingular`` (a template diagonal below 1e-4); optimizer convergence.
    ranef_table : pandas.DataFrame
        ``group, level, term, value, cond_sd`` (see :meth:`ranef`).
    y, fitted_values : ndarray or None
        Response and fitted values ``X beta + Z b`` of the observations used; None for
        data read in chunks (parquet, Dask), which are never held whole.
    groups : dict
        Number of levels of each grouping factor.
    n_evals : int
        Objective evaluations used by the optimizer.
    optimizer : dict
        The optimizer's method, message, final projected gradient and trace.
    messages : tuple of str
        Warnings issued during the fit.
    idata : object
        ArviZ DataTree for ``method="nuts"``, else None.
    nuts : NutsInfo or None
        A NUTS fit's sampler settings, priors and convergence diagnostics
        (:class:`hierlm.estimate.nuts_info.NutsInfo`); None for REML/ML fits.
    model : hierlm.Model or None
        The model that was fitted (its design and compiled objective), so that
        inference after the fit (profiles, bootstrap, refits) can reuse the compiled
        graph.  Not saved: a result read back with :func:`hierlm.load` has None.
    coder : NewDataCoder or None
        How the data were coded (:mod:`hierlm.design.newdata`), so that new rows
        can be coded the same way; saved with the result.
    row_labels, dropped_rows : pandas.Index or None
        The caller's row labels of the observations used, and of the rows dropped
        (missing values, zero weights).
    residual_parameters : pandas.Series
        Residual-structure parameters (``residual=``, ``sigma=``): ``"rho"`` (the AR(1)
        phi or the compound-symmetry correlation), then ``"log_sd_ratio:<column>"``
        for each coefficient of the log-SD model; empty without them.  With them
        ``sigma`` is the reference level's residual SD (nlme's ``sigma(fit)``).
    residual_scale : ndarray or None
        Each observation's residual SD over ``sigma`` (see :meth:`residual_sd`).
    residual, sigma_formula : str or None
        The ``residual=`` structure and ``sigma=`` formula of the fit.
    """

    @classmethod
    def from_record(cls, record: FitRecord, **changes: Any) -> FitResult:
        """The public face of an estimator's record, with ``changes`` to its fields.

        Examples
        --------
        >>> import hierlm
        >>> from hierlm.estimate.frequentist import fit_profiled
        >>> from hierlm.objective import compile_objective
        >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> res = FitResult.from_record(fit_profiled(compile_objective(d), reml=True))
        >>> res.fixef.round(3).to_dict()
        {'(Intercept)': 251.405, 'Days': 10.467}
        """
        values = stored_fields(record)  # deferred fields stay deferred
        if (field_names(type(record)) != field_names(cls)
                or not changes.keys() <= values.keys()):
            return cls(**{**values, **changes})  # (the dataclass's own errors)
        values.update(changes)
        # every field given: what the frozen dataclass's __init__ would store, written at
        # once (it sets the fields one by one through object.__setattr__; FitResult has
        # no __post_init__)
        out = object.__new__(cls)
        vars(out).update(values)
        return out

    def ranef(self) -> pd.DataFrame:
        """Conditional modes of the random effects and their conditional SDs.

        Returns
        -------
        pandas.DataFrame
            Columns ``group, level, term, value, cond_sd`` (lme4's
            ``as.data.frame(ranef(fit, condVar = TRUE))``).  For NUTS fits, the
            posterior mean and SD.

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> res.ranef().columns.tolist()
        ['group', 'level', 'term', 'value', 'cond_sd']
        """
        return self.ranef_table.copy()

    def fitted(self) -> pd.Series:
        """Fitted values ``offset + X beta + Z b``, indexed by the caller's row labels.

        Rows dropped in fitting are listed in ``dropped_rows``.  For data read in chunks
        the values are lazy: a Dask Series, or for parquet a
        :class:`~hierlm.predict.chunked_predict.ChunkedSeries` (see ``docs/scale.md``).

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> res.fitted().round(2).head(2).to_dict()
        {0: 253.66, 1: 273.33}
        """
        if self._lazy():
            return self._lazily("fitted")
        return pd.Series(self._fitted_values().copy(), index=self._rows(), name="fitted")

    def residuals(self) -> pd.Series:
        """Response minus fitted values, indexed by the caller's row labels (lazy, as
        :meth:`fitted`, for data read in chunks)."""
        if self._lazy():
            return self._lazily("residuals")
        return pd.Series(self.y - self._fitted_values(), index=self._rows(), name="residuals")

    def residual_sd(self) -> pd.Series:
        """The residual SD of each observation, indexed like :meth:`fitted`.

        ``sigma`` times each row's SD ratio under ``sigma=`` (nlme's
        ``attr(residuals(fit), "std")``); ``sigma`` for every row without one.

        Examples
        --------
        >>> import hierlm
        >>> d = hierlm.load_sleepstudy()
        >>> d["late"] = (d["Days"] > 4).map({True: "late", False: "early"})
        >>> res = hierlm.fit("Reaction ~ Days + (1 | Subject)", d, sigma="~ late")
        >>> sd = res.residual_sd()
        >>> bool(sd.iloc[0] == res.sigma), sd.index.equals(res.fitted().index)
        (True, True)
        """
        scale = np.ones(self.nobs) if self.residual_scale is None else self.residual_scale
        return pd.Series(self.sigma * np.asarray(scale), index=self._rows(), name="residual_sd")

    def _fitted_values(self) -> np.ndarray:
        self._require_rows("fitted values and residuals")
        assert self.fitted_values is not None
        return self.fitted_values

    def _lazy(self) -> bool:
        """Whether the fit is of data read in chunks, with its model: values are lazy."""
        return self.y is None and self.model is not None

    def _lazily(self, kind: str, *args: Any) -> Any:
        from hierlm.predict.chunked_predict import predict_lazily

        return predict_lazily(self, kind, *args)

    def _require_rows(self, what: str) -> None:
        """MethodError for a fit from data read in chunks (parquet, Dask): no rows kept."""
        if self.y is None:
            from hierlm.errors import MethodError

            raise MethodError(f"{what} needs the rows of the data, which a fit from data "
                              f"read in chunks (parquet or Dask) does not keep; fit a data "
                              f"frame in memory for it")

    def _rows(self) -> pd.Index:
        return pd.RangeIndex(self.nobs) if self.row_labels is None else self.row_labels

    # --- prediction, simulation, marginal moments (hierlm.predict) -----------------------
    def predict(self, newdata: pd.DataFrame | None = None, re_form: str | None = None,
                allow_new_levels: bool = False, interval: str | None = None,
                level: float = 0.95, draws: bool = False) -> Any:
        """Predictions, optionally with intervals; see :mod:`hierlm.predict.predict`.

        Parameters
        ----------
        newdata : pandas.DataFrame, optional
            Rows to predict (default: the fitting rows), checked as fitting data are.
            For a fit of data read in chunks, the fitting rows or ``newdata`` given as a
            parquet path, pyarrow Dataset or Dask DataFrame are predicted lazily, chunk
            by chunk, without intervals (:mod:`hierlm.predict.chunked_predict`).
        re_form : str or None
            None: conditional on every random term (lme4's default); ``"~0"``: population
            level (grouping columns not needed); a formula such as ``"~(1 | Subject)"``:
            only those terms.
        allow_new_levels : bool
            Give levels not seen in fitting random effect 0 instead of a DataError.
        interval : {None, "confidence", "prediction"}
            ``"confidence"``: for ``x'beta + z'b`` given theta and sigma (Henderson's
            prediction-error variance); ``"prediction"``: for a new observation of the
            row, adding ``sigma^2 / w`` and the variance of every random effect not
            conditioned on (new levels, terms left out).  Neither propagates the
            uncertainty of theta and sigma.  NUTS: central posterior(-predictive) intervals.
        level : float
            Coverage of the interval.
        draws : bool
            NUTS only: also return the ``(draws, rows)`` array of draws.

        Returns
        -------
        pandas.Series or pandas.DataFrame
            ``fit`` indexed like the rows; with ``interval``, columns ``fit, lower, upper``.

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> new = pd.DataFrame({"Days": [0, 9], "Subject": ["308", "new"]})
        >>> res.predict(new, allow_new_levels=True).round(2).tolist()
        [253.66, 345.61]
        """
        if self._lazy():
            from hierlm.predict.chunked_predict import lazy_predict

            lazy = lazy_predict(self, newdata, re_form, allow_new_levels, interval, draws)
            if lazy is not None:  # else newdata is a data frame: predicted in memory
                return lazy
        else:
            self._require_rows("predict()")
        from hierlm.predict.predict import predict

        return predict(self, newdata, re_form, allow_new_levels, interval, level, draws)

    def simulate(self, nsim: int = 1, seed: int | None = None,
                 newdata: pd.DataFrame | None = None, re_form: str | None = "~0"
                 ) -> pd.DataFrame:
        """Simulated responses (lme4's ``simulate``); see :mod:`hierlm.predict.simulate`.

        By default every group gets new random effects; ``re_form=None`` uses the
        fitted conditional modes.

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> res.simulate(nsim=2, seed=1).shape
        (180, 2)
        """
        self._require_rows("simulate()")
        from hierlm.predict.simulate import simulate

        return simulate(self, nsim, seed, newdata, re_form)

    def marginal_moments(self, rows: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
        """Marginal mean ``X beta`` and covariance ``sigma^2 (Z Lambda Lambda' Z' + W^-1)``.

        ``rows`` needs the predictor and grouping columns, not the response; rows with
        equal grouping labels share a random effect.  See :mod:`hierlm.predict.moments`.

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> mean, cov = res.marginal_moments(pd.DataFrame({"Days": [0, 1], "Subject": "x"}))
        >>> cov.shape
        (2, 2)
        """
        self._require_rows("marginal_moments()")
        from hierlm.predict.moments import marginal_moments

        return marginal_moments(self, rows)

    def to_datatree(self, bootstrap: Any = None) -> Any:
        """The result as an ArviZ DataTree; see :mod:`hierlm.results.datatree`.

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> sorted(res.to_datatree().children)
        ['constant_data', 'estimate', 'observed_data']
        """
        self._require_rows("to_datatree()")
        from hierlm.results.datatree import to_datatree

        return to_datatree(self, bootstrap)

    # --------------------------------------------------------------------------------------
    def summary(self) -> str:
        """lme4-style text summary of the fit.

        Examples
        --------
        >>> import hierlm
        >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> print(res.summary().splitlines()[0])
        Linear mixed model fit by REML ['hierlm']
        """
        return format_summary(self)

    def save(self, path: str) -> None:
        """Write the result to ``path`` in open formats (JSON, plus netCDF for NUTS draws).

        See :func:`hierlm.results.io.save`; read it back with :func:`hierlm.load`.
        """
        self._require_rows("save()")
        save_result(self, path)

    def __repr__(self) -> str:
        return (f"<hierlm.FitResult {self.method}: {self.formula!r}, nobs={self.nobs}, "
                f"objective={self.objective:.4f}>")
