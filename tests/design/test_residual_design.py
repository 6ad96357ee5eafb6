"""The residual structure on the rows: predecessors and gaps in any row order, nesting
in the random effects, and the log-SD model matrix for new rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hierlm.design.residual_design import design_with_residual


def test_predecessors_and_gaps_in_any_row_order() -> None:
    d = pd.DataFrame({"id": ["b", "a", "b", "a", "a", "b"], "t": [5, 3, 1, 1, 2, 2],
                      "y": [1.0, 2.0, 0.5, 1.5, 0.2, 0.9], "g": ["u", "v", "u", "v", "v", "u"]},
                     index=[10, 11, 12, 13, 14, 15])
    des, rd = design_with_residual("y ~ 1 + (1 | id)", d, "ar1(t | id)", "~ g")
    # a: rows 3 (t=1), 4 (t=2), 1 (t=3); b: rows 2 (t=1), 5 (t=2), 0 (t=5)
    assert rd.prev.tolist() == [5, 4, -1, -1, 3, 2]
    assert rd.gap.tolist() == [3.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    assert des.row_labels.tolist() == [10, 11, 12, 13, 14, 15]
    assert rd.v_names == ("gv",)
    np.testing.assert_array_equal(rd.V[:, 0], [0, 1, 0, 1, 1, 0])
    new = pd.DataFrame({"g": ["v", "u"]})
    np.testing.assert_array_equal(rd.v_of(new)[:, 0], [1.0, 0.0])


def test_rows_dropped_for_missing_predictors_keep_their_labels() -> None:
    d = pd.DataFrame({"id": [1, 1, 1, 2, 2, 2], "t": [1, 2, 3, 1, 2, 3],
                      "x": [0.1, np.nan, 0.3, 0.4, 0.5, 0.6],
                      "y": [1.0, 2.0, 0.5, 1.5, 0.2, 0.9]}, index=list("abcdef"))
    with pytest.warns(UserWarning, match="dropped 1 of 6 rows"):
        des, rd = design_with_residual("y ~ x + (1 | id)", d, "ar1(t | id)", None)
    assert des.row_labels.tolist() == ["a", "c", "d", "e", "f"]
    assert des.dropped_rows.tolist() == ["b"]
    assert rd.gap.tolist() == [0.0, 2.0, 0.0, 1.0, 1.0]  # the gap over the dropped row
