"""A response the model reproduces exactly has no estimate: one clear DataError."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.errors import DataError
from tests.test_hard_designs import near_perfect_data


def group_number_data() -> pd.DataFrame:
    """``y`` = the group number (8 groups of 5 rows) beside a fixed ``x``.

    The REML criterion decreases without bound along theta -> infinity (sigma -> 0);
    its limit has intercept 4.5 (the mean of the group means) and slope 0.  lme4
    1.1-31 on these data stops at intercept 4.571, sigma 8.7e-8, with "unable to
    evaluate scaled gradient" and "Hessian is numerically singular" warnings.
    """
    d = pd.DataFrame({"g": np.repeat(np.arange(1, 9), 5),
                      "x": np.tile([0.3, -1.2, 0.8, 2.1, -0.5], 8)})
    d["y"] = d["g"].astype(float)
    d["g"] = [f"s{k}" for k in d["g"]]
    return d


@pytest.mark.parametrize("method", ["reml", "ml"])
def test_response_constant_within_groups_is_an_error_naming_the_group(method: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DataError, match=r"reproduced exactly .* random effects of g"):
            hierlm.fit("y ~ x + (1 | g)", group_number_data(), method)


def test_a_small_residual_is_not_an_exact_fit() -> None:
    """Noise 1e-6 of the signal: a (hard) fit, not an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit("y ~ x + (1 | g)", near_perfect_data(1e-6))
    assert 5e-7 < res.sigma < 2e-6
