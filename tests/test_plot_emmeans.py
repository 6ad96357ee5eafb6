"""The emmeans interaction plot and the pairwise-comparison plot render what they are given."""

from __future__ import annotations

import numpy as np
import pytest

from hierlm.errors import MethodError
from tests.inference.test_emmeans import fit_of

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import hierlm.plots  # noqa: E402


def test_interaction_plot_draws_each_mean_with_its_interval() -> None:
    em = fit_of("twofactor").emmeans(["A", "B"])
    fig = hierlm.plots.emmeans(em)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "A" and [t.get_text() for t in ax.get_xticklabels()] == \
        ["a1", "a2", "a3"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["B = b1", "B = b2"]
    ys = np.concatenate([np.asarray(c.lines[0].get_ydata(), float) for c in ax.containers])
    np.testing.assert_allclose(np.sort(ys), np.sort(em.table["emmean"]))
    fig.canvas.draw()
    plt.close(fig)


def test_panels_for_a_second_by_variable() -> None:
    em = fit_of("chickweight").emmeans("Diet", by="Time", at={"Time": [0, 10, 20]})
    fig = hierlm.plots.emmeans(em)
    assert fig.axes[0].get_legend() is not None  # lines by Time
    plt.close(fig)


def test_pairs_plot_shows_each_difference_and_its_tukey_interval() -> None:
    em = fit_of("twofactor").emmeans("A")
    fig = hierlm.plots.emmeans_pairs(em)
    ax = fig.axes[0]
    p = em.pairs(intervals=True)
    assert [t.get_text() for t in ax.get_yticklabels()] == p["contrast"].tolist()
    assert "tukey" in ax.get_xlabel()
    fig.canvas.draw()
    plt.close(fig)


def test_plots_refuse_other_objects() -> None:
    with pytest.raises(MethodError, match="EMMeans"):
        hierlm.plots.emmeans(fit_of("twofactor"))
