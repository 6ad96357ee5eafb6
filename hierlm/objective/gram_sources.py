"""Gram blocks of data that are never held whole: parquet files read in chunks, or Dask.

``hierlm.fit(formula, source)`` accepts, besides a data frame,

* a path to a parquet file or to a folder of them (hive partitioning, as
  ``DataFrame.to_parquet(partition_cols=...)`` writes), a glob such as
  ``"data/*.parquet"``, or a ``pyarrow.dataset.Dataset``: read with pyarrow in record
  batches of at most :data:`CHUNK_ROWS` rows, twice (the level pass, then the Gram
  pass); peak memory is the Gram blocks plus one chunk;
* a ``dask.dataframe.DataFrame``: the same two passes as Dask tasks, one per
  partition, each pass reduced as a binary tree of merges on the workers
  (:mod:`hierlm.objective.gram_dask`); only the level summary and the Gram sums come
  back to the client.

The Gram blocks summed over chunks are those of the whole data (the sums are the
same sums, in another order); :mod:`hierlm.design.chunked` and
:mod:`hierlm.objective.gram_accumulate` give the math.  Dask is imported only when a
Dask object is given (it is the optional extra ``hierlm[dask]``).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import time
from typing import Any

from hierlm.design.chunked import (
    ChunkedDesign,
    ChunkPlan,
    finish_levels,
    plan_chunks,
    scan_chunk,
)
from hierlm.design.frames import as_pandas
from hierlm.errors import DataError
from hierlm.objective.gram import GramBlocks
from hierlm.objective.gram_accumulate import GramSums, chunk_products, finish_gram

__all__ = ["CHUNK_ROWS", "design_and_gram_out_of_core", "is_dask", "is_out_of_core"]

#: Most rows per chunk read from parquet (pyarrow also splits at row groups and files).
CHUNK_ROWS = 1 << 18


def is_dask(data: object) -> bool:
    """Whether ``data`` is a Dask DataFrame (checked by module name: dask is not imported)."""
    return type(data).__module__.split(".")[0] == "dask" and hasattr(data, "to_delayed")


def is_out_of_core(data: object) -> bool:
    """Whether ``data`` is read in chunks: a path, a ``pyarrow.dataset.Dataset`` or Dask.

    Examples
    --------
    >>> import hierlm
    >>> is_out_of_core("data/*.parquet"), is_out_of_core(hierlm.load_sleepstudy())
    (True, False)
    """
    module = type(data).__module__
    if module.startswith("pandas."):  # a DataFrame (before the slower checks below)
        return False
    if isinstance(data, str | os.PathLike):
        return True
    return module.startswith(("pyarrow.dataset", "pyarrow._dataset")) or is_dask(data)


def open_dataset(source: Any) -> Any:
    """``source`` (path, folder, glob or Dataset) as a ``pyarrow.dataset.Dataset``."""
    import pyarrow.dataset as ds

    if isinstance(source, ds.Dataset):
        return source
    path = os.fspath(source)
    if glob.has_magic(path):
        files = sorted(glob.glob(path, recursive=True))
        if not files:
            raise DataError(f"no file matches {path!r}")
        return ds.dataset(files, format="parquet")
    if not os.path.exists(path):
        raise DataError(f"no such file or folder: {path!r}")
    return ds.dataset(path, format="parquet", partitioning="hive")


def chunks(dataset: Any, columns: list[str]) -> Any:
    """The dataset's record batches as pandas DataFrames, one at a time."""
    import pyarrow as pa

    # no read-ahead: pyarrow would otherwise hold up to 16 batches of 4 files ahead
    for batch in dataset.to_batches(columns=columns, batch_size=CHUNK_ROWS,
                                    batch_readahead=1, fragment_readahead=1):
        yield as_pandas(pa.Table.from_batches([batch]))


def _parquet(plan: ChunkPlan, source: Any, timings: dict[str, float]
             ) -> tuple[ChunkedDesign, GramBlocks]:
    t0 = time.perf_counter()
    dataset = open_dataset(source)
    missing = sorted(set(plan.read) - set(dataset.schema.names))
    if missing:
        raise DataError(f"column(s) not found in data: {', '.join(missing)}")
    cols = list(plan.read)
    summary = None
    for chunk in chunks(dataset, cols):
        s = scan_chunk(chunk, plan)
        summary = s if summary is None else summary.merge(s)
    if summary is None:
        raise DataError("data has no rows")
    coding = finish_levels(summary, plan)
    t1 = time.perf_counter()
    timings["levels_s"] = t1 - t0
    sums: GramSums | None = None
    for chunk in chunks(dataset, cols):
        g = chunk_products(chunk, coding)
        sums = g if sums is None else sums.merge(g)
    assert sums is not None
    out = finish_gram(sums, coding)
    timings["gram_s"] = time.perf_counter() - t1
    return out


def design_and_gram_out_of_core(formula: str, data: Any, weights: object = None,
                                offset: object = None, contrasts: object = None,
                                timings: dict[str, float] | None = None
                                ) -> tuple[ChunkedDesign, GramBlocks]:
    """The design and Gram blocks of data read in chunks (see the module docstring).

    Parameters
    ----------
    formula : str
        lme4-style formula.
    data : str, os.PathLike, pyarrow.dataset.Dataset or dask.dataframe.DataFrame
        Where the rows are.
    weights, offset : str, optional
        Columns of the data holding the prior weights and the offset (a MethodError for
        an array: it cannot be split into chunks).
    contrasts : dict, optional
        The fixed part's contrasts, as for :func:`hierlm.fit`.
    timings : dict, optional
        Receives the seconds of the level pass (``"levels_s"``) and of the Gram pass
        (``"gram_s"``).

    Returns
    -------
    ChunkedDesign, GramBlocks

    Examples
    --------
    >>> import tempfile, hierlm
    >>> path = tempfile.mkdtemp() + "/sleep.parquet"
    >>> hierlm.load_sleepstudy().to_parquet(path)
    >>> design, gram = design_and_gram_out_of_core("Reaction ~ Days + (Days | Subject)", path)
    >>> design.nobs, gram.A11.shape
    (180, (18, 2, 2))
    """
    timings = {} if timings is None else timings
    plan = plan_chunks(formula, contrasts, weights, offset)
    if is_dask(data):
        from hierlm.objective.gram_dask import dask_design_and_gram

        design, gram = dask_design_and_gram(formula, data, timings, plan=plan)
    else:
        design, gram = _parquet(plan, data, timings)
    return dataclasses.replace(design, source=data), gram
