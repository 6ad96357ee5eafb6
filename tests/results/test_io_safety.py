"""What :func:`hierlm.results.io.save` may touch, and how saving and loading fail.

save never removes a file it did not write; every failure is one ResultFileError
(or the interrupt itself), never a half-written result; saves racing for one path
end with one complete result, the last one written.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hierlm
from hierlm.results import io
from hierlm.results.result import FitResult


@pytest.fixture(scope="module")
def reml() -> FitResult:
    return hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_folder_of_another_program_is_left_alone(reml: FitResult, tmp_path: Path) -> None:
    target = tmp_path / "run"
    (target / "data").mkdir(parents=True)
    (target / "result.json").write_text('{"accuracy": 0.93}')
    (target / "notes.txt").write_text("mine")
    (target / "data" / "raw.csv").write_text("a,b\n1,2\n")
    before = _tree(target)
    with pytest.raises(hierlm.ResultFileError, match="not a saved hierlm result"):
        io.save(reml, target)
    assert _tree(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temporary left


def test_files_added_to_a_saved_result_are_never_removed(reml: FitResult,
                                                         tmp_path: Path) -> None:
    target = io.save(reml, tmp_path / "fit.hierlm")
    (target / "notes.txt").write_text("mine")
    (target / "data").mkdir()
    (target / "data" / "raw.csv").write_text("a,b\n")
    before = _tree(target)
    with pytest.raises(hierlm.ResultFileError, match=r"data.*notes\.txt"):
        io.save(dataclasses.replace(reml, formula="other"), target)
    assert _tree(target) == before
    assert hierlm.load(target).formula == reml.formula


def test_an_empty_folder_is_filled(reml: FitResult, tmp_path: Path) -> None:
    (tmp_path / "fit").mkdir()
    io.save(reml, tmp_path / "fit")
    assert hierlm.load(tmp_path / "fit").objective == reml.objective


def _save_as(uid: int, res: FitResult, path: str, out: Any) -> None:
    """In a child process: drop root's rights, then save (report what was raised)."""
    try:
        os.setuid(uid)
        io.save(res, path)
        out.put(("ok", ""))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        out.put((type(exc).__name__, str(exc)))


def test_read_only_destination_is_one_result_file_error(reml: FitResult,
                                                         tmp_path: Path) -> None:
    io.save(reml, tmp_path / "warm.hierlm")  # the netCDF backend imported before forking
    ro = Path(tempfile.mkdtemp())  # /tmp: traversable by an unprivileged user
    try:
        os.chmod(ro, 0o555)
        target = str(ro / "fit.hierlm")
        if os.geteuid() != 0:
            with pytest.raises(hierlm.ResultFileError, match="cannot write"):
                io.save(reml, target)
        else:  # root ignores the mode bits: save as an unprivileged user instead
            ctx = multiprocessing.get_context("fork")
            out = ctx.Queue()
            child = ctx.Process(target=_save_as, args=(65534, reml, target, out))
            child.start()
            kind, message = out.get(timeout=120)
            child.join(60)
            assert kind == "ResultFileError", (kind, message)
            assert "cannot write" in message and "fit.hierlm" in message
        assert list(ro.iterdir()) == []
    finally:
        os.chmod(ro, 0o755)
        shutil.rmtree(ro)


@pytest.mark.parametrize("damage", ["missing", "not-a-dict", "no-fields", "bad-value"])
def test_damaged_result_json_is_one_result_file_error(reml: FitResult, tmp_path: Path,
                                                       damage: str) -> None:
    folder = io.save(reml, tmp_path / "fit.hierlm")
    doc = json.loads((folder / "result.json").read_text())
    if damage == "missing":
        del doc["fields"]["sigma"]
        del doc["fields"]["theta"]
    elif damage == "not-a-dict":
        doc["fields"] = [1, 2]
    elif damage == "no-fields":
        del doc["fields"]
    else:
        doc["fields"]["groups"] = {"__type__": "nonsense"}
    (folder / "result.json").write_text(json.dumps(doc))
    with pytest.raises(hierlm.ResultFileError,
                       match="missing field.*sigma, theta" if damage == "missing"
                       else "is damaged") as info:
        hierlm.load(folder)
    assert info.value.__cause__ is None


