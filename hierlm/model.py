"""The user-facing entry points: :class:`Model` and :func:`fit`.

``Model`` runs stage 1 (design) and stage 2 (Gram blocks, compiled objective) once;
``Model.fit`` runs stages 3 and 4 for any method, so one model can be fitted
several ways without being rebuilt.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hierlm.design.matrices import build_design
from hierlm.design.residual_design import ResidualDesign, design_with_residual
from hierlm.design.terms import ModelDesign
from hierlm.errors import DataError, MethodError
from hierlm.estimate.estimator import FitProblem
from hierlm.estimate.registry import estimator
from hierlm.heap import gc_paused, large_temporaries_reused
from hierlm.inference.blas import one_blas_thread
from hierlm.objective.gram_sources import design_and_gram_out_of_core, is_out_of_core
from hierlm.objective.profiled import ProfiledObjective, compile_objective
from hierlm.results.result import FitResult


class Model:
    """A linear mixed model: formula + data, with its likelihood graph compiled.

    Parameters
    ----------
    formula : str
        lme4-style formula, e.g. ``"Reaction ~ 1 + Days + (1 + Days | Subject)"``.
    data : pandas.DataFrame, path, pyarrow.dataset.Dataset or dask.dataframe.DataFrame
        The data (never modified).  A parquet file, folder or glob, a pyarrow Dataset or
        a Dask DataFrame is read in chunks and never held whole (see ``docs/scale.md``).
    weights : str or array-like, optional
        Prior weights, a column name or one number per row: observation ``i`` has
        residual variance ``sigma^2 / w_i``.  Negative or missing weights are an error;
        rows with weight 0 are dropped, with a warning.
    offset : str or array-like, optional
        A known term added to the linear predictor, a column name or one number per row.
    contrasts : dict, optional
        Contrasts of factor columns of the fixed part, as R's ``contrasts =
        list(x = "contr.sum")``: ``{"x": "contr.sum"}``.  Values: ``"contr.treatment"``,
        ``"contr.sum"``, ``"contr.helmert"``, ``"contr.poly"`` (or without ``contr.``),
        or ``("treatment", level)`` to choose the reference level.  Factors not listed
        get treatment contrasts, ordered categoricals polynomial ones, as in R.
    residual : str, optional
        A residual correlation structure (nlme's R side): ``"ar1(visit | subject)"``
        (integer visits, gaps allowed), ``"car1(time | subject)"`` (real times) or
        ``"cs(1 | subject)"`` (compound symmetry); see ``docs/residual.md``.
    sigma : str, optional
        A log-linear model of the residual SD, ``"~ group"`` (nlme's ``varIdent(form =
        ~ 1 | group)`` for one factor).

    Examples
    --------
    >>> import hierlm
    >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> round(m.fit("ml").objective, 3), round(m.fit("reml").objective, 3)
    (1751.939, 1743.628)
    """

    __slots__ = ("_design", "_objective", "_residual")

    def __init__(self, formula: str, data: Any, weights: object = None,
                 offset: object = None, contrasts: dict[str, Any] | None = None,
                 residual: str | None = None, sigma: str | None = None) -> None:
        self._residual: ResidualDesign | None = None
        with gc_paused():
            if residual is not None or sigma is not None:
                if is_out_of_core(data):
                    raise MethodError("residual= and sigma= need the data in memory, not "
                                      "read in chunks (parquet or Dask)")
                design, self._residual = design_with_residual(
                    formula, data, residual, sigma, weights=weights, offset=offset,
                    contrasts=contrasts)
                self._design: ModelDesign = design
                self._objective = compile_objective(design)
                return
            if is_out_of_core(data):  # parquet path/glob/Dataset or Dask: read in chunks
                chunked, gram = design_and_gram_out_of_core(formula, data, weights, offset,
                                                            contrasts)
                self._design = chunked
                self._objective = compile_objective(chunked, gram)
                return
            # one BLAS thread, as in fit(): the design's n x p least squares and QR took
            # 0.4-0.75 s with OpenBLAS's threads on 2 busy cores (n = 10,000, p = 20)
            with one_blas_thread():
                design = build_design(formula, data, weights=weights, offset=offset,
                                      contrasts=contrasts)
                self._design = design
                self._objective = compile_objective(design)

    @classmethod
    def _from_design(cls, design: ModelDesign, residual: ResidualDesign | None = None
                     ) -> Model:
        self = cls.__new__(cls)
        self._design = design
        self._residual = residual
        self._objective = compile_objective(design)
        return self

    @property
    def design(self) -> ModelDesign:
        """The stage-1 model design."""
        return self._design

    @property
    def residual(self) -> ResidualDesign | None:
        """The residual structure (``residual=``, ``sigma=``), or None."""
        return self._residual

    @property
    def objective(self) -> ProfiledObjective:
        """The compiled profiled objective (lme4's deviance / REML criterion)."""
        return self._objective

    def with_response(self, y: np.ndarray) -> Model:
        """The same model with a new response vector; the compiled graph is reused.

        Examples
        --------
        >>> import hierlm
        >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
        >>> m2 = m.with_response(m.design.y * 2)
        >>> m2.objective.fn is m.objective.fn
        True
        """
        y = np.asarray(y, dtype=float)
        if y.shape != self._design.y.shape or not np.all(np.isfinite(y)):
            raise DataError(f"new response must be {self._design.nobs} finite numbers")
        out = Model._from_design(dataclasses.replace(self._design, y=y.copy()))
        out._residual = self._residual
        return out

    def fit(self, method: str = "reml", *, start: np.ndarray | None = None,
            options: dict[str, Any] | None = None, **kwargs: Any) -> FitResult:
        """Fit the model.

        Parameters
        ----------
        method : {"reml", "ml", "nuts"} or str
            REML (lme4's default), maximum likelihood, NUTS sampling, or the name of
            another registered estimator (:mod:`hierlm.estimate.registry`).
        start : ndarray, optional
            Starting theta for REML/ML.
        options : dict, optional
            Optimizer options for REML/ML: ``maxiter``, ``ftol``, ``gtol``, ``check_tol``.
        **kwargs
            Sampler arguments for ``method="nuts"`` (see :func:`hierlm.estimate.nuts.sample`).

        Returns
        -------
        FitResult
        """
        est = estimator(method)  # a registered estimator (hierlm.estimate.registry)
        problem = FitProblem(self._objective, self._residual)
        # One BLAS thread: the objective's dense factorizations are small to medium, and
        # multithreaded OpenBLAS potrf on 2 busy cores was 10x slower than one thread.
        with (gc_paused(), one_blas_thread(),
              large_temporaries_reused(self._objective.gram.A_RR.shape[0])):
            res = est.fit(problem, start=start, options=options, **kwargs)
        if res.method != est.kind.label:
            raise MethodError(f"estimator {est.name!r} returned a record labelled "
                              f"{res.method!r}, not its kind's {est.kind.label!r}")
        chunked = not problem.in_memory
        d = self._design
        rows: dict[str, Any] = {"y": None, "fitted_values": None} if chunked else {}
        # the row labels as the design stores them (a deferred RangeIndex stays deferred:
        # ``stored.get(name, d.name)`` would read the field, and build it, for its default)
        stored = vars(d)
        labels = stored["row_labels"] if "row_labels" in stored else d.row_labels
        dropped = stored["dropped_rows"] if "dropped_rows" in stored else d.dropped_rows
        return FitResult.from_record(res, model=self, coder=d.coder, row_labels=labels,
                                   dropped_rows=dropped, **rows)


def fit(formula: str, data: Any, method: str = "reml", *, weights: object = None,
        offset: object = None, contrasts: dict[str, Any] | None = None,
        residual: str | None = None, sigma: str | None = None,
        **kwargs: Any) -> FitResult:
    """Fit a linear mixed model in one call.

    Parameters
    ----------
    formula : str
        lme4-style formula: ``y ~ x + (1 + x | subject) + (1 | school/class)``.
    data : pandas.DataFrame, path, pyarrow.dataset.Dataset or dask.dataframe.DataFrame
        The data (never modified); a parquet path or glob, a pyarrow Dataset or a Dask
        DataFrame is read in chunks (see :class:`Model`).
    method : {"reml", "ml", "nuts"}
        Estimation method; REML by default, as in lme4.
    weights, offset : str or array-like, optional
        Prior weights and offset (see :class:`Model`).
    contrasts : dict, optional
        Contrasts of factor columns of the fixed part (see :class:`Model`).
    residual, sigma : str, optional
        Residual correlation structure and log-linear residual SD model (see
        :class:`Model` and ``docs/residual.md``).
    **kwargs
        Passed to :meth:`Model.fit`.

    Returns
    -------
    FitResult

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ 1 + Days + (1 + Days | Subject)", hierlm.load_sleepstudy())
    >>> res.fixef.round(3).to_dict()
    {'(Intercept)': 251.405, 'Days': 10.467}
    """
    # one BLAS-thread context for the design and the fit (those of Model's own steps,
    # nested in it, change nothing: hierlm.inference.blas)
    with one_blas_thread():
        return Model(formula, data, weights=weights, offset=offset, contrasts=contrasts,
                     residual=residual, sigma=sigma).fit(method, **kwargs)
