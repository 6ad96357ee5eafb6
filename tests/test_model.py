"""Model and fit: the garbage collector is paused during a fit and restored after it."""

import gc

import pytest

import hierlm
import hierlm.estimate.frequentist as frequentist


@pytest.fixture()
def model() -> hierlm.Model:
    return hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())


@pytest.mark.parametrize("enabled", [True, False])
def test_collector_paused_during_fit_and_restored(model, monkeypatch, enabled: bool) -> None:
    seen = []
    real = frequentist.fit_profiled

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    monkeypatch.setattr(frequentist, "fit_profiled", spy)
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        res = model.fit("ml")
        after = gc.isenabled()
    finally:
        (gc.enable if was else gc.disable)()
    assert seen == [False]
    assert after is enabled
    assert res.objective == pytest.approx(1751.93934, abs=1e-4)  # lme4's ML deviance


def test_collector_restored_when_a_fit_fails(model, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("inside the fit")

    monkeypatch.setattr(frequentist, "fit_profiled", boom)
    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="inside the fit"):
        model.fit("reml")
    assert gc.isenabled()
