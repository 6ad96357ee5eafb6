"""When the structures' maps ``psi -> (theta, J)`` run as Numba kernels.

Each structure kind (``diag``, ``ar1``, ``cs``, ``toep``) has a NumPy/Python closed
form (its module) and a Numba kernel of the same values (:mod:`hierlm.covariance.jit`,
one signature for every term size: compiled once per install, then loaded from
Numba's disk cache; never per model).  Loading is not free: importing Numba and
starting its compiler cost about 0.9 s in a process that has not done so, one cached
kernel after that about 4 ms (the first compile, once per install, 0.8-1.6 s a
kernel).  So, as for the profiled objective (``hierlm.objective.numpy_link``), the
Python forms run first, and the kernels are loaded once the maps have spent
:data:`BUDGET_S` seconds in the process, or :data:`BUDGET_LOADED_S` where Numba is
already imported (the objective links heavy models with it).  ``import hierlm`` and
a small structured fit import no Numba.  Where a kernel cannot be loaded (no Numba, no
writable cache), the Python forms go on: the same values, more slowly; a damaged cache
file (truncated, say) is emptied and the kernel compiled again.

Measured with ``python -m benchmarks.structured_eval --subjects 100 --times 5`` (p = 5,
one term, CPU clock of the calling thread, best of 30 interleaved runs, 2-core shared
machine at load 4-5, ``benchmarks/structured_eval_results.md``; the Python forms with
``--python-forms``, run just before; ``us``'s optimizer function 103.9-104.8 us):

* ``diag``: the map 5.9-7.7 us by Python, 2.6 by the kernel; one evaluation 1.06 x
  ``us``'s; the optimizer's function 132.6 -> 117.9 us (1.26 -> 1.14 x ``us``'s);
* ``cs``: 11.0-13.0 -> 2.7-2.8 us; 1.07-1.08 x; 134.5-140.6 -> 118.7-119.0 us;
* ``ar1``: 9.7-11.5 -> 2.7 us; 1.07-1.08 x; 133.0-137.7 -> 119.0-119.1 us;
* ``toep``: 36.6-37.3 -> 3.5-3.7 us; 1.09 x; 176.5-178.5 -> 121.4-121.8 us

(the kernel alone 0.56 us for ``diag``, 0.66 ``ar1``, 0.71 ``cs``, 1.58 ``toep``;
the rest of a map is the Python around it: the last-point cache, two allocations,
read-only flags.)  "One evaluation" is map + criterion + ``J' grad`` against the
criterion alone (96.5 us): before, 1.11-1.22 x for ``diag``, ``cs`` and ``ar1`` and
1.55-1.56 x for ``toep``.  What is left over ``us`` there is the map (2.6-3.7 us) and
``J' grad`` (about 1 us).  The optimizer's own function for a structured term
(:func:`hierlm.estimate.optimize_structured.optimize_psi`) spends about 10 us more on
its bookkeeping than ``us``'s; done as ``us``'s does it, 1.05-1.07 x.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

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


def _first_call(kind: str, fn: Kernel) -> None:
    """Call ``fn`` once: loads (or compiles) the one specialization every term uses."""
    n_psi = 2 if kind == "diag" else 3     # p = 2, heterogeneous SDs
    fn(np.zeros(n_psi), np.zeros(2), False, np.empty(3), np.empty((3, n_psi)))


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
            try:
                _first_call(kind, fn)
            except Exception:  # noqa: BLE001 - a damaged cache file: emptied, compiled again
                for dispatcher in (fn, jit._pack):
                    cache: Any = getattr(dispatcher, "_cache")  # noqa: B009 - Numba's own
                    cache.flush()
                _first_call(kind, fn)
        except Exception:  # noqa: BLE001 - any failure of Numba: the Python forms go on
            _FAILED.add(kind)
            return None
        _KERNELS[kind] = fn
        return fn
