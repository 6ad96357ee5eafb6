"""Fitted values, residuals and predictions of rows that are never held whole.

A fit from a parquet source or a Dask DataFrame (:mod:`hierlm.objective.gram_sources`)
keeps no rows.  Its fitted values ``o + x'beta + sum_k z_k' b_k[g_k]``, its residuals
``y - fitted`` and its predictions are functions of one row each (the levels, the
contrasts and the column names are fixed by the fit's coder), so they are computed
chunk by chunk, lazily, when asked for:

* from a **Dask DataFrame**: a Dask Series, one task per partition
  (``ddf.map_partitions``), indexed like the partition; nothing is computed until
  the caller computes it or writes it (``.to_parquet`` of ``.to_frame()``);
* from **parquet** (a path, a glob or a ``pyarrow.dataset.Dataset``): a
  :class:`ChunkedSeries`, an iterable of pandas Series, one per record batch, that
  reads the files again each time it is iterated.  Its index is the row's position in
  the dataset (0 for the first row pyarrow reads).  ``.to_parquet(path)`` writes it to
  one parquet file batch by batch; ``.compute()`` concatenates it (when it fits in
  memory).

The fitting rows are those the fit used: rows with a missing value in a used column,
or with prior weight 0, are skipped, as in memory (``fitted()`` has ``nobs`` values).
Rows given as ``newdata`` are coded as :func:`hierlm.predict.predict.predict` codes
them (a missing value or an unseen level is a DataError, raised when that chunk is
computed).  Intervals need the fit's factor for each chunk and are not offered lazily:
predict a data frame in memory for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from hierlm.design import matrices as _m
from hierlm.design.chunked import ChunkPlan, kept_rows, plan_chunks
from hierlm.design.newdata import NewDataCoder
from hierlm.errors import MethodError
from hierlm.objective.gram_sources import chunks, is_dask, is_out_of_core, open_dataset
from hierlm.predict.predict import linear_predictor
from hierlm.predict.terms import ranef_arrays, select_terms

__all__ = ["ChunkPredictor", "ChunkedSeries", "lazy_predict", "predict_lazily"]

KINDS = ("fitted", "residuals", "fit")


@dataclass(frozen=True, eq=False)
class ChunkPredictor:
    """What one chunk's values need: small and picklable, so Dask ships it to workers.

    ``kind`` is ``"fitted"``, ``"residuals"`` (fitting rows) or ``"fit"`` (predictions of
    new rows); ``plan`` is set for the fitting rows (which rows the fit used).
    """

    coder: NewDataCoder
    beta: np.ndarray
    b: tuple[np.ndarray, ...]
    terms: tuple[int, ...]
    kind: str
    allow_new_levels: bool = False
    plan: ChunkPlan | None = None

    @property
    def columns(self) -> list[str] | None:
        """The columns a chunk is read for (None: all, for new data)."""
        return None if self.plan is None else list(self.plan.read)

    def __call__(self, frame: pd.DataFrame) -> pd.Series:
        """The values of one chunk (a pandas DataFrame), indexed like its rows used."""
        if self.plan is not None:
            keep, _ = kept_rows(frame, self.plan)
            frame = frame.loc[keep]
        if not len(frame):
            return pd.Series(np.zeros(0), index=frame.index, name=self.kind)
        rows = self.coder.code(frame, terms=self.terms, allow_new_levels=self.allow_new_levels)
        fit = linear_predictor(rows, self.beta, list(self.b))
        if self.kind == "residuals":
            assert self.plan is not None
            fit = _m._response(self.plan.spec, frame.reset_index(drop=True)) - fit
        return pd.Series(fit, index=frame.index, name=self.kind)


class ChunkedSeries:
    """Values of parquet rows, computed batch by batch each time it is iterated.

    Examples
    --------
    >>> import tempfile, hierlm
    >>> path = tempfile.mkdtemp() + "/sleep.parquet"
    >>> hierlm.load_sleepstudy().to_parquet(path)
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", path)
    >>> fitted = res.fitted()
    >>> first = next(iter(fitted))
    >>> first.round(2).head(2).to_dict()
    {0: 253.66, 1: 273.33}
    >>> len(fitted.compute())
    180
    """

    def __init__(self, source: Any, predictor: ChunkPredictor) -> None:
        self.source = source
        self.predictor = predictor

    @property
    def name(self) -> str:
        """``"fitted"``, ``"residuals"`` or ``"fit"``."""
        return self.predictor.kind

    def __iter__(self) -> Iterator[pd.Series]:
        dataset = open_dataset(self.source)
        start = 0
        for frame in chunks(dataset, self.predictor.columns or list(dataset.schema.names)):
            frame.index = pd.RangeIndex(start, start + len(frame))
            start += len(frame)
            yield self.predictor(frame)

    def compute(self) -> pd.Series:
        """All values as one pandas Series (they must fit in memory)."""
        parts = list(self)
        return pd.concat(parts) if parts else pd.Series(np.zeros(0), name=self.name)

    def to_parquet(self, path: str) -> int:
        """Write the values to one parquet file, batch by batch; the number of rows.

        The file has the columns ``row`` (the row's position in the dataset) and the
        values (``fitted``, ``residuals`` or ``fit``).
        """
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("row", pa.int64()), (self.name, pa.float64())])
        n = 0
        with pq.ParquetWriter(path, schema) as writer:
            for part in self:
                writer.write_table(pa.table({"row": part.index.to_numpy(np.int64),
                                             self.name: part.to_numpy(np.float64)},
                                            schema=schema))
                n += len(part)
        return n


def _predictor(res: Any, kind: str, re_form: str | None, allow_new_levels: bool,
               fitting: bool) -> ChunkPredictor:
    coder = res.coder
    if coder is None or res.model is None:
        raise MethodError(f"{kind} of data read in chunks needs the fitted model "
                          f"(FitResult.model)")
    plan = None
    if fitting:
        plan = plan_chunks(coder.formula, None, coder.weights_column, coder.offset_column)
    return ChunkPredictor(coder=coder, beta=res.fixef.to_numpy(dtype=np.float64),
                          b=tuple(ranef_arrays(res)), terms=select_terms(coder, re_form),
                          kind=kind, allow_new_levels=allow_new_levels, plan=plan)


def predict_lazily(res: Any, kind: str, newdata: Any = None, re_form: str | None = None,
                   allow_new_levels: bool = False) -> Any:
    """Lazy values of a fit from data read in chunks (see the module docstring).

    Parameters
    ----------
    res : FitResult
        A REML or ML fit from a parquet source or a Dask DataFrame.
    kind : {"fitted", "residuals", "fit"}
        Fitted values or residuals of the fitting rows, or predictions (``"fit"``) of
        ``newdata`` (the fitting rows when None).
    newdata : path, pyarrow.dataset.Dataset or dask.dataframe.DataFrame, optional
        Rows to predict, read in chunks.
    re_form, allow_new_levels
        As for :meth:`hierlm.FitResult.predict`.

    Returns
    -------
    dask.dataframe.Series or ChunkedSeries
        A Dask Series for Dask rows, else a :class:`ChunkedSeries`.

    Examples
    --------
    >>> import tempfile, hierlm
    >>> path = tempfile.mkdtemp() + "/sleep.parquet"
    >>> hierlm.load_sleepstudy().to_parquet(path)
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", path)
    >>> population = predict_lazily(res, "fit", re_form="~0").compute()
    >>> population.round(2).head(2).tolist()
    [251.41, 261.87]
    """
    if kind not in KINDS:
        raise MethodError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    fitting = newdata is None
    source = res.model.design.source if fitting and res.model is not None else newdata
    predictor = _predictor(res, kind, re_form, allow_new_levels, fitting)
    if not is_out_of_core(source):
        raise MethodError("newdata for a lazy prediction must be a parquet path, a "
                          "pyarrow.dataset.Dataset or a Dask DataFrame")
    if is_dask(source):
        cols = predictor.columns
        parts = source if cols is None else source[cols]
        return parts.map_partitions(predictor, meta=pd.Series(dtype=np.float64,
                                                              name=predictor.kind))
    return ChunkedSeries(source, predictor)


def lazy_predict(res: Any, newdata: Any, re_form: str | None, allow_new_levels: bool,
                 interval: str | None, draws: bool) -> Any:
    """:meth:`hierlm.FitResult.predict` of a fit of data read in chunks: lazy values of
    the fitting rows or of ``newdata`` read in chunks, or None for ``newdata`` in memory
    (predicted as in memory, from the fit's coder and Gram blocks).

    Examples
    --------
    >>> import tempfile, hierlm
    >>> path = tempfile.mkdtemp() + "/sleep.parquet"
    >>> hierlm.load_sleepstudy().to_parquet(path)
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", path)
    >>> type(lazy_predict(res, None, "~0", False, None, False)).__name__
    'ChunkedSeries'
    """
    if newdata is not None and not is_out_of_core(newdata):
        return None
    if interval is not None or draws:
        raise MethodError("intervals of rows read in chunks are not computed lazily; "
                          "predict a data frame of the rows for them")
    return predict_lazily(res, "fit", newdata, re_form, allow_new_levels)
