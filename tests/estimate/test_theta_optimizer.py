"""The shared optimizer on problems whose minimizers are known in closed form."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import hierlm
from hierlm.estimate.theta_optimizer import (
    ParameterSpace,
    SearchOptions,
    SearchResult,
    converged,
    minimize_theta,
)


def _double_well(x: np.ndarray) -> tuple[float, np.ndarray]:
    # even in x, a maximum at 0 (zero gradient there), minima at +-1 with value 0
    return float((x[0] ** 2 - 1.0) ** 2), np.array([4.0 * x[0] * (x[0] ** 2 - 1.0)])


def _one_diagonal() -> ParameterSpace:
    return ParameterSpace(lower=np.zeros(1), upper=np.full(1, np.inf), scale=np.ones(1),
                          relative=np.ones(1, dtype=bool), diagonals=np.array([0]),
                          names=("x",))


def test_second_order_check_leaves_a_stationary_maximum() -> None:
    space = _one_diagonal()
    plain = minimize_theta(_double_well, space, np.zeros(1))
    # L-BFGS-B alone stops where it starts: the gradient vanishes at the maximum
    assert plain.theta[0] == 0.0 and plain.criterion == 1.0
    checked = minimize_theta(_double_well, space, np.zeros(1),
                             SearchOptions(bounded=False, second_order=True))
    assert checked.converged and "escape" in checked.method
    assert abs(checked.theta[0] - 1.0) < 1e-6 and checked.criterion < 1e-10


def test_box_minimum_and_result_type() -> None:
    # min (x - 2)^2 + 3 (y + 1)^2 on x <= 1, y >= 0: at (1, 0), value 1 + 3
    def quad(x: np.ndarray) -> tuple[float, np.ndarray]:
        return (float((x[0] - 2) ** 2 + 3 * (x[1] + 1) ** 2),
                np.array([2 * (x[0] - 2), 6 * (x[1] + 1)]))

    r = minimize_theta(quad, ParameterSpace.box([(None, 1.0), (0.0, None)]), np.array([0.3, 2.0]))
    assert isinstance(r, SearchResult)
    np.testing.assert_allclose(r.theta, [1.0, 0.0], atol=1e-12)
    assert r.criterion == pytest.approx(4.0, abs=1e-12) and r.converged
    assert r.evaluations >= 2 and r.messages[-1].startswith("CONVERGENCE")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.theta = np.zeros(2)  # type: ignore[misc]  # frozen


def test_scale_leaves_the_answer_unchanged() -> None:
    # the search runs on x / scale; the minimizer is the same in x
    def quad(x: np.ndarray) -> tuple[float, np.ndarray]:
        return float((x[0] - 3e4) ** 2 / 1e8 + x[1] ** 2), np.array([2 * (x[0] - 3e4) / 1e8,
                                                                   2 * x[1]])

    space = ParameterSpace.box([(None, None), (None, None)], scale=np.array([1e4, 1.0]))
    r = minimize_theta(quad, space, np.array([1.0, 1.0]))
    np.testing.assert_allclose(r.theta, [3e4, 0.0], atol=1e-6 * 3e4)


def test_several_starts_keep_the_lowest() -> None:
    # minima near -1.01 (lower, the 0.1 x tilt) and 0.99
    def tilted(x: np.ndarray) -> tuple[float, np.ndarray]:
        return (float((x[0] ** 2 - 1) ** 2 + 0.1 * x[0]),
                np.array([4 * x[0] * (x[0] ** 2 - 1) + 0.1]))

    space = ParameterSpace.box([(None, None)])
    one = minimize_theta(tilted, space, np.array([0.9]))
    both = minimize_theta(tilted, space, [np.array([0.9]), np.array([-0.9])])
    assert one.theta[0] > 0 > both.theta[0] and both.criterion < one.criterion


def test_convergence_rule_ignores_an_outward_gradient_on_a_bound() -> None:
    space = ParameterSpace.box([(0.0, None), (None, 1.0)])
    assert converged(space, np.array([0.0, 1.0]), np.array([3.0, -3.0]), 1.0, 1e-3)
    assert not converged(space, np.array([0.0, 1.0]), np.array([-3.0, 0.0]), 1.0, 1e-3)
    assert not converged(space, np.array([0.5, 0.5]), np.array([0.0, 2e-3]), 1.0, 1e-3)


def test_theta_space_is_the_covariance_layers() -> None:
    from hierlm.covariance.design import DesignCovariance

    d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    s = ParameterSpace.of_theta(d)
    cov = DesignCovariance.of(d)
    np.testing.assert_array_equal(s.scale, cov.theta_scale())
    np.testing.assert_array_equal(s.diagonals, cov.diagonal_index())
    flipped, mask = s.canonical_signs(np.array([-1.0, 0.5, 2.0]))
    assert flipped.tolist() == [1.0, -0.5, 2.0] and mask.tolist() == [True, True, False]