def _save_many(res: FitResult, path: str, tag: str, n: int, out: Any) -> None:
    """In a child process: ``n`` saves to ``path``, each rename a little slow (as on a
    network file system), so that the processes' renames interleave."""
    import random
    import time

    rng = random.Random(tag)
    def slowed(real: Any) -> Any:
        def slow(src: Any, dst: Any) -> None:
            time.sleep(rng.uniform(0.0, 0.01))
            real(src, dst)
        return slow

    os.rename, os.replace = slowed(os.rename), slowed(os.replace)  # this process only
    errors = []
    for i in range(n):
        try:
            io.save(dataclasses.replace(res, formula=f"{tag}{i}"), path)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            errors.append(f"{type(exc).__name__}: {exc}")
    out.put(errors)


def test_processes_saving_to_one_path_last_writer_wins(reml: FitResult, tmp_path: Path) -> None:
    io.save(reml, tmp_path / "warm.hierlm")
    target = str(tmp_path / "fit.hierlm")
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_save_many, args=(reml, target, tag, 25, out))
             for tag in "abcd"]
    for p in procs:
        p.start()
    errors = [e for _ in procs for e in out.get(timeout=300)]
    for p in procs:
        p.join(60)
    assert errors == []
    back = hierlm.load(target)
    assert back.formula in {f"{t}24" for t in "abcd"}  # one writer's last result, whole
    np.testing.assert_array_equal(back.theta, reml.theta)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.hierlm", "warm.hierlm"]
    assert sorted(p.name for p in Path(target).iterdir()) == ["arrays.nc", "result.json"]


@pytest.mark.parametrize("existing", [False, True])
def test_interrupt_inside_the_netcdf_writer(reml: FitResult, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            existing: bool) -> None:
    """Ctrl-C while h5py holds the file open, again and again: each save raises the
    interrupt, leaves the previous result (or nothing), and a later save works."""
    import h5netcdf

    target = tmp_path / "fit.hierlm"
    if existing:
        io.save(dataclasses.replace(reml, formula="previous"), target)
    real = h5netcdf.Group.create_variable
    calls = []

    def interrupt(self: Any, name: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        if len(calls) % 3 == 2:  # after some variables are written
            raise KeyboardInterrupt
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5netcdf.Group, "create_variable", interrupt)
    for _ in range(5):
        calls.clear()
        with pytest.raises(KeyboardInterrupt):
            io.save(reml, target)
        assert len(calls) == 2
        assert sorted(p.name for p in tmp_path.iterdir()) == (["fit.hierlm"] if existing else [])
        if existing:
            assert hierlm.load(target).formula == "previous"
    monkeypatch.undo()
    io.save(reml, target)
    assert hierlm.load(target).formula == reml.formula


_LOOP = """
import sys
import hierlm
from hierlm.results import io
res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
target = sys.argv[1]
io.save(res, target)
print("ready", flush=True)
interrupts = 0
while interrupts < int(sys.argv[2]):
    try:
        while True:  # the loop's own jumps inside the try: a SIGINT between two
            io.save(res, target)  # saves is a KeyboardInterrupt caught here too
    except KeyboardInterrupt:
        interrupts += 1
        back = hierlm.load(target)  # whole: the previous or the new result
        assert back.objective == res.objective
        print("interrupted", flush=True)
print("done", flush=True)
"""


def test_ctrl_c_in_a_save_loop(tmp_path: Path) -> None:
    """SIGINT at random moments of a loop of saves: each interrupt surfaces as
    KeyboardInterrupt (nothing hangs), the saved result stays whole and loadable."""
    import queue
    import random
    import signal
    import subprocess
    import sys
    import threading
    import time

    target = tmp_path / "fit.hierlm"
    n = 8
    log = tmp_path.parent / f"{tmp_path.name}-stderr.txt"
    with log.open("w") as err_file:
        proc = subprocess.Popen([sys.executable, "-c", _LOOP, str(target), str(n)],
                                stdout=subprocess.PIPE, stderr=err_file, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x.strip()) for x in proc.stdout or ()],
                     daemon=True).start()
    try:
        assert lines.get(timeout=120) == "ready"
        rng = random.Random(0)
        for _ in range(n):
            time.sleep(rng.uniform(0.0, 0.3))
            proc.send_signal(signal.SIGINT)
            assert lines.get(timeout=60) == "interrupted", "no answer to SIGINT"
        assert lines.get(timeout=60) == "done"
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, log.read_text()[-2000:]
    assert sorted(p.name for p in target.iterdir()) == ["arrays.nc", "result.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["fit.hierlm"]
