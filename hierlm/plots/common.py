"""What the plots share: matplotlib, imported when a plot is drawn."""

from __future__ import annotations

from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot``, or a :class:`~hierlm.errors.MethodError` naming the extra."""
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        from hierlm.errors import MethodError

        raise MethodError("plots need matplotlib: pip install 'hierlm[plots]'") from None
    return plt
