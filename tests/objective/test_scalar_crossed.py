"""The fused evaluation of all-scalar models against a dense GLS, finite differences and
the compiled graph.

Outside checks: the profiled criterion of ``tests.dense`` (``n x n`` V) and central
finite differences of it for the gradient; the compiled graph (Numba link), which
shares only the Gram blocks, must agree to rounding at many ``theta`` (negative and
zero entries included), by REML and ML, with prior weights, on one thread and on
several.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.objective import compile_objective, scalar_crossed
from hierlm.objective.cholesky import GramVars, Structure
from hierlm.objective.gram import compute_gram
from hierlm.objective.profiled import (
    NUMBA_WORK,
    compiled_for,
    gram_values,
    structure_of,
    work_of,
)
from tests.dense import profiled_criterion

FORMULAS = [
    "y ~ 1 + (1 | g) + (1 | h)",
    "y ~ x + k + (1 | g) + (1 | h) + (1 | k)",
    "y ~ x + (1 | g) + (0 + x | h)",
    "y ~ 0 + x + (1 | g)",
]


def crossed_data(seed: int, n: int, ng: int, nh: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g, h = rng.integers(0, ng, n), rng.integers(0, nh, n)
    k = rng.integers(0, 4, n)
    x = rng.normal(size=n)
    y = (1.0 + 0.5 * x + rng.normal(size=ng)[g] + 0.7 * rng.normal(size=nh)[h]
         + 0.3 * k + rng.normal(size=n))
    return pd.DataFrame({"y": y, "x": x, "g": g.astype(str), "h": h.astype(str),
                         "k": k.astype(str), "w": rng.uniform(0.5, 2.0, n)})


def _args(gram, theta, reml) -> list:
    return [np.asarray(theta, float), np.asarray(float(reml)), np.asarray(float(gram.n)),
            np.asarray(float(gram.p)), *gram_values(gram)]


def _thetas(k: int, rng: np.random.Generator) -> list[np.ndarray]:
    out = [rng.uniform(0.2, 1.5, k), -rng.uniform(0.2, 1.5, k), rng.normal(size=k)]
    zero = rng.uniform(0.2, 1.5, k)
    zero[-1] = 0.0  # a term at zero: its gradient is not the scaling shortcut's
    return [*out, zero]


@pytest.mark.parametrize("formula", FORMULAS)
def test_matches_dense_gls_and_finite_differences(formula: str) -> None:
    design = hierlm.build_design(formula, crossed_data(len(formula), 120, 9, 6))
    gram = compute_gram(design)
    assert scalar_crossed.suits(structure_of(design, gram))
    rng = np.random.default_rng(1)
    for theta in _thetas(len(design.terms), rng):
        for reml in (True, False):
            f, grad, _, _ = scalar_crossed.evaluate(*_args(gram, theta, reml))
            assert f == pytest.approx(profiled_criterion(design, theta, reml), rel=1e-10)
            h = 1e-6
            fd = [(profiled_criterion(design, theta + h * e, reml)
                   - profiled_criterion(design, theta - h * e, reml)) / (2 * h)
                  for e in np.eye(len(theta))]
            np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("formula", FORMULAS[:2])
@pytest.mark.parametrize("weights", [False, True])
def test_matches_the_compiled_graph(formula: str, weights: bool) -> None:
    data = crossed_data(7, 3000, 400, 60)
    design = hierlm.build_design(formula, data, weights="w" if weights else None)
    gram = compute_gram(design)
    graph = compiled_for(structure_of(design, gram), "numba")
    rng = np.random.default_rng(2)
    for theta in _thetas(len(design.terms), rng):
        for reml in (True, False):
            args = _args(gram, theta, reml)
            f, grad, L1, L_R = scalar_crossed.evaluate(*args)
            f0, grad0, L10, L_R0 = graph(*args)
            assert f == pytest.approx(float(f0), rel=1e-13)
            np.testing.assert_allclose(grad, grad0, rtol=1e-8,
                                       atol=1e-12 * max(1.0, abs(float(f0))))
            np.testing.assert_allclose(L1, L10, rtol=1e-14)
            np.testing.assert_allclose(L_R, L_R0, rtol=1e-11, atol=1e-11)
            assert np.all(np.triu(L_R, 1) == 0.0)


def test_threads_give_the_serial_result(monkeypatch: pytest.MonkeyPatch) -> None:
    design = hierlm.build_design(FORMULAS[1], crossed_data(3, 3000, 400, 60))
    gram = compute_gram(design)
    args = _args(gram, [0.6, 0.9, 0.3], True)
    serial = scalar_crossed.evaluate(*args)
    monkeypatch.setattr(scalar_crossed, "THREADED_WORK", 0.0)
    import numba

    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 3)
    assert len(scalar_crossed._ranges(np.arange(10.0), 3)) == 3
    threaded = scalar_crossed.evaluate(*args)
    assert threaded[0] == serial[0]  # the rows of U do not depend on the split
    np.testing.assert_array_equal(threaded[3], serial[3])
    np.testing.assert_allclose(threaded[1], serial[1], rtol=1e-12)


def test_split_balances_the_work() -> None:
    cum = np.concatenate([[0.0], np.cumsum(np.arange(1.0, 101.0))])  # row r: r + 1
    ranges = scalar_crossed._split(cum, 2)
    assert ranges[0][0] == 0 and ranges[-1][1] == 100 and ranges[0][1] == ranges[1][0]
    halves = [cum[b] - cum[a] for a, b in ranges]
    assert abs(halves[0] - halves[1]) <= 100


def test_not_positive_definite_gives_nan_as_the_graph() -> None:
    design = hierlm.build_design(FORMULAS[0], crossed_data(5, 200, 20, 8))
    gram = compute_gram(design)
    args = _args(gram, [0.5, 0.5], True)
    i = list(GramVars.__dataclass_fields__).index("A_RR")
    A = args[4 + i].copy()
    A[-1, -1] = -1.0  # a negative residual sum of squares
    args[4 + i] = A
    f, grad, _, L_R = scalar_crossed.evaluate(*args)
    f0 = compiled_for(structure_of(design, gram), "numba")(*args)[0]
    assert np.isnan(f) and not np.isfinite(float(f0))
    assert np.all(np.isnan(grad)) and np.all(np.isnan(L_R))


def test_large_scalar_models_use_it() -> None:
    design = hierlm.build_design(FORMULAS[1], crossed_data(9, 20_000, 2_000, 300))
    gram = compute_gram(design)
    assert work_of(gram) > NUMBA_WORK
    obj = compile_objective(design, gram)
    assert obj.backend == "numba" and obj.fn is scalar_crossed.evaluate
    assert obj.with_backend("numba").fn is scalar_crossed.evaluate
    small = compile_objective(hierlm.build_design(FORMULAS[0], crossed_data(1, 100, 9, 6)),
                              backend="numba")
    assert small.fn is not scalar_crossed.evaluate  # light: the graph, as before
    assert not scalar_crossed.suits(Structure(p1=2, dense_r1=False, rest_diagonal=True))
    assert not scalar_crossed.suits(Structure(p1=1, dense_r1=True, rest_diagonal=True))
    assert not scalar_crossed.suits(Structure(p1=1, dense_r1=False, rest_diagonal=False))


def test_fit_equals_the_graph_fit() -> None:
    data = crossed_data(11, 20_000, 2_000, 300)
    res = hierlm.fit(FORMULAS[1], data)
    assert res.model.objective.fn is scalar_crossed.evaluate
    model = hierlm.Model(FORMULAS[1], data)
    graph_obj = model.objective
    object.__setattr__(graph_obj, "fn", compiled_for(graph_obj.structure, "numba"))
    ref = model.fit()
    assert res.objective == pytest.approx(ref.objective, rel=1e-12)
    np.testing.assert_allclose(res.theta, ref.theta, rtol=1e-5)


def test_scalar_pattern_is_the_sorted_pattern() -> None:
    """The CSC/CSR route gives the arrays of the sort by (level, row), duplicates summed."""
    import scipy.sparse as sp

    from hierlm.objective.gram import _scalar_pattern

    rng = np.random.default_rng(4)
    m, l1, nnz = 30, 50, 400
    row, col = rng.integers(0, m, nnz), rng.integers(0, l1, nnz)
    val = rng.normal(size=nnz)
    val[:5] = 0.0  # explicit zeros are kept, as the sort keeps them
    AR1 = sp.coo_matrix((val, (row, col)), shape=(m, l1))  # with duplicates (chunk sums)
    nz_row, nz_level, nz_val, level_ptr, row_order = _scalar_pattern(AR1)
    key = col.astype(np.int64) * m + row
    uniq, inv = np.unique(key, return_inverse=True)
    summed = np.zeros(len(uniq))
    np.add.at(summed, inv, val)
    np.testing.assert_array_equal(nz_level, uniq // m)
    np.testing.assert_array_equal(nz_row, uniq % m)
    np.testing.assert_allclose(nz_val[:, 0], summed, rtol=1e-15, atol=1e-15)
    np.testing.assert_array_equal(level_ptr, np.concatenate([[0], np.cumsum(
        np.bincount(nz_level, minlength=l1))]))
    np.testing.assert_array_equal(row_order, np.argsort(nz_row, kind="stable"))
