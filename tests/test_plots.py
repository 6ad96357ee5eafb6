"""Each plot renders, with the model's names on its axes."""

from __future__ import annotations

import warnings

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


def _many_levels(n_levels: int = 65) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    g = np.repeat([f"g{i:02d}" for i in range(n_levels)], 6)
    x = np.tile(np.arange(6.0), n_levels)
    b = rng.normal(0, 1.0, n_levels)
    y = 1 + 0.5 * x + np.repeat(b, 6) + rng.normal(0, 0.5, len(x))
    return pd.DataFrame({"y": y, "x": x, "g": g})


@pytest.fixture(scope="module")
def many() -> hierlm.FitResult:
    return hierlm.fit("y ~ x + (1 | g)", _many_levels())


def test_caterpillar_shows_every_level(many: hierlm.FitResult) -> None:
    fig = hierlm.plots.caterpillar(many)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert sorted(ticks) == sorted(f"g{i:02d}" for i in range(65))
    assert fig._suptitle.get_text() == "Conditional modes with 95% intervals"
    _render(fig)


def test_caterpillar_says_how_many_levels_it_shows(many: hierlm.FitResult) -> None:
    fig = hierlm.plots.caterpillar(many, max_levels=60)
    assert len(fig.axes[0].get_yticklabels()) == 60
    assert "60 of 65 levels" in fig.axes[0].get_title()
    ranef = many.ranef()
    shown = {t.get_text() for t in fig.axes[0].get_yticklabels()}
    largest = ranef.loc[ranef["value"].abs().nlargest(60).index, "level"]
    assert shown == set(largest)
    _render(fig)


def _litters() -> pd.DataFrame:
    """Pups of both sexes in each litter; the fitted curve depends on sex."""
    rng = np.random.default_rng(7)
    rows = []
    for k in range(8):
        b = rng.normal(0, 1.0)
        for j in range(10):
            sex = "F" if j % 2 == 0 else "M"
            dose = rng.uniform(0, 10)
            rows.append((f"L{k}", sex, dose,
                         5 + 0.3 * dose + 2.0 * (sex == "M") + b + rng.normal(0, 0.3)))
    return pd.DataFrame(rows, columns=["litter", "sex", "dose", "weight"])


@pytest.fixture(scope="module")
def litters() -> tuple[pd.DataFrame, hierlm.FitResult]:
    data = _litters()
    return data, hierlm.fit("weight ~ dose + sex + (1 | litter)", data)


def _legend_texts(fig: object) -> list[str]:
    legends = fig.legends  # type: ignore[attr-defined]
    assert len(legends) == 1
    return [t.get_text() for t in legends[0].get_texts()]


def test_trajectories_one_line_per_level_of_by(
        litters: tuple[pd.DataFrame, hierlm.FitResult]) -> None:
    data, res = litters
    fig = hierlm.plots.trajectories(res, data, x="dose", group="litter", by="sex")
    ax = fig.axes[0]
    assert ax.get_title() == "litter L0"
    fitted = np.asarray(res.fitted())
    lines = [ln for ln in ax.lines if ln.get_linestyle() == "-"]
    assert len(lines) == 2 and len(ax.lines) == 4
    for line, sex in zip(lines, ["F", "M"], strict=True):
        rows = data[(data["litter"] == "L0") & (data["sex"] == sex)].sort_values("dose")
        np.testing.assert_allclose(line.get_xdata(), rows["dose"])
        np.testing.assert_allclose(line.get_ydata(), fitted[rows.index])
        assert np.all(np.diff(line.get_xdata()) >= 0)
    assert _legend_texts(fig) == ["observed", "fitted", "sex: F", "sex: M"]
    _render(fig)


def test_trajectories_has_a_legend(sleep: hierlm.FitResult) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = hierlm.plots.trajectories(sleep, dataset("sleepstudy"), x="Days",
                                        group="Subject")
    assert _legend_texts(fig) == ["observed", "fitted"]
    _render(fig)


def test_trajectories_does_not_zigzag_without_by(
        litters: tuple[pd.DataFrame, hierlm.FitResult]) -> None:
    data, res = litters
    with pytest.warns(UserWarning, match="'sex' varies within litter.*by='sex'"):
        fig = hierlm.plots.trajectories(res, data, x="dose", group="litter")
    ax = fig.axes[0]
    assert [ln for ln in ax.lines if ln.get_linestyle() == "-"] == []
    _render(fig)


