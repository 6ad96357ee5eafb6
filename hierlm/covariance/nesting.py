"""Which covariance structures are special cases of which (for likelihood-ratio tests).

On the same columns, structure ``a`` is nested in ``b`` when every ``Sigma`` of ``a`` is
a ``Sigma`` of ``b``: one SD is a special case of one SD per column (``homX`` in ``X``,
``ar1`` in ``hetar1``); ``diag`` is ``cs``, ``hetar1`` and ``toep`` at correlation 0;
``ar1``/``hetar1`` are ``homtoep``/``toep`` with ``rho_k = rho^k``; ``cs``/``homcs`` are
``toep``/``homtoep`` with equal lag correlations; every structure is nested in ``us``.
The relation is the transitive closure of these steps.
"""

from __future__ import annotations

_STEPS = {
    "homdiag": {"diag", "homcs", "ar1"}, "diag": {"cs", "hetar1"},
    "homcs": {"cs", "homtoep"}, "cs": {"toep"}, "ar1": {"hetar1", "homtoep"},
    "hetar1": {"toep"}, "homtoep": {"toep"}, "toep": {"us"}, "us": set(),
}


def structure_nested(small: str, big: str) -> bool:
    """Whether structure ``small`` is a special case of ``big`` on the same columns.

    Examples
    --------
    >>> structure_nested("cs", "us"), structure_nested("ar1", "toep"), structure_nested("cs", "ar1")
    (True, True, False)
    """
    seen, todo = set(), [small]
    while todo:
        s = todo.pop()
        if s == big:
            return True
        if s not in seen:
            seen.add(s)
            todo.extend(_STEPS[s])
    return False
