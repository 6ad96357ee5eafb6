"""Regression guard on optimizer work: objective evaluations per fit stay bounded.

Not a timing: the count of objective+gradient evaluations is deterministic.  With
the exact gradient, L-BFGS-B needed 10-16 evaluations on these fits; lme4's
derivative-free BOBYQA needs several dozen.  The bounds leave room for harmless
changes but catch a fallback to derivative-free search or a lost gradient.
"""

from __future__ import annotations

import pytest

import hierlm
from tests.conftest import dataset

CASES = [
    ("Reaction ~ 1 + Days + (1 + Days | Subject)", "sleepstudy"),
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "penicillin"),
]


@pytest.mark.parametrize("formula,data", CASES)
@pytest.mark.parametrize("method", ["reml", "ml"])
def test_evaluation_count_is_bounded(formula: str, data: str, method: str) -> None:
    res = hierlm.fit(formula, dataset(data), method=method)
    assert res.converged
    assert res.n_evals <= 30, res.n_evals
    assert res.n_evals == len(res.optimizer["trace"])
