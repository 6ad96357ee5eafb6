"""hierlm.results.replace and the moments of a save that a Ctrl-C or another process
can hit: the temporary folder is never left behind, and saves to one folder take
turns at the renames (a lock on the folder), so none sees another's half-done swap.
"""

from __future__ import annotations

import fcntl
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

import hierlm
from hierlm.results import io
from hierlm.results.result import FitResult


@pytest.fixture(scope="module")
def reml() -> FitResult:
    return hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())


def test_ctrl_c_right_after_the_temporary_folder_is_made(reml: FitResult, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """SIGINT that arrives as mkdtemp returns (before save can know the folder's name)
    still ends with the folder removed."""
    real = tempfile.mkdtemp

    def made_then_interrupted(*args: object, **kwargs: object) -> str:
        folder = real(*args, **kwargs)  # type: ignore[call-overload]
        os.kill(os.getpid(), signal.SIGINT)  # handled at the next bytecode, in here
        return str(folder)

    monkeypatch.setattr(tempfile, "mkdtemp", made_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        io.save(reml, tmp_path / "fit.hierlm")
    assert list(tmp_path.iterdir()) == []


def test_a_save_waits_for_the_folder_lock(reml: FitResult, tmp_path: Path) -> None:
    """While another holder has the folder's lock, a save writes its files but does
    not rename them into place; it does once the lock is released."""
    target = tmp_path / "fit.hierlm"
    fd = os.open(tmp_path, os.O_RDONLY)
    done = threading.Event()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        def save() -> None:
            io.save(reml, target)
            done.set()

        threading.Thread(target=save, daemon=True).start()
        time.sleep(1.0)
        assert not done.is_set()
        assert not target.exists()
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    assert done.wait(60)
    assert hierlm.load(target).formula == reml.formula
    assert [p.name for p in tmp_path.iterdir()] == ["fit.hierlm"]
