"""Regression guard on optimizer work: objective evaluations per fit stay bounded.

Not a timing: the count of objective+gradient evaluations is deterministic.  With
the exact gradient, L-BFGS-B needs 10-17 evaluations for one descent on these fits;
lme4's derivative-free BOBYQA needs several dozen.  Samples of at most 10,000 rows
get one further descent per term (the check for a second, singular optimum, see
:mod:`hierlm.estimate.optimize`); each phase is bounded on its own.  The bounds leave
room for harmless changes but catch a fallback to derivative-free search or a lost
gradient.
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
    phases = res.optimizer["phases"]
    assert [name for name, _ in phases] == ["descent"] + ["face"] * len(res.groups)
    assert all(n <= 30 for _, n in phases), phases
    assert res.n_evals == sum(n for _, n in phases) == len(res.optimizer["trace"])
