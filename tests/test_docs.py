"""The examples of the docs pages run and print what they show."""

from __future__ import annotations

import doctest
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("page", ["covariance.md", "prediction.md", "residual.md",
                                  "scale.md"])
def test_doc_examples(page: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = doctest.testfile(str(DOCS / page), module_relative=False,
                                  optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"


ROOT = DOCS.parent
# a relative path in a page: a Markdown link target or a backquoted path
_REL_PATH = re.compile(r"(?:\]\(|`)((?:\.\./|\./)[^)`\s#]+)")


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_relative_paths_stay_in_the_repository(page: str) -> None:
    text = (DOCS / page).read_text()
    for target in _REL_PATH.findall(text):
        path = (DOCS / target).resolve()
        assert path.is_relative_to(ROOT) and path.exists(), f"{page}: {target}"


def _git(*args: str, cwd: Path = ROOT) -> str:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout


def test_notebook_cache_is_a_build_output() -> None:
    """mkdocs-jupyter evicts every cache file a build did not use: its cache lives in the
    ignored build/ folder, and no tracked file lies there or in the old .cache/."""
    config = (ROOT / "mkdocs.yml").read_text()
    match = re.search(r"^\s+cache_dir:\s*(\S+)", config, re.MULTILINE)
    assert match, "mkdocs-jupyter's cache_dir is not set (it defaults to .cache/mkdocs-jupyter)"
    cache_dir = match.group(1)
    assert cache_dir.startswith("build/")
    assert _git("ls-files", "--", cache_dir, ".cache", "site") == ""
    assert _git("check-ignore", cache_dir).strip() == cache_dir


def _docs_python() -> Path:
    python = ROOT / ".venv" / "bin" / "python"
    probe = "import mkdocs, material, mkdocstrings, mkdocs_jupyter"
    if not python.exists() or subprocess.run([python, "-c", probe],
                                             capture_output=True).returncode != 0:
        pytest.skip("the docs tools are not installed in .venv (pip install -e '.[docs]')")
    return python


def test_docs_script_keeps_tracked_and_foreign_files(tmp_path: Path) -> None:
    python = _docs_python()
    repo = tmp_path / "repo"
    for name in _git("ls-files").splitlines():
        if (ROOT / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    (repo / ".venv").symlink_to(python.parent.parent)
    for args in (["init", "-q"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        _git(*args, cwd=repo)
    foreign = repo / "docs" / "case_studies" / "notes.txt"
    foreign.parent.mkdir(parents=True)
    foreign.write_text("mine")
    proc = subprocess.run(["bash", "scripts/docs.sh"], cwd=repo, capture_output=True,
                          text=True, timeout=600)
    assert foreign.read_text() == "mine"
    assert proc.returncode != 0 and "notes.txt" in proc.stderr
    foreign.unlink()
    for _ in range(2):  # a second build reads the notebook cache and must not evict others
        proc = subprocess.run(["bash", "scripts/docs.sh"], cwd=repo, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert _git("status", "--porcelain", cwd=repo) == ""
    assert (repo / "site" / "case_studies" / "04_real_data" / "index.html").exists()
