"""The dense Gram blocks of small models against the sparse products of compute_gram.

Outside check: :func:`hierlm.objective.gram.compute_gram` (sparse products, a different
computation of the same blocks) and the dense ``[Z X y]`` of ``tests.dense``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import hierlm
from hierlm.objective import compile_objective
from hierlm.objective.gram import compute_gram
from hierlm.objective.gram_dense import dense_data, dense_gram
from tests.dense import dense_z
from tests.objective.test_profiled import FORMULAS, random_data


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("weighted", [False, True])
def test_dense_blocks_equal_the_sparse_ones(formula: str, weighted: bool) -> None:
    data = random_data(len(formula) + weighted).assign(
        w=lambda d: 0.5 + (np.arange(len(d)) % 4), o=lambda d: np.arange(len(d)) % 3)
    kw = {"weights": "w", "offset": "o"} if weighted else {}
    design = hierlm.build_design(formula, data, **kw)
    dense, sparse = dense_gram(design), compute_gram(design, dense_r1=None)
    assert dense is not None
    for f in dataclasses.fields(sparse):
        a, b = getattr(dense, f.name), getattr(sparse, f.name)
        if isinstance(b, np.ndarray) and b.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-12,
                                       atol=1e-12 * max(1.0, float(np.abs(b).max(initial=0))))
        elif isinstance(b, np.ndarray):
            np.testing.assert_array_equal(a, b)
        else:
            assert a == pytest.approx(b, rel=1e-12), f.name
    D = dense_data(design)
    if not weighted:
        y_c = design.y - design.X @ sparse.beta_offset
        np.testing.assert_allclose(D, np.column_stack([dense_z(design), design.X, y_c]))


def test_large_designs_keep_the_sparse_products() -> None:
    design = hierlm.build_design(FORMULAS[1], random_data(3, n=30_000))
    assert dense_gram(design) is None
    obj = compile_objective(design)
    assert dense_data(design) is None and obj.gram.A_RR.shape == (3, 3)
