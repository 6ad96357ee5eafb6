"""Both samplers run with their progress bar on where matplotlib is not installed.

Where it is installed (the dev extra installs it for ``hierlm.plots``), the tests hide
it: ``sys.modules`` entries of None make ``import matplotlib`` fail and
``importlib.util.find_spec`` report it missing, as on a plain install.
"""

from __future__ import annotations

import sys
import warnings

import pytest

import hierlm
from hierlm.estimate.pymc_progress import _rgb, progress_bar_without_matplotlib


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("matplotlib", "matplotlib.colors", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize(("name", "rgb"), [  # matplotlib.colors.to_rgb's values
    ("red", (1.0, 0.0, 0.0)), ("#ff8000", (1.0, 128 / 255, 0.0)), ("white", (1.0, 1.0, 1.0)),
    ("tab:red", (214 / 255, 39 / 255, 40 / 255)), ("green", (0.0, 128 / 255, 0.0))])
def test_rgb_matches_matplotlib(name: str, rgb: tuple[float, float, float]) -> None:
    assert _rgb(name) == pytest.approx(rgb)


@pytest.mark.usefixtures("no_matplotlib")
def test_pymc_bar_column_builds_inside_and_is_restored_after() -> None:
    from pymc.progress_bar.rich_progress import CustomBarColumn

    original = CustomBarColumn.__init__
    with pytest.raises(ModuleNotFoundError, match="matplotlib"):
        CustomBarColumn()
    with progress_bar_without_matplotlib():
        col = CustomBarColumn(failing_color="tab:red")
        assert col.failing_rgb == [214, 39, 40]
        assert col.default_complete_style == col.complete_style
    assert CustomBarColumn.__init__ is original


@pytest.mark.usefixtures("no_matplotlib")
@pytest.mark.parametrize("sampler", ["pymc", "nutpie"])
def test_nuts_fit_with_progress_bar(sampler: str, capsys: pytest.CaptureFixture[str]) -> None:
    df = hierlm.load_sleepstudy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = hierlm.fit("Reaction ~ 1 + Days + (1 + Days | Subject)", df, method="nuts",
                         draws=30, tune=30, chains=2, cores=1, random_seed=5,
                         progressbar=True, sampler=sampler)
    assert res.nuts.sampler == sampler
    assert res.idata["posterior"].sizes["draw"] == 30
