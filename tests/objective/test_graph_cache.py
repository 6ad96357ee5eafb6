"""Rewritten graphs kept on disk: a loaded graph computes what a fresh compile does.

The reference is PyTensor's own compiled function of the same graph, never cached.
The profiled objective has in-place ops, so a loaded graph that lost their ordering
would give different numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytensor
import pytest

import hierlm
from hierlm.objective import graph_cache
from hierlm.objective.profiled import _build, gram_values


@pytest.fixture()
def sleep_objective() -> hierlm.Model:
    return hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy()).objective


def _args(obj, theta: np.ndarray, reml: float) -> list[np.ndarray]:
    return [theta, np.asarray(reml), np.asarray(float(obj.gram.n)),
            np.asarray(float(obj.gram.p)), *gram_values(obj.gram)]


def test_loaded_graph_equals_fresh_compile(sleep_objective, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph_cache, "cache_dir", lambda: tmp_path)
    s = sleep_objective.structure
    inputs, outputs, _ = _build(s)
    reference = pytensor.function(inputs, outputs, on_unused_input="ignore")
    first = graph_cache.compile_graph("test-profiled", s, lambda: _build(s))
    second = graph_cache.compile_graph("test-profiled", s, lambda: _build(s))
    assert not first.loaded and second.loaded
    assert len(list(tmp_path.glob("test-profiled-*.pkl"))) == 1
    for theta, reml in (([0.9, 0.02, 0.2], 1.0), ([1.3, -0.4, 0.5], 0.0)):
        args = _args(sleep_objective, np.asarray(theta), reml)
        want = reference(*args)
        for g in (first, second):
            for fn in (g.fn, g.python_fn):
                got = fn(*args)
                for a, b in zip(got, want, strict=True):
                    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_wrapper_loads_without_the_graph(sleep_objective, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """With Numba's cache empty, ``python_fn`` first fails to type its stand-in callee
    and compiles against the graph; a second wrapper then loads from Numba's cache
    with the stand-in (the graph is never converted) and gives the same numbers."""
    import pytensor.link.numba.cache as numba_cache

    monkeypatch.setattr(graph_cache, "cache_dir", lambda: tmp_path / "graphs")
    (tmp_path / "numba").mkdir()
    monkeypatch.setattr(numba_cache, "NUMBA_CACHE_PATH", tmp_path / "numba")
    s = sleep_objective.structure
    g = graph_cache.compile_graph("test-profiled", s, lambda: _build(s))
    args = _args(sleep_objective, np.array([0.92922, 0.01817, 0.22264]), 0.0)
    compiled = graph_cache._WarmCall(g)
    got = compiled(*args)
    assert not compiled._stand_in  # it had to compile
    assert float(got[0]) == pytest.approx(1751.93934, abs=1e-4)  # lme4's deviance
    loaded = graph_cache._WarmCall(graph_cache.compile_graph("test-profiled", s, None))
    again = loaded(*args)
    assert loaded._stand_in  # loaded from Numba's cache, stand-in never typed
    for a, b in zip(again, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_unreadable_file_is_rebuilt(sleep_objective, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph_cache, "cache_dir", lambda: tmp_path)
    s = sleep_objective.structure
    graph_cache.compile_graph("test-profiled", s, lambda: _build(s))
    (path,) = tmp_path.glob("test-profiled-*.pkl")
    path.write_bytes(b"not a pickle")
    again = graph_cache.compile_graph("test-profiled", s, lambda: _build(s))
    assert not again.loaded
    obj = float(again.fn(*_args(sleep_objective, np.array([0.92922, 0.01817, 0.22264]), 0.0))[0])
    assert obj == pytest.approx(1751.93934, abs=1e-4)  # lme4 / MixedModels.jl deviance


def test_cache_can_be_turned_off(sleep_objective, tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIERLM_GRAPH_CACHE", "0")
    assert graph_cache.cache_dir() is None
    s = sleep_objective.structure
    g = graph_cache.compile_graph("test-profiled", s, lambda: _build(s))
    assert g.digest is None and not g.loaded
