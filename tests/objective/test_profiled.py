"""The compiled objective against a dense brute-force GLS likelihood and finite differences."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytensor
import pytensor.tensor as pt
import pytest

import hierlm
from hierlm.objective import compile_objective, profiled, theta_lower
from hierlm.objective.cholesky import blocked_cholesky, unprofiled_deviance
from hierlm.objective.gram import term_matrix
from hierlm.objective.profiled import (
    TieredCall,
    choose_backend,
    gram_values,
    symbolic_gram,
    work_of,
)
from tests.dense import neg2_loglik, profiled_criterion

FORMULAS = [
    "y ~ x + (1 | g)",
    "y ~ x + (1 + x | g)",
    "y ~ x + (1 + x | g) + (1 | h)",
    "y ~ x + (1 | g) + (0 + x | h) + (1 | g:h)",
    "y ~ 1 + (1 + x + z | h) + (1 | g/k)",
    "y ~ x + (1 + x || g) + (1 + z | h)",
]


def random_data(seed: int, n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "y": rng.normal(size=n) * 2 + 5,
        "x": rng.normal(size=n),
        "z": rng.uniform(size=n),
        "g": rng.choice(list("abcde"), size=n),
        "h": rng.choice(list("PQRSTUV"), size=n),
        "k": rng.choice(["1", "2", "3"], size=n),
    })


def random_theta(design: hierlm.design.terms.ModelDesign, rng: np.random.Generator) -> np.ndarray:
    lower = theta_lower(design)
    th = rng.normal(size=lower.shape)
    return np.where(lower == 0, np.abs(th) + 0.1, th)


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("backend", ["vm", "numba"])
def test_objective_matches_dense_gls(formula: str, reml: bool, backend: str) -> None:
    rng = np.random.default_rng(len(formula))
    design = hierlm.build_design(formula, random_data(len(formula)))
    obj = compile_objective(design, backend=backend)
    assert obj.backend == backend
    for _ in range(3):
        theta = random_theta(design, rng)
        expected = profiled_criterion(design, theta, reml)
        assert obj(theta, reml=reml) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("backend", ["vm", "numba"])
def test_gradient_matches_finite_differences(formula: str, backend: str) -> None:
    rng = np.random.default_rng(1 + len(formula))
    design = hierlm.build_design(formula, random_data(7 + len(formula)))
    obj = compile_objective(design, backend=backend)
    theta = random_theta(design, rng)
    for reml in (True, False):
        _, grad = obj.value_and_grad(theta, reml)
        h = 1e-6
        fd = np.array([(obj(theta + h * e, reml) - obj(theta - h * e, reml)) / (2 * h)
                       for e in np.eye(len(theta))])
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5)


def test_unprofiled_deviance_matches_dense_marginal() -> None:
    design = hierlm.build_design(FORMULAS[4], random_data(3))
    obj = compile_objective(design)
    theta_v, beta_v, sigma_v = pt.vector(), pt.vector(), pt.scalar()
    g = symbolic_gram()
    f = blocked_cholesky(theta_v, g, obj.structure)
    dev = unprofiled_deviance(f, g, beta_v, sigma_v, pt.constant(float(design.nobs)))
    fn = pytensor.function([theta_v, beta_v, sigma_v, *g.__dict__.values()], dev,
                           on_unused_input="ignore")
    rng = np.random.default_rng(0)
    for _ in range(3):
        theta = random_theta(design, rng)
        beta = rng.normal(size=design.p) + 5
        sigma = float(rng.uniform(0.5, 2.0))
        got = fn(theta, beta, sigma, *gram_values(obj.gram))
        assert float(got) == pytest.approx(neg2_loglik(design, theta, beta, sigma), rel=1e-9)


def test_dense_fallback_matches_sparse_pairs() -> None:
    from hierlm.objective.gram import compute_gram

    design = hierlm.build_design(FORMULAS[3], random_data(11))
    sparse = compile_objective(design)
    dense = compile_objective(design, compute_gram(design, dense_r1=True))
    assert dense.gram.dense_r1 and not sparse.gram.dense_r1
    theta = random_theta(design, np.random.default_rng(5))
    assert dense(theta, True) == pytest.approx(sparse(theta, True), rel=1e-10)


def test_backends_agree_and_auto_follows_the_work() -> None:
    design = hierlm.build_design("y ~ x + (1 + x | g) + (1 | h)", random_data(3))
    vm = compile_objective(design, backend="vm")
    nb = vm.with_backend("numba")
    theta = random_theta(design, np.random.default_rng(5))
    for a, b in zip(vm.evaluate(theta, True), nb.evaluate(theta, True), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # the work measure counted from the term matrices: l1 p1^3 + Schur update + m^3 / 3
    g, first = vm.gram, design.terms[0]
    l1, p1 = first.n_levels, first.p
    R = np.hstack([*(term_matrix(t).toarray() for t in design.terms[1:]), design.X,
                   design.y[:, None]])
    AR1 = R.T @ term_matrix(first).toarray()
    nnz_k = np.array([np.any(AR1[:, k * p1:(k + 1) * p1] != 0, axis=1).sum()
                      for k in range(l1)], dtype=float)
    m = R.shape[1]
    schur = m * m * l1 * p1 if g.dense_r1 else (nnz_k ** 2).sum() * p1
    assert work_of(g) == pytest.approx(l1 * p1 ** 3 + schur + m ** 3 / 3)
    assert choose_backend(g) == "vm" and compile_objective(design).backend == "auto"
    big = hierlm.build_design("y ~ x + (1 | g) + (1 | h)", pd.DataFrame({
        "y": np.arange(4000.0) % 7, "x": np.arange(4000.0) % 5,
        "g": (np.arange(4000) % 200).astype(str), "h": (np.arange(4000) // 20 % 190).astype(str)}))
    assert compile_objective(big).backend == "numba"


def test_unknown_backend_is_one_clear_error() -> None:
    design = hierlm.build_design("y ~ x + (1 | g)", random_data(3))
    with pytest.raises(hierlm.errors.MethodError, match="unknown backend 'c'"):
        compile_objective(design, backend="c")


def test_auto_moves_a_busy_structure_from_the_vm_to_numba(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    design = hierlm.build_design("y ~ x + (1 + x | g) + (1 | h)", random_data(4))
    tiered = TieredCall(compile_objective(design, backend="vm").structure)
    obj = dataclasses.replace(compile_objective(design, backend="vm"), fn=tiered,
                              backend="auto")
    theta = random_theta(design, np.random.default_rng(6))
    expected = profiled_criterion(design, theta, True)
    monkeypatch.setattr(profiled, "VM_BUDGET_S", 1e9)
    assert obj(theta) == pytest.approx(expected, rel=1e-9) and tiered.link == "vm"
    monkeypatch.setattr(profiled, "VM_BUDGET_S", 0.0)
    assert obj(theta) == pytest.approx(expected, rel=1e-9)  # still the VM's call
    assert tiered.link == "numba"
    assert obj(theta) == pytest.approx(expected, rel=1e-9)
