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
machine at load 2.2-3.1; ``benchmarks/structured_eval_results.md``, and
``structured_eval_python_results.md`` with ``--python-forms`` run just before), Python
forms -> kernels:

* the map: ``diag`` 6.0-7.8 -> 2.6 us, ``ar1`` 10.0-11.7 -> 2.7, ``cs`` 11.1-12.9 ->
  2.8, ``toep`` 36.2-37.3 -> 3.5-3.7 (the kernel alone 0.56, 0.66, 0.71 and 1.58 us;
  the rest is the Python around it: the last-point cache, two allocations, read-only
  flags);
* one evaluation (map + criterion + ``J' grad``) over the criterion alone: ``diag``
  1.11-1.14 -> 1.06 x, ``ar1`` 1.17-1.20 -> 1.07, ``cs`` 1.18-1.22 -> 1.07, ``toep``
  1.57-1.58 -> 1.08 (the code before the kernels: 1.09-1.13, 1.15-1.19, 1.17-1.21,
  1.53-1.54 in the same conditions); what is left is the map and ``J' grad`` (about
  1 us);
* the function each optimizer really hands its L-BFGS-B driver, over ``us``'s
  (101.8-104.4 us, the criterion and its rescaling, trace and checks): ``diag``
  1.22-1.27 -> 1.15 x, ``ar1`` 1.27-1.32 -> 1.14-1.15, ``cs`` 1.29-1.34 -> 1.15,
  ``toep`` 1.73 -> 1.16.  That bookkeeping (an ``np.errstate`` block per call, a
  separate finiteness test of theta, the trace built float by float) was then done as
  ``us``'s does it in :func:`hierlm.estimate.optimize_structured.optimize_psi`, and both
  moved onto the shared theta optimizer: 1.03-1.06 x (load 3.3-3.6).  On the
  objective's Numba link the optimizers now call the kernels from compiled code, in
  one call with the criterion and ``J' grad`` (:mod:`hierlm.estimate.psi_call`):
  0.99-1.01 x, ``us`` 109.3-110.5 -> 101.6-103.1 us
  (``benchmarks/structured_eval_results.md``).
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
