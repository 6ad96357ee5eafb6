"""A structure's fit code compiled in a background process when a warm process finds it
not cached (:func:`hierlm.estimate.descent_loop.warm_up`,
:mod:`hierlm.estimate.fit_warm_up`), and loaded once that process has ended."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import hierlm
from hierlm.estimate import background, descent_loop, fit_warm_up, psi_call

_COLD = """
import json, sys, warnings
import hierlm
from hierlm.estimate import background, descent_loop, kernel_loop, psi_call
from hierlm.objective import numpy_link
warnings.simplefilter("ignore")
numpy_link.PROCESS_BUDGET_S = 0.0
kernel_loop._LOOP[:] = [None]         # the structure's own code (not the kernel's loop)
d = hierlm.load_sleepstudy()
f = "Reaction ~ Days + (Days | Subject)"
hierlm.fit(f, d)                       # warm: the load starts, finds nothing cached
background.wait()
procs = [p for p in descent_loop._WARMING.values() if p is not None]
codes = [p.wait() for p in procs]      # the warm-up process compiles
hierlm.fit(f, d)                       # its end seen: loaded again, from the cache
background.wait()
m = hierlm.Model(f, d)
print(json.dumps([codes, descent_loop.loop_for(m.objective) is not None,
                  hierlm.fit(f, d).optimizer["message"]]))
"""


def run_cold(script: str, tmp_path: Path) -> list:
    """The last line of ``script``'s output (JSON), run in a new process with empty
    Numba and PyTensor caches under ``tmp_path`` and background loads on."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               PYTENSOR_FLAGS=f"base_compiledir={tmp_path / 'pytensor'}",
               PYTHONPATH=str(Path(hierlm.__file__).resolve().parents[1]),
               HIERLM_BACKGROUND_LOADS="1")  # (the tests' conftest turns it off)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=1500, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_cold_caches_compile_in_a_process_then_load(tmp_path: Path) -> None:
    codes, loaded, message = run_cold(_COLD, tmp_path)
    assert codes == [0] and loaded and message.startswith("CONVERGENCE")


def test_a_finished_warm_up_starts_the_load_again(monkeypatch: pytest.MonkeyPatch) -> None:
    class Ended:
        def poll(self) -> int:
            return 0

    m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    key = m.objective.structure
    monkeypatch.setattr(descent_loop, "_LOOPS", {})
    monkeypatch.setattr(descent_loop, "_WARMING", {key: Ended()})
    monkeypatch.setattr(background, "_STARTED", set())
    monkeypatch.setattr(psi_call, "_LOADED", {})
    call = psi_call.PsiCall(m.objective, psi_call.DesignCovariance.of(m.design))
    run = descent_loop.CompiledDescent(m.objective, call, True, [], {"f": float("inf")})
    assert run(None, None, None, {}) is None  # no loop yet: SciPy's driver runs
    assert ("psi_call", key, 2) in background._STARTED and descent_loop._WARMING[key] is None
    background.wait()


def test_no_warm_up_where_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    monkeypatch.setattr(descent_loop, "_WARMING", {})
    monkeypatch.setenv("HIERLM_BACKGROUND_LOADS", "0")
    assert descent_loop.warm_up(m.objective) is None and descent_loop._WARMING == {}


@pytest.mark.parametrize("name", ["notes.pkl", "hierlm-fit-warm-up-x.txt"])
def test_entry_point_leaves_other_files_alone(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"not a pickle hierlm wrote")
    assert fit_warm_up.main([str(path)]) == 2
    assert path.read_bytes() == b"not a pickle hierlm wrote"
