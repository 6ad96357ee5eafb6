"""Each plot renders, with the model's names on its axes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierlm
from tests.conftest import dataset

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import hierlm.plots  # noqa: E402


@pytest.fixture(scope="module")
def sleep() -> hierlm.FitResult:
    return hierlm.fit("Reaction ~ Days + (Days | Subject)", dataset("sleepstudy"))


def _render(fig: object) -> None:
    fig.canvas.draw()  # type: ignore[attr-defined]
    import matplotlib.pyplot as plt

    plt.close(fig)  # type: ignore[arg-type]


def test_caterpillar(sleep: hierlm.FitResult) -> None:
    fig = hierlm.plots.caterpillar(sleep)
    assert [ax.get_xlabel() for ax in fig.axes] == ["(Intercept) | Subject", "Days | Subject"]
    assert fig.axes[0].get_ylabel() == "Subject (level)"
    ticks = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    ranef = sleep.ranef()
    days = ranef[ranef["term"] == "Days"].sort_values("value")
    assert ticks == [str(v) for v in days["level"]]
    _render(fig)


def test_variance_decomposition_shares_sum_to_one(sleep: hierlm.FitResult) -> None:
    intervals = pd.DataFrame({"lower": [14.38, 3.80, 22.90], "upper": [37.72, 8.75, 28.86]},
                             index=["sd_(Intercept)|Subject", "sd_Days|Subject", "sigma"])
    fig = hierlm.plots.variance_decomposition(sleep, intervals)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "share of the total variance"
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "(Intercept) | Subject", "Days | Subject", "Residual"]
    widths = [p.get_width() for p in ax.patches]
    assert sum(widths) == pytest.approx(1.0)
    v = sleep.varcorr["variance_or_cov"].to_numpy()[[0, 1, 3]]
    np.testing.assert_allclose(widths, v / v.sum())
    _render(fig)


def test_profile_zeta_axes() -> None:
    x = np.linspace(-2.5, 2.5, 11)
    prof = pd.DataFrame({"parameter": np.repeat(["sd_(Intercept)|Subject", "sigma"], 11),
                         "value": np.concatenate([24 + 5 * x, 25 + x]),
                         "zeta": np.concatenate([x, x])})
    fig = hierlm.plots.profile_zeta(prof)
    assert [ax.get_xlabel() for ax in fig.axes if ax.get_visible()] == [
        "sd_(Intercept)|Subject", "sigma"]
    assert fig.axes[0].get_ylabel() == "zeta"
    _render(fig)


def test_trajectories(sleep: hierlm.FitResult) -> None:
    data = dataset("sleepstudy")
    fig = hierlm.plots.trajectories(sleep, data, x="Days", group="Subject", groups=["308"])
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "Days", "Reaction", "Subject 308")
    points, line = ax.lines[0], ax.lines[1]
    rows = data[data["Subject"] == "308"].sort_values("Days")
    np.testing.assert_allclose(points.get_ydata(), rows["Reaction"])
    fitted = np.asarray(sleep.fitted())[rows.index]
    np.testing.assert_allclose(line.get_ydata(), fitted)
    _render(fig)


def test_plots_name_unknown_group(sleep: hierlm.FitResult) -> None:
    with pytest.raises(hierlm.MethodError, match="no grouping factor 'Subjet'"):
        hierlm.plots.caterpillar(sleep, group="Subjet")
