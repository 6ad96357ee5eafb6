"""The class Gram matrices give the row-by-row whitened criterion (itself checked
against a dense brute force in test_residual_gram.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hierlm.design.residual_design import design_with_residual
from hierlm.objective import compile_objective
from hierlm.objective.residual_classes import class_gram
from hierlm.objective.residual_gram import whitened_design
from tests.objective.test_residual_gram import _data


@pytest.mark.parametrize("residual, sigma, rho", [
    ("ar1(visit | id)", None, 0.6),
    ("ar1(visit | id)", "~ grp", -0.4),      # gaps and a factor varying between subjects
    ("ar1(visit | id)", "~ tri", 0.3),       # a factor varying within subjects
    (None, "~ grp * tri", 0.0),
    ("car1(time | id)", "~ grp", 0.7),       # real times: one class per distinct gap
])
@pytest.mark.parametrize("reml", [True, False])
def test_class_gram_equals_row_whitening(residual: str | None, sigma: str | None, rho: float,
                                         reml: bool) -> None:
    d = _data()
    des, rd = design_with_residual("y ~ x + (1 + x | id)", d, residual, sigma)
    cg = class_gram(des, rd)
    assert cg is not None
    delta = np.linspace(-0.5, 0.4, rd.V.shape[1])
    theta = np.array([0.8, 0.2, 0.5])
    gram, logdet = cg.gram(rho, delta)
    wd, logdet_rows = whitened_design(des, rd, rho, delta)
    assert logdet == pytest.approx(logdet_rows, rel=1e-12, abs=1e-12)
    got = compile_objective(des, gram)(theta, reml) + logdet
    want = compile_objective(wd)(theta, reml) + logdet_rows
    assert got == pytest.approx(want, rel=1e-11)


def test_row_path_where_classes_do_not_apply() -> None:
    d = _data()
    des, rd = design_with_residual("y ~ x + (1 | id)", d, "cs(1 | id)", None)
    assert class_gram(des, rd) is None
    w = pd.Series(np.linspace(1, 2, len(d)), index=d.index)
    des, rd = design_with_residual("y ~ x + (1 | id)", d.assign(w=w), "ar1(visit | id)",
                                   None, weights="w")
    assert class_gram(des, rd) is None
