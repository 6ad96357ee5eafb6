"""Every case study runs top to bottom (its own cells assert what it recovers).

The notebooks in ``case_studies/`` are executed with nbclient in a fresh kernel, from
their own folder, as a reader would run them; each asserts that the parameters it
recovers lie within stated tolerances of the simulated truth or of lme4's numbers.
The committed ``.ipynb`` files are paired with ``.py`` scripts (jupytext) that must hold
the same cells.
"""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
jupytext = pytest.importorskip("jupytext")

FOLDER = Path(__file__).resolve().parents[1] / "case_studies"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))


def test_there_are_four_case_studies() -> None:
    assert len(NOTEBOOKS) >= 4, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_paired_script_holds_the_same_cells(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    script = jupytext.read(path.with_suffix(".py"))
    assert [c.source for c in nb.cells] == [c.source for c in script.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=1800, kernel_name="python3",
                                     resources={"metadata": {"path": str(FOLDER)}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
