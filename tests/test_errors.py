"""Warnings point at the caller's line; bad sampler arguments are one clear error."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.errors import MethodError, SingularFitWarning


def test_warnings_point_at_the_callers_line() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 2.0, 20)
    # every group's mean is 0: the between-group variance is estimated as 0 (singular)
    y = (a[:, None] * np.array([-1.0, 0.0, 1.0])).ravel()
    data = pd.DataFrame({"y": y, "g": np.repeat(np.arange(20), 3)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hierlm.fit("y ~ 1 + (1 | g)", data)
        hierlm.Model("y ~ 1 + (1 | g)", data).fit("ml")
        hierlm.fit("y ~ 1 + (1 | g)", data.assign(y=data.y.where(data.index != 1)))
    singular = [w for w in caught if issubclass(w.category, SingularFitWarning)]
    dropped = [w for w in caught if "missing values" in str(w.message)]
    assert len(singular) == 3 and len(dropped) == 1
    assert all(w.filename == __file__ for w in singular + dropped), [w.filename for w in caught]


def test_misspelt_sampler_argument_is_one_method_error() -> None:
    m = hierlm.Model("Reaction ~ Days + (1 | Subject)", hierlm.load_sleepstudy())
    with pytest.raises(MethodError, match=r"unexpected argument\(s\) for method='nuts': draw; "
                                          r"valid arguments: draws, tune, chains"):
        m.fit("nuts", draw=10)
