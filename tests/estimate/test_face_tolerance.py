"""The face-check descents' looser stopping rule (``FACE_FTOL``) against the strict one.

A face descent that stays above the best point never changes the estimates, so stopping
it at ``ftol = FACE_FTOL`` must give the very numbers of running it to ``ftol = 1e-12``
(bit for bit) with fewer evaluations; one that passes below the best point goes on at
full precision and must reach the strict run's optimum.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hierlm
import hierlm.estimate.checked_descent as checked_descent
from tests.conftest import dataset
from tests.estimate.test_optimum import STRUCTURES, simulate

CASES = [
    ("Reaction ~ 1 + Days + (1 + Days | Subject)", "sleepstudy"),
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin"),
    ("strength ~ 1 + (1 | batch/cask)", "pastes"),
]


def _fit(model: hierlm.Model, method: str, face_ftol: float,
         monkeypatch: pytest.MonkeyPatch) -> hierlm.FitResult:
    with monkeypatch.context() as m, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.setattr(checked_descent, "FACE_FTOL", face_ftol)
        return model.fit(method)


@pytest.mark.parametrize("formula,data", CASES)
@pytest.mark.parametrize("method", ["reml", "ml"])
def test_same_estimates_as_strict_face_descents(formula: str, data: str, method: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    model = hierlm.Model(formula, dataset(data))
    strict = _fit(model, method, 1e-12, monkeypatch)
    loose = _fit(model, method, checked_descent.FACE_FTOL, monkeypatch)
    assert loose.objective == strict.objective
    np.testing.assert_array_equal(loose.theta, strict.theta)
    np.testing.assert_array_equal(loose.fixef.to_numpy(), strict.fixef.to_numpy())
    assert loose.sigma == strict.sigma
    assert loose.converged and strict.converged
    assert loose.n_evals < strict.n_evals


def test_face_below_the_best_is_finished_at_full_precision(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A design of tests/estimate/test_optimum.py whose singular optimum is the lower one
    (found by scanning its 400 fits): the loose face descent passes below the interior
    optimum and the fit ends where the strict one does."""
    model = hierlm.Model(STRUCTURES["crossed"], simulate("crossed", 7))
    strict = _fit(model, "ml", 1e-12, monkeypatch)
    loose = _fit(model, "ml", checked_descent.FACE_FTOL, monkeypatch)
    assert "+face+" in strict.optimizer["method"] and "+face+" in loose.optimizer["method"]
    assert loose.converged
    assert abs(loose.objective - strict.objective) <= 1e-9 * abs(strict.objective)
