"""The boundary checks of the optimizer: sign canonicalization and the second-order escape."""

from __future__ import annotations

import numpy as np

import hierlm
from hierlm.covariance.layout import templates
from hierlm.estimate.boundary import canonical_signs, escape_boundary
from hierlm.objective import compile_objective
from tests.conftest import dataset


def test_canonical_signs_keep_the_covariance_and_the_criterion() -> None:
    d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", dataset("sleepstudy"))
    obj = compile_objective(d)
    theta = np.array([-0.9, 0.02, -0.2])
    flipped, mask = canonical_signs(d, theta)
    assert np.all(flipped[[0, 2]] >= 0) and mask.tolist() == [True, True, True]
    T0, T1 = templates(d, theta)[0], templates(d, flipped)[0]
    np.testing.assert_allclose(T0 @ T0.T, T1 @ T1.T)
    assert obj(theta) == obj(flipped)


def test_escape_finds_the_descent_from_a_maximum_on_the_bound() -> None:
    # f is even in x0 with a maximum at x0 = 0 along it: the gradient there is 0.
    def f(x: np.ndarray) -> float:
        return float(-x[0] ** 2 + x[0] ** 4 + (x[1] - 1) ** 2)

    out = escape_boundary(f, np.array([0.0, 1.0]), f(np.array([0.0, 1.0])), np.array([0]))
    assert out is not None and f(out) < f(np.array([0.0, 1.0]))


def test_no_escape_at_a_minimum_on_the_bound() -> None:
    def f(x: np.ndarray) -> float:
        return float(x[0] ** 2 + (x[1] - 1) ** 2)

    assert escape_boundary(f, np.array([0.0, 1.0]), 0.0, np.array([0])) is None


def test_dyestuff2_is_still_singular_and_converged() -> None:
    res = hierlm.fit("Yield ~ 1 + (1 | Batch)", dataset("dyestuff2"))
    assert res.is_singular and res.converged
    assert res.theta[0] == 0.0
