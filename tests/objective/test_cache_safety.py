"""A damaged or unwritable cache costs time, never a wrong answer or a crash.

Each case is checked against a value from outside the cache: lme4's sleepstudy
deviance, or PyTensor's own compiled function of the same graph.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytensor
import pytest

import hierlm
from hierlm.objective import graph_cache
from hierlm.objective.profiled import _build, gram_values

LME4_ML = 1751.93934  # lme4 / MixedModels.jl deviance of sleepstudy at this theta
THETA = [0.92922, 0.01817, 0.22264]


def _args(obj, theta: list[float], reml: float) -> list[np.ndarray]:
    return [np.asarray(theta, dtype=float), np.asarray(reml), np.asarray(float(obj.gram.n)),
            np.asarray(float(obj.gram.p)), *gram_values(obj.gram)]


def test_swapped_graph_files_are_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graph_cache, "cache_dir", lambda: tmp_path)
    data = hierlm.load_sleepstudy()
    slope = hierlm.Model("Reaction ~ Days + (Days | Subject)", data).objective
    icept = hierlm.Model("Reaction ~ Days + (1 | Subject)", data).objective
    s1, s2 = slope.structure, icept.structure
    assert s1 != s2
    graph_cache.compile_graph("profiled", s1, lambda: _build(s1), "vm")
    graph_cache.compile_graph("profiled", s2, lambda: _build(s2), "vm")
    (f1,) = tmp_path.glob(f"profiled-{graph_cache._location('profiled', s1, 'vm')[0]}.pkl")
    (f2,) = tmp_path.glob(f"profiled-{graph_cache._location('profiled', s2, 'vm')[0]}.pkl")
    a, b = f1.read_bytes(), f2.read_bytes()
    f1.write_bytes(b)
    f2.write_bytes(a)
    g1 = graph_cache.compile_graph("profiled", s1, lambda: _build(s1), "vm")
    g2 = graph_cache.compile_graph("profiled", s2, lambda: _build(s2), "vm")
    assert not g1.loaded and not g2.loaded
    assert float(g1.vm_fn(*_args(slope, THETA, 0.0))[0]) == pytest.approx(LME4_ML, abs=1e-4)
    inputs, outputs, _ = _build(s2)
    want = pytensor.function(inputs, outputs, on_unused_input="ignore")(
        *_args(icept, [0.8], 1.0))
    got = g2.vm_fn(*_args(icept, [0.8], 1.0))
    np.testing.assert_allclose(float(got[0]), float(want[0]), rtol=1e-12)
    # and rewritten with the right graph: loaded again from now on
    assert graph_cache.compile_graph("profiled", s1, lambda: _build(s1), "vm").loaded


# A small graph through the Numba path that bootstrap and NUTS use (python_fn: the
# graph's Numba function behind a cached wrapper), in a fresh process.
_NUMBA = """
import numpy as np
import pytensor.tensor as pt
from hierlm.objective import graph_cache

def build():
    x = pt.vector("x")
    return [x], [(x ** 2).sum() + pt.exp(x).sum()], {}

g = graph_cache.compile_graph("cache-safety", 1, build)
print("VALUE", repr(float(g.python_fn(np.array([0.5, -1.0, 2.0]))[0])))
"""
WANT = 0.25 + 1.0 + 4.0 + float(np.exp([0.5, -1.0, 2.0]).sum())


def _run(compiledir: Path, prefix: list[str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={compiledir}"}
    env.pop("NUMBA_CACHE_DIR", None)
    return subprocess.run([*(prefix or []), sys.executable, "-c", _NUMBA],
                          capture_output=True, text=True, env=env, timeout=600)


def _value(out: subprocess.CompletedProcess) -> float:
    assert out.returncode == 0, out.stderr[-3000:]
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("VALUE")]
    return float(line.split()[1])


def test_truncated_numba_cache_files_are_compiled_again(tmp_path: Path) -> None:
    assert _value(_run(tmp_path)) == pytest.approx(WANT, rel=1e-14)
    files = [p for p in (tmp_path / "numba").iterdir() if p.suffix in (".nbi", ".nbc")]
    assert files
    for p in files:
        p.write_bytes(p.read_bytes()[:10])
    assert _value(_run(tmp_path)) == pytest.approx(WANT, rel=1e-14)
    assert _value(_run(tmp_path)) == pytest.approx(WANT, rel=1e-14)  # files rewritten


def _read_only(folder: Path) -> list[str] | None:
    """A command prefix that runs with ``folder`` read-only, or None if impossible.

    Root ignores the mode bits, so under root the folder is bind-mounted read-only in
    a private mount namespace (``unshare -m``)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    if shutil.which("unshare") is None:
        return None
    probe = subprocess.run(["unshare", "-m", "sh", "-c",
                            f"mount --bind -o ro '{folder}' '{folder}' && "
                            f"! touch '{folder}/probe' 2>/dev/null"], capture_output=True)
    if probe.returncode != 0:
        return None
    return ["unshare", "-m", "sh", "-c",
            f"mount --bind -o ro '{folder}' '{folder}' && exec \"$0\" \"$@\""]


def test_an_empty_read_only_compile_directory_costs_only_time() -> None:
    folder = Path(tempfile.mkdtemp())  # not under a folder only root may enter
    try:
        prefix = _read_only(folder)
        if prefix is None:
            pytest.skip("running as root without a way to make a read-only folder "
                        "(no unshare/mount)")
        assert _value(_run(folder, prefix)) == pytest.approx(WANT, rel=1e-14)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def test_ctrl_c_swallowed_inside_a_first_compile_still_interrupts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGINT whose KeyboardInterrupt is swallowed inside the compile (as C code
    that clears errors does, when the interrupt lands in an ``__eq__`` it calls) still
    stops the caller: compile_graph raises KeyboardInterrupt when it ends."""
    import signal

    monkeypatch.setattr(graph_cache, "cache_dir", lambda: tmp_path)
    arrived = []

    def build():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs at the next bytecode boundary
                pass
        except KeyboardInterrupt:
            arrived.append(True)  # swallowed here
        x = pytensor.tensor.vector("x")
        return [x], [(x ** 2).sum()], {}

    with pytest.raises(KeyboardInterrupt):
        graph_cache.compile_graph("interrupted", 1, build, "vm")
    assert arrived == [True]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


_FIRST_COMPILE = """
import numpy as np
import hierlm
m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
print("ready", flush=True)
obj = m.objective.with_backend("numba")
print("VALUE", obj(np.array([0.9, 0.02, 0.2])), flush=True)
"""


@pytest.mark.parametrize("delay", [0.3, 1.5])
def test_sigint_during_a_first_compile_ends_the_process(tmp_path: Path, delay: float) -> None:
    """With empty caches, SIGINT while the objective is rewritten and compiled for
    Numba ends the process with KeyboardInterrupt (it once ran on and exited 0)."""
    import signal
    import time

    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={tmp_path}"}
    proc = subprocess.Popen([sys.executable, "-c", _FIRST_COMPILE], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "VALUE" not in out
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err[-2000:]