@pytest.fixture(scope="module")
def sleep_nuts() -> hierlm.FitResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hierlm.fit("Reaction ~ Days + (Days | Subject)", dataset("sleepstudy"),
                          method="nuts", draws=200, tune=200, chains=2, random_seed=3,
                          progressbar=False, sampler="pymc", cores=1)


def test_caterpillar_of_a_nuts_fit_shows_posterior_intervals(
        sleep_nuts: hierlm.FitResult) -> None:
    fig = hierlm.plots.caterpillar(sleep_nuts)
    assert fig._suptitle.get_text() == "Posterior means with 95% equal-tailed intervals"
    ax = fig.axes[1]
    assert ax.get_xlabel() == "Days | Subject"
    r = sleep_nuts.idata["posterior"]["r_Subject"].sel(Subject_term="Days")
    r = r.transpose("chain", "draw", "Subject_level")
    draws = r.values.reshape(-1, r.sizes["Subject_level"])
    levels = [str(v) for v in r["Subject_level"].values]
    lo, hi = np.quantile(draws, [0.025, 0.975], axis=0)
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    segments = ax.collections[0].get_segments()
    assert len(ticks) == len(segments) == 18
    for tick, seg in zip(ticks, segments, strict=True):
        k = levels.index(tick)
        np.testing.assert_allclose([seg[0][0], seg[1][0]], [lo[k], hi[k]], rtol=1e-12)
    means = [draws[:, levels.index(t)].mean() for t in ticks]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), means, rtol=1e-10)
    _render(fig)


def test_forest_sets_reml_beside_nuts(sleep: hierlm.FitResult,
                                      sleep_nuts: hierlm.FitResult) -> None:
    from scipy import stats

    fig = hierlm.plots.forest([sleep, sleep_nuts])
    assert _legend_texts(fig) == ["REML", "NUTS"]
    assert fig._suptitle.get_text() == ("Thin: 95%, thick: 50% intervals "
                                        "(REML: Wald, beta only; NUTS: equal-tailed)")
    spans = [np.asarray(ln.get_xdata(), float) for ax in fig.axes for ln in ax.lines
             if len(ln.get_xdata()) == 2]
    points = np.concatenate([c.get_offsets()[:, 0] for ax in fig.axes for c in ax.collections
                             if len(c.get_offsets())])

    def shown(lower: float, upper: float) -> bool:
        return any(np.allclose(s, [lower, upper], rtol=1e-12) for s in spans)

    z = stats.norm.ppf(0.975)
    beta = sleep_nuts.idata["posterior"]["beta"]
    for coef in ["(Intercept)", "Days"]:
        est, se = sleep.fixef[coef], sleep.fixef_se[coef]
        assert shown(est - z * se, est + z * se), coef            # REML: Wald interval
        assert np.isclose(points, est, rtol=1e-12).any()
        draws = beta.sel(coef=coef).values.ravel()
        assert shown(*np.quantile(draws, [0.025, 0.975])), coef   # NUTS: posterior ETI
        assert np.isclose(points, draws.mean(), rtol=1e-12).any()
    _render(fig)


def test_forest_names_a_bad_input(sleep: hierlm.FitResult) -> None:
    with pytest.raises(hierlm.MethodError, match="no variable 'bta'"):
        hierlm.plots.forest([sleep], var_names=["bta"])


def test_forest_takes_a_reml_bootstrap(sleep: hierlm.FitResult,
                                       sleep_nuts: hierlm.FitResult) -> None:
    from tests.results.test_datatree import small_bootstrap

    boot = small_bootstrap(sleep, n=12)
    fig = hierlm.plots.forest([(sleep, boot), sleep_nuts], var_names=["sd_Subject", "sigma"])
    assert _legend_texts(fig) == ["REML bootstrap", "NUTS"]
    assert "REML bootstrap: bootstrap percentile; NUTS: equal-tailed" in fig._suptitle.get_text()
    spans = [np.asarray(ln.get_xdata(), float) for ax in fig.axes for ln in ax.lines
             if len(ln.get_xdata()) == 2]
    for column in ["sd_Days|Subject", "sigma"]:
        want = np.quantile(boot.replicates[column], [0.025, 0.975])
        assert any(np.allclose(s, want, rtol=1e-12) for s in spans), column
    _render(fig)
