"""The design's column reads against the plain pandas and NumPy expressions they replace.

The fitting rows' frame, the grouping factors' codes (single text or integer columns,
their interactions) and the text factors' codes are computed without a label per row
(:mod:`hierlm.design.fitting_rows`, :mod:`hierlm.design.column_reads`); each is checked
here against the per-row computation: ``np.unique`` of the joined labels,
``pd.factorize(sort=True)``, ``data[cols].reset_index(drop=True)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm
from hierlm.design.column_reads import PYTHON_ROWS, arrow_text_codes, interaction_codes
from hierlm.design.fitting_rows import FittingRows
from hierlm.design.matrices import build_design


def _joined(columns: list[pd.Series]) -> np.ndarray:
    labels = columns[0].astype(str)
    for c in columns[1:]:
        labels = labels + ":" + c.astype(str)
    return labels.to_numpy(dtype=object)


@pytest.mark.parametrize("seed", range(6))
def test_interaction_codes_match_unique_of_the_joined_labels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    text = np.array(["b", "B", "a10", "a9", "é", "1", "10"])
    cols = [pd.Series(text[rng.integers(0, len(text), n)], dtype="str"),
            pd.Series(rng.integers(-3, 12, n)),
            pd.Series(text[rng.integers(0, 3, n)], dtype="str")][: 2 + seed % 2]
    codes, labels = interaction_codes(cols)
    uniques, want = np.unique(_joined(cols), return_inverse=True)
    assert labels == tuple(uniques)
    np.testing.assert_array_equal(codes, want)
    assert codes.dtype == np.int64


def test_labels_that_collide_leave_the_interaction_to_the_row_labels() -> None:
    # "1:2" + "3" and "1" + "2:3" write the same label: one level, as R's interaction
    a = pd.Series(["1:2", "1", "x", "1:2"], dtype="str")
    b = pd.Series(["3", "2:3", "z", "z"], dtype="str")
    assert interaction_codes([a, b]) is None
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"y": rng.normal(size=40), "a": np.resize(a.to_numpy(), 40),
                         "b": np.resize(b.to_numpy(), 40)})
    d = build_design("y ~ 1 + (1 | a/b)", data)
    nested = next(t for t in d.terms if t.group == "b:a")
    uniques, want = np.unique(_joined([data["b"], data["a"]]), return_inverse=True)
    assert nested.levels == tuple(uniques)
    np.testing.assert_array_equal(nested.codes, want)


@pytest.mark.parametrize("n", [PYTHON_ROWS - 1, PYTHON_ROWS + 1, 5 * PYTHON_ROWS])
def test_text_codes_by_dict_and_by_arrow_match_unique(n: int) -> None:
    rng = np.random.default_rng(n)
    labels = np.array(["q", "Q", "a10", "a9", "ä", "Z", "b"])
    col = pd.Series(labels[rng.integers(0, len(labels), n)], dtype="str")
    codes, levels = arrow_text_codes(col)
    uniques, want = np.unique(col.to_numpy(dtype=object), return_inverse=True)
    assert levels == tuple(uniques)
    np.testing.assert_array_equal(codes, want)
    with_missing = col.copy()
    with_missing.iloc[3] = None
    assert arrow_text_codes(with_missing) is None


def test_integer_grouping_matches_factorize() -> None:
    rng = np.random.default_rng(5)
    g = rng.choice([7, -2, 40, 3, 11], size=90)
    data = pd.DataFrame({"y": rng.normal(size=90), "x": rng.normal(size=90),
                         "g": g.astype(np.int32)})
    term = build_design("y ~ x + (1 | g)", data).terms[0]
    codes, uniques = pd.factorize(data["g"], sort=True)
    np.testing.assert_array_equal(term.codes, codes)
    assert term.levels == tuple(str(v) for v in uniques)
    pd.testing.assert_index_equal(term.values, pd.Index(uniques))


def test_fitting_rows_frame_is_the_used_columns_relabelled_and_kept() -> None:
    data = hierlm.load_sleepstudy()
    data["unused"] = 1.0
    data.index = data.index * 3 + 7
    data["g"] = pd.Categorical(data["Subject"].astype(str),
                               categories=sorted(set(data["Subject"].astype(str))) + ["none"])
    used = ["Reaction", "Days", "g"]
    expected = data[used].reset_index(drop=True)
    expected["g"] = expected["g"].cat.remove_unused_categories()
    rows = FittingRows(data, used, [data[c] for c in used], ["g"])
    data.loc[data.index[0], "Days"] = 99  # in place, after the rows were read
    data["Reaction"] = 0.0
    pd.testing.assert_frame_equal(rows.frame, expected)
    assert list(rows["g"].cat.categories) == list(expected["g"].cat.categories)
    d = build_design("Reaction ~ Days + (1 | g)", data.assign(Reaction=expected["Reaction"]
                                                                .to_numpy()))
    assert d.terms[0].levels == tuple(expected["g"].cat.categories)
    assert d.row_labels.tolist() == data.index.tolist()


def test_row_labels_are_the_labels_at_the_time_of_the_fit() -> None:
    data = hierlm.load_sleepstudy()
    res = hierlm.fit("Reaction ~ Days + (1 | Subject)", data)
    data.index.name = "obs"  # the Index object itself renamed, after the fit
    data.index = data.index + 1000
    pd.testing.assert_index_equal(res.row_labels, pd.RangeIndex(180), exact=True)
    pd.testing.assert_index_equal(res.dropped_rows, pd.RangeIndex(0), exact=True)
    assert res.fitted().index.equals(pd.RangeIndex(180))


@pytest.mark.parametrize(("noise", "exact"), [(0.0, True), (1e-16, True), (1e-11, False),
                                               (1e-3, False)])
def test_exact_fit_check_near_and_far_from_zero_residuals(noise: float, exact: bool) -> None:
    # the quick pass (the factor of [X y]) skips the least squares only far from zero;
    # residuals of 1e-11 max|y| are not an exact fit, 1e-16 are (below 1e-13 max|y|)
    rng = np.random.default_rng(2)
    n = 60
    data = pd.DataFrame({"x": rng.normal(size=n), "g": np.repeat(list("abcdef"), 10)})
    y = 3.0 + 2.0 * data["x"].to_numpy()
    data["y"] = y + noise * np.max(np.abs(y)) * rng.choice([-1.0, 1.0], size=n)
    if exact:
        with pytest.raises(hierlm.DataError, match="exact linear function"):
            build_design("y ~ x + (1 | g)", data)
    else:
        assert build_design("y ~ x + (1 | g)", data).nobs == n
