"""The NumPy evaluation of small models against the compiled graph and a dense GLS.

Outside checks: the profiled criterion of ``tests.dense`` (``n x n`` V), central
finite differences for the gradient, and the PyTensor graph (VM link), which shares
only the Gram blocks: all four results must agree with it to 1e-10.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.objective import compile_objective, numpy_link
from hierlm.objective.numpy_link import MAX_SIZE, NumpyFirst, profiled_numpy, suits
from hierlm.objective.profiled import compiled_for, gram_values
from tests.dense import profiled_criterion
from tests.objective.test_profiled import FORMULAS, random_data, random_theta


def _args(obj, theta, reml):
    g = obj.gram
    return [np.asarray(theta, float), np.asarray(float(reml)), np.asarray(float(g.n)),
            np.asarray(float(g.p)), *gram_values(g)]


@pytest.mark.parametrize("formula", [*FORMULAS, "y ~ 0 + (1 | g)", "y ~ x * k + (x | h)"])
def test_numpy_matches_the_graph(formula: str) -> None:
    design = hierlm.build_design(formula, random_data(len(formula)))
    obj = compile_objective(design)
    assert isinstance(obj.fn, NumpyFirst)  # "auto" on a small model
    vm = compiled_for(obj.structure, "vm")
    rng = np.random.default_rng(len(formula) + 1)
    for _ in range(3):
        theta = random_theta(design, rng)
        for reml in (True, False):
            args = _args(obj, theta, reml)
            for a, b in zip(profiled_numpy(*args), vm(*args), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-10,
                                           atol=1e-10 * float(np.abs(b).max()))
            assert obj(theta, reml) == pytest.approx(profiled_criterion(design, theta, reml),
                                                     rel=1e-9)


@pytest.mark.parametrize("formula", FORMULAS[:3])
def test_numpy_gradient_matches_finite_differences(formula: str) -> None:
    design = hierlm.build_design(formula, random_data(3 + len(formula)))
    obj = compile_objective(design)
    theta = random_theta(design, np.random.default_rng(2))
    for reml in (True, False):
        _, grad = obj.value_and_grad(theta, reml)
        h = 1e-6
        fd = np.array([(obj(theta + h * e, reml) - obj(theta - h * e, reml)) / (2 * h)
                       for e in np.eye(len(theta))])
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)


@pytest.mark.filterwarnings("ignore")
def test_weighted_fit_equals_the_graph_fit() -> None:
    data = random_data(11, n=80).assign(w=np.linspace(0.5, 2.0, 80))
    model = hierlm.Model("y ~ x + (1 + x | g)", data, weights="w")
    auto = model.fit("reml")
    model_vm = hierlm.Model("y ~ x + (1 + x | g)", data, weights="w")
    object.__setattr__(model_vm, "_objective", model_vm.objective.with_backend("vm"))
    vm = model_vm.fit("reml")
    assert auto.objective == pytest.approx(vm.objective, rel=1e-10)
    np.testing.assert_allclose(auto.theta, vm.theta, rtol=1e-5, atol=1e-7)


def test_large_models_keep_the_graph() -> None:
    n = 600
    data = pd.DataFrame({"y": np.arange(n) % 7 * 1.0, "x": np.arange(n) % 5 * 1.0,
                         "g": (np.arange(n) % (MAX_SIZE + 10)).astype(str)})
    obj = compile_objective(hierlm.build_design("y ~ x + (1 | g)", data))
    assert not suits(obj.gram) and not isinstance(obj.fn, NumpyFirst)


def test_a_busy_structure_moves_to_numba(monkeypatch: pytest.MonkeyPatch) -> None:
    design = hierlm.build_design(FORMULAS[1], random_data(5))
    obj = compile_objective(design)
    vm = compiled_for(obj.structure, "vm")  # stands in for Numba's function: same results
    tier = NumpyFirst(lambda: vm)
    theta = random_theta(design, np.random.default_rng(0))
    args = _args(obj, theta, True)
    monkeypatch.setattr(numpy_link, "BUDGET_S", 1e9)
    first = tier(*args)
    assert tier.link == "numpy"
    monkeypatch.setattr(numpy_link, "BUDGET_S", 0.0)
    tier(*args)
    assert tier.link == "numba"
    for a, b in zip(tier(*args), first, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10 * float(np.abs(b).max()))


def test_alternating_models_share_no_state() -> None:
    """The constants kept for the last model are never used for another one."""
    objs = [compile_objective(hierlm.build_design(f, random_data(i)))
            for i, f in enumerate(FORMULAS[:3])]
    rng = np.random.default_rng(9)
    thetas = [random_theta(o.design, rng) for o in objs]
    for _ in range(2):
        for o, th in zip(objs, thetas, strict=True):
            args = _args(o, th, True)
            ref = compiled_for(o.structure, "vm")(*args)
            for a, b in zip(profiled_numpy(*args), ref, strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-10,
                                           atol=1e-10 * float(np.abs(b).max()))


@pytest.mark.parametrize("formula", [
    "Reaction ~ Days + (Days | Subject)", "Reaction ~ Days + (1 | Subject)",
    "Reaction ~ Days + (Days || Subject)", "Reaction ~ Days + (Days | Subject) + (1 | g)",
    "Reaction ~ Days + (1 | g) + (0 + Days | Subject)"])
def test_dense_lambda_equals_the_dense_reference(formula: str) -> None:
    """``dense_lambda`` (used by the residual-based estimates) against tests/dense.py's
    Lambda, built from the design's terms one by one, at a random theta."""
    from hierlm.objective.gram import compute_gram
    from hierlm.objective.numpy_link import dense_lambda
    from tests.dense import dense_lambda as reference_lambda

    data = hierlm.load_sleepstudy().assign(g=lambda d: (d["Days"] % 3).astype(str))
    design = hierlm.build_design(formula, data)
    k = sum(t.p * (t.p + 1) // 2 for t in design.terms)
    theta = np.random.default_rng(3).uniform(0.2, 1.5, size=k)
    np.testing.assert_array_equal(dense_lambda(theta, compute_gram(design)),
                                  reference_lambda(design, theta))
