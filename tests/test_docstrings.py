"""Every docstring example in hierlm runs and prints what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import hierlm

MODULES = sorted(m.name for m in pkgutil.walk_packages(hierlm.__path__, "hierlm."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), raise_on_error=False,
                             optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
