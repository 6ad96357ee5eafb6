"""When the structures' maps ``psi -> (theta, J)`` run as Numba kernels.

Each structure kind (``diag``, ``ar1``, ``cs``, ``toep``) has a NumPy/Python closed
form (its module) and a Numba kernel of the same values (:mod:`hierlm.covariance.jit`,
one signature for every term size: compiled once per install, then loaded from
Numba's disk cache).  The kernel takes about 1 us where the Python forms take 5-37 us
(p = 5), but loading it is not free: importing Numba and starting its compiler cost
about 0.9 s in a process that has not done so (loading one cached kernel after that
about 3 ms).  So, as for the profiled objective (``hierlm.objective.numpy_link``), the
Python forms run first, and the kernels are loaded once the maps have spent
:data:`BUDGET_S` seconds in the process, or :data:`BUDGET_LOADED_S` where Numba is
already imported (the objective links heavy models with it).  ``import hierlm``
imports no Numba.  Where a kernel cannot be loaded (no Numba, no writable cache, a
damaged cache file), the Python forms go on: the same values, more slowly.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import numpy as np

#: Seconds of Python-form maps per process after which the kernels are loaded.
BUDGET_S = 1.0
#: The same where Numba is already imported (a cached kernel then loads in ~3 ms).
BUDGET_LOADED_S = 0.01

KINDS = ("diag", "ar1", "cs", "toep")
Kernel = Callable[[np.ndarray, np.ndarray, bool, np.ndarray, np.ndarray], None]

_LOCK = threading.Lock()
_KERNELS: dict[str, Kernel] = {}
_FAILED: set[str] = set()
_spent = [0.0]


def kernel(kind: str) -> Kernel | None:
    """The loaded kernel of ``kind``, or None (then the Python form runs).

    Examples
    --------
    >>> kernel("no such kind") is None
    True
    """
    return _KERNELS.get(kind)


def charge(kind: str, seconds: float) -> None:
    """Count ``seconds`` of a Python-form map of ``kind``; load the kernel once the
    budget is spent (approximate under threads: only a trigger)."""
    _spent[0] += seconds
    budget = BUDGET_LOADED_S if "numba" in sys.modules else BUDGET_S
    if _spent[0] > budget and kind not in _KERNELS and kind not in _FAILED:
        load(kind)


def load(kind: str) -> Kernel | None:
    """Load (compile on first use per install) and return the kernel of ``kind``; None
    where it cannot be loaded.

    Examples
    --------
    >>> fn = load("ar1")
    >>> theta, J = np.empty(3), np.empty((3, 2))
    >>> fn(np.array([0.0, 0.0]), np.zeros(2), True, theta, J)
    >>> theta.tolist()
    [1.0, 0.0, 1.0]
    """
    with _LOCK:
        if kind in _KERNELS or kind in _FAILED:
            return _KERNELS.get(kind)
        try:
            from hierlm.covariance import jit

            fn = getattr(jit, f"{kind}_kernel")
            # first call: loads (or compiles) the one specialization every term uses
            n_psi = 2 if kind == "diag" else 3     # p = 2, heterogeneous SDs
            fn(np.zeros(n_psi), np.zeros(2), False, np.empty(3), np.empty((3, n_psi)))
        except Exception:  # noqa: BLE001 - any failure of Numba: the Python forms go on
            _FAILED.add(kind)
            return None
        _KERNELS[kind] = fn
        return fn
