"""The two passes of :mod:`hierlm.objective.gram_sources` as Dask tasks.

Each partition of a ``dask.dataframe.DataFrame`` becomes one task of the level pass
(:func:`hierlm.design.chunked.scan_chunk`) and one of the Gram pass
(:func:`hierlm.objective.gram_accumulate.chunk_products`).  The per-partition results
are merged pairwise in a binary tree of tasks, so the workers do the reduction and the
client receives one level summary (the distinct levels) and one set of Gram sums:
nothing of size ``n``.  Whatever scheduler is active runs the tasks (a
``distributed.Client`` if one is connected).  This module imports Dask, so only
:func:`hierlm.objective.gram_sources.design_and_gram_out_of_core` imports it, and
only when given a Dask object.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from hierlm.design.chunked import (
    ChunkedDesign,
    ChunkPlan,
    finish_levels,
    plan_chunks,
    scan_chunk,
)
from hierlm.errors import DataError
from hierlm.objective.gram import GramBlocks
from hierlm.objective.gram_accumulate import chunk_products, finish_gram

__all__ = ["dask_design_and_gram"]


def _merge(a: Any, b: Any) -> Any:
    return a.merge(b)


def _tree(items: list[Any], fn: Callable[[Any, Any], Any]) -> Any:
    """A binary tree of delayed ``fn`` over ``items`` (depth ``log2(len(items))``)."""
    from dask import delayed

    while len(items) > 1:
        items = [delayed(fn)(items[i], items[i + 1]) if i + 1 < len(items) else items[i]
                 for i in range(0, len(items), 2)]
    return items[0]


def dask_design_and_gram(formula: str, ddf: Any, timings: dict[str, float] | None = None,
                         contrasts: object = None, plan: ChunkPlan | None = None
                         ) -> tuple[ChunkedDesign, GramBlocks]:
    """The design and Gram blocks of a Dask DataFrame, computed on its workers.

    ``timings``, if given, receives the seconds of each pass (``"levels_s"``,
    ``"gram_s"``); ``plan`` (from :func:`~hierlm.design.chunked.plan_chunks`, with
    weights and offset columns) replaces ``formula`` and ``contrasts``.

    Examples
    --------
    >>> import dask.dataframe as dd, hierlm
    >>> ddf = dd.from_pandas(hierlm.load_sleepstudy(), npartitions=3)
    >>> design, gram = dask_design_and_gram("Reaction ~ Days + (Days | Subject)", ddf)
    >>> design.nobs, gram.A11.shape
    (180, (18, 2, 2))
    """
    from dask import delayed

    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    plan = plan_chunks(formula, contrasts) if plan is None else plan
    missing = sorted(set(plan.read) - {str(c) for c in ddf.columns})
    if missing:
        raise DataError(f"column(s) not found in data: {', '.join(missing)}")
    parts = ddf[list(plan.read)].to_delayed()
    if not parts:
        raise DataError("data has no partitions")
    plan_d = delayed(plan, pure=True)
    summary = _tree([delayed(scan_chunk)(part, plan_d) for part in parts], _merge).compute()
    coding = finish_levels(summary, plan)
    t1 = time.perf_counter()
    timings["levels_s"] = t1 - t0
    coding_d = delayed(coding, pure=True)
    sums = _tree([delayed(chunk_products)(part, coding_d) for part in parts], _merge).compute()
    out = finish_gram(sums, coding)
    timings["gram_s"] = time.perf_counter() - t1
    return out
