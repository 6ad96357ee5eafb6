"""PyMC's progress bar without matplotlib.

PyMC 6's terminal progress bar (``pymc.progress_bar.rich_progress.CustomBarColumn``)
imports ``matplotlib.colors.to_rgb`` for one thing: turning the name of the colour
that marks a failing chain (``"red"``) into an RGB triple.  matplotlib is not a
dependency of PyMC or of hierlm, so on a plain install ``pm.sample(progressbar=True)``
ends in ``ModuleNotFoundError: No module named 'matplotlib'``.  When matplotlib is
missing, :func:`progress_bar_without_matplotlib` lets that column read the colour
from a table of matplotlib's values for the few names a bar uses, parsed by rich
(which draws the bar, so it is always there), for the duration of the sampling call,
and leaves PyMC as it was afterwards.  With matplotlib
installed, or with a PyMC whose bar no longer has this column, nothing is changed.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from typing import Any

# matplotlib's values for the colour names a progress bar may use (PyMC passes
# "tab:red"); any other name or "#rrggbb" goes to rich's parser.
_NAMED = {"tab:blue": "#1f77b4", "tab:orange": "#ff7f0e", "tab:green": "#2ca02c",
          "tab:red": "#d62728", "tab:purple": "#9467bd", "tab:brown": "#8c564b",
          "tab:pink": "#e377c2", "tab:gray": "#7f7f7f", "tab:olive": "#bcbd22",
          "tab:cyan": "#17becf", "red": "#ff0000", "green": "#008000", "blue": "#0000ff",
          "white": "#ffffff", "black": "#000000"}


def _rgb(name: str) -> tuple[float, float, float]:
    """``matplotlib.colors.to_rgb`` for the colours a progress bar names, via rich.

    Examples
    --------
    >>> _rgb("red")
    (1.0, 0.0, 0.0)
    >>> _rgb("#00ff00")
    (0.0, 1.0, 0.0)
    """
    from rich.color import Color

    r, g, b = Color.parse(_NAMED.get(name, name)).get_truecolor()
    return r / 255, g / 255, b / 255


def _column_needing_matplotlib() -> Any:
    """PyMC's bar column class if building one fails for want of matplotlib, else None."""
    if importlib.util.find_spec("matplotlib") is not None:
        return None
    try:
        from pymc.progress_bar import rich_progress
    except ImportError:
        return None
    column = getattr(rich_progress, "CustomBarColumn", None)
    if column is None:
        return None
    try:
        column()
    except ModuleNotFoundError as exc:
        return column if exc.name is not None and exc.name.startswith("matplotlib") else None
    except Exception:  # a PyMC whose column changed: leave it alone
        return None
    return None


@contextlib.contextmanager
def progress_bar_without_matplotlib() -> Iterator[None]:
    """Within the block, PyMC's progress bar works whether or not matplotlib is installed.

    Examples
    --------
    >>> with progress_bar_without_matplotlib():
    ...     pass
    """
    column = _column_needing_matplotlib()
    if column is None:
        yield
        return
    base = column.__mro__[1]
    original = column.__init__

    def init(self: Any, *args: Any, failing_color: str = "red", **kwargs: Any) -> None:
        # PyMC's __init__ minus its matplotlib import (pymc 6.4, rich_progress.py).
        self.failing_color = failing_color
        self.failing_rgb = [int(x * 255) for x in _rgb(failing_color)]
        base.__init__(self, *args, **kwargs)
        self.default_complete_style = self.complete_style
        self.default_finished_style = self.finished_style

    column.__init__ = init
    try:
        yield
    finally:
        column.__init__ = original
