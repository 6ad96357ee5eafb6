"""Bad ``residual=`` / ``sigma=`` input: one clear error each, nothing evaluated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.design.residual_spec import parse_residual, parse_sigma


def _data() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"id": np.repeat(np.arange(20), 4), "visit": np.tile([1, 2, 3, 5], 20),
                      "sex": np.repeat(["f", "m"], 40)})
    d["time"] = d["visit"] + 0.25
    d["y"] = rng.normal(size=80) + rng.normal(size=20)[d["id"]]
    return d


F = "y ~ visit + (1 | id)"


def test_parse_the_three_structures() -> None:
    assert parse_residual("ar1(visit | id)").time == "visit"
    assert parse_residual(" car1( time|id ) ").kind == "car1"
    assert parse_residual("cs(1 | id)").time is None
    assert parse_residual("ar1(`my visit` | `the id`)").group == "the id"


@pytest.mark.parametrize("text, match", [
    ("arma(visit | id)", "unknown residual structure 'arma'"),
    ("ar1(visit)", "cannot parse residual structure"),
    ("ar1(1 | id)", "needs a time column"),
    ("cs(visit | id)", "cs\\(\\) takes no time"),
    ("__import__('os').system('ls')", "cannot parse residual structure"),
])
def test_bad_structures(text: str, match: str) -> None:
    with pytest.raises(hierlm.FormulaError, match=match):
        hierlm.fit(F, _data(), residual=text)


def test_sigma_formula_is_checked_not_run() -> None:
    assert parse_sigma("~ sex") == "sex"
    with pytest.raises(hierlm.FormulaError, match="one-sided formula"):
        hierlm.fit(F, _data(), sigma="sex")
    with pytest.raises(hierlm.FormulaError, match="not allowed"):
        hierlm.fit(F, _data(), sigma="~ pd.io.common.os.system('ls')")
    with pytest.raises(hierlm.FormulaError, match="needs its intercept"):
        hierlm.fit(F, _data(), sigma="~ 0 + sex")


def test_time_repeating_within_a_subject() -> None:
    d = _data()
    d.loc[1, "visit"] = 1
    with pytest.raises(hierlm.DataError, match="time 'visit' repeats within a group of 'id'"):
        hierlm.fit(F, d, residual="ar1(visit | id)")


def test_non_integer_visits_for_ar1() -> None:
    with pytest.raises(hierlm.DataError, match="ar1 needs integer visits.*car1\\(time"):
        hierlm.fit(F, _data(), residual="ar1(time | id)")
    hierlm.fit(F, _data(), residual="car1(time | id)")  # real times are car1's


def test_missing_grouping_or_time_column() -> None:
    with pytest.raises(hierlm.DataError, match="not found in data: subject"):
        hierlm.fit(F, _data(), residual="ar1(visit | subject)")
    with pytest.raises(hierlm.DataError, match="not found in data: grp"):
        hierlm.fit(F, _data(), sigma="~ grp")
    d = _data()
    d.loc[3, "time"] = np.nan
    with pytest.raises(hierlm.DataError, match="missing values: time"):
        hierlm.fit(F, d, residual="car1(time | id)")


def test_groups_not_nested_in_the_random_effects() -> None:
    d = _data()
    with pytest.raises(hierlm.MethodError, match="within one level of the random-effects"):
        hierlm.fit(F, d, residual="cs(1 | sex)")


def test_non_numeric_time() -> None:
    d = _data()
    d["visit_s"] = d["visit"].astype(str)
    with pytest.raises(hierlm.DataError, match="must be numeric"):
        hierlm.fit(F, d, residual="car1(visit_s | id)")


def test_chunked_data_are_refused(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "d.parquet"
    _data().to_parquet(path)
    with pytest.raises(hierlm.MethodError, match="in memory"):
        hierlm.fit(F, str(path), residual="ar1(visit | id)")
