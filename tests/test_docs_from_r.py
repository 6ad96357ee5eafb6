"""The examples of docs/from-r.md run and print what the page shows."""

from __future__ import annotations

import doctest
import warnings
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_from_r_examples() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = doctest.testfile(str(DOCS / "from-r.md"), module_relative=False,
                                  optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
