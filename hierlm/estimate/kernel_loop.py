"""The fit's compiled descent loop around the hand-written kernel: one for every model.

:mod:`hierlm.estimate.descent_loop` runs L-BFGS-B's descents as one compiled loop
(its source: :mod:`hierlm.estimate.descent_loop_source`).  There, each evaluation calls
the objective's graph, compiled by Numba once per graph *structure*
(:mod:`hierlm.estimate.psi_call`), so a process loads one function and one loop per
structure.  Here the same loop source is compiled around
:func:`hierlm.objective.blocked_kernel.profiled_eval`, a hand-written kernel whose
arguments have the same types for every unstructured model: one function, compiled
once per install and cached on disk, serves every fit, and a process loads it once.

Why: an evaluation of the graph's generated code took 10-14 us inside the loop for
sleepstudy, penicillin and dyestuff (it allocates every intermediate), the kernel
1-8 us; and a process loaded 0.35 s of the graph's function and 0.23 s of the loop per
structure (:mod:`hierlm.estimate.psi_call`), where this loads once.  Measured fits:
:mod:`benchmarks.peers`, quoted in the README.

The loop is used where it is loaded and the process is warm
(:func:`hierlm.objective.numpy_link.process_warm`) or the objective is on its Numba
link, for unstructured models (``psi = theta``); it is loaded on a daemon thread from
Numba's disk cache only (:mod:`hierlm.estimate.background`), and where it is not
cached, a process of its own compiles it at nice 19 (:mod:`hierlm.estimate.fit_warm_up`,
about 20 s of idle CPU once per install).  Its dispatcher compiles nothing after the
load (a call whose argument types differ falls back to the structure's loop or SciPy's
driver): the arguments are made C-contiguous and writable first (:func:`arguments`).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np

from hierlm.estimate import background, warm_up_process
from hierlm.estimate.descent_loop_source import loop_source
from hierlm.estimate.lbfgsb import MAXFUN
from hierlm.objective.gram import GramBlocks
from hierlm.objective.graph_cache import NotNeeded, cache_dir
from hierlm.objective.numba_wrapper import source_function

__all__ = ["arguments", "build", "load_in_background", "loop", "serves"]

#: Inputs of the profiled objective: theta, reml, n, p and the 14 Gram values.
N_INPUTS = 18
#: Largest :func:`kernel_work` served (larger models keep their structure's code, which
#: has the large crossed designs' own path: :mod:`hierlm.objective.scalar_crossed`).
MAX_WORK = 2e6
#: Payload of the warm-up process that compiles this loop (:mod:`fit_warm_up`).
WARM_UP_PAYLOAD = ("kernel-loop",)

_LOCK = threading.Lock()
#: ``[fn]`` once loaded; ``[None]`` where Numba failed for good.
_LOOP: list[Any] = []
_WARMING: list[subprocess.Popen | None] = []


def loop() -> Any:
    """The loaded loop, or None (not loaded yet, or Numba failed).

    Examples
    --------
    >>> loop() is None or callable(loop())
    True
    """
    if not _LOOP and _WARMING and _WARMING[0] is not None and _WARMING[0].poll() is not None:
        _WARMING[0] = None  # the warm-up process has ended: load what it compiled
        load_in_background(attempt=2)
    return _LOOP[0] if _LOOP else None


def serves(layout: np.ndarray, gram: GramBlocks | None = None) -> bool:
    """Whether the loop can serve a model of this layout (all terms unstructured) and
    these Gram blocks (an evaluation of at most :data:`MAX_WORK` multiply-adds,
    :func:`kernel_work`), and has not failed to load for good.

    Examples
    --------
    >>> serves(np.array([[0, 1, 2, 0, 3, 0]])), serves(np.array([[2, 1, 4, 0, 2, 0]]))
    (True, False)
    """
    return (bool((layout[:, 0] == 0).all()) and not (_LOOP and _LOOP[0] is None)
            and (gram is None or kernel_work(gram) <= MAX_WORK))


def kernel_work(gram: GramBlocks) -> float:
    """Multiply-adds of one evaluation of the kernel, about: the levels' products over
    their nonzero rows, their ``p1 x p1`` factors, and the rest's dense ``m x m`` steps.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective.gram import compute_gram
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> kernel_work(compute_gram(d)) < 1e4
    True
    """
    l1, p1 = gram.A11.shape[0], gram.A11.shape[1]
    nnz = np.diff(gram.level_ptr).astype(float)
    m = float(gram.A_RR.shape[0])
    return float(3.0 * p1 * (nnz * nnz).sum() + 6.0 * l1 * p1**3 + m**3)


def load_in_background(attempt: int = 1) -> None:
    """Load the loop on a daemon thread from Numba's disk cache (once per process and
    attempt); where it is not cached, start the process that compiles it (and load
    again once it has ended, :func:`loop`).  Where that cannot be done, or the second
    attempt finds nothing either, the loop is given up in this process (:func:`serves`
    is then False).  Nothing where ``HIERLM_BACKGROUND_LOADS=0``.

    Examples
    --------
    >>> load_in_background()  # returns at once
    >>> background.wait()
    """
    if _LOOP or os.environ.get("HIERLM_BACKGROUND_LOADS") == "0":
        return

    def work() -> None:
        fn = build(compile_missing=False)
        if fn is None and attempt == 1 and warm_up() is not None:
            return  # loaded again once the warm-up process has ended
        with _LOCK:
            _LOOP[:] = [fn]

    background.start(("kernel_loop", attempt), work)


def warm_up() -> subprocess.Popen | None:
    """Compile the loop in a background process (:mod:`hierlm.estimate.fit_warm_up`),
    once per process; None where nothing is started."""
    if os.environ.get("HIERLM_BACKGROUND_LOADS") == "0" or cache_dir() is None:
        return None
    with _LOCK:
        if _WARMING:
            return None
        _WARMING.append(None)
    proc = warm_up_process.launch("hierlm.estimate.fit_warm_up", "hierlm-fit-warm-up-",
                                  WARM_UP_PAYLOAD)
    _WARMING[0] = proc
    return proc


def arguments(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """``values`` (the objective's ``reml, n, p`` and Gram values) as the loop's one
    compiled specialization takes them: C-contiguous, writable, float64 or int64.

    Examples
    --------
    >>> a = np.arange(3.0)[::2]
    >>> arguments((a,))[0].flags.c_contiguous
    True
    """
    out = []
    for v in values:
        a = np.asarray(v)
        dtype = np.int64 if a.dtype.kind in "iu" else np.float64
        if a.dtype != dtype or not a.flags.c_contiguous or not a.flags.writeable:
            a = np.array(a, dtype=dtype, order="C")
        out.append(a)
    return tuple(out)


def _probe() -> tuple[Any, ...]:
    """The loop's arguments for sleepstudy's random-intercept model (the types every
    model has)."""
    from hierlm.datasets import load_sleepstudy
    from hierlm.design.matrices import build_design
    from hierlm.objective.gram import compute_gram
    from hierlm.objective.profiled import gram_values

    g = compute_gram(build_design("Reaction ~ 1 + (1 | Subject)", load_sleepstudy()))
    values = arguments((1.0, float(g.n), float(g.p), *gram_values(g)))
    layout = np.array([[0, 1, 1, 0, 1, 0]], dtype=np.int64)
    return (np.ones(1), np.ones(1), np.ones(1), 0.0, np.inf, 1, 0, MAXFUN, 1e-12, 1e-6,
            1, layout, np.zeros(1), *values)


def _digest() -> str:
    here = Path(__file__).parent
    kernel = here.parent / "objective" / "blocked_kernel.py"
    return hashlib.sha256(kernel.read_bytes() + (here / "line_search_jit.py").read_bytes()
                          + loop_source(N_INPUTS).encode()).hexdigest()


def build(compile_missing: bool = True) -> Any:
    """The loop from Numba's cache (or, with ``compile_missing``, compiled), with its
    dispatcher closed to new compiles; None where it is not there or Numba failed (and,
    with ``compile_missing``, never again in this process)."""
    try:
        import numba
        from numba.core.errors import NumbaError

        from hierlm.estimate import line_search_jit
        from hierlm.objective import blocked_kernel
    except Exception:  # noqa: BLE001 - no Numba: SciPy's driver goes on
        return _failed(compile_missing)
    src = loop_source(N_INPUTS)
    key = _digest()
    callees = (NotNeeded(), blocked_kernel.profiled_eval) if compile_missing else (
        NotNeeded(),)
    for callee in callees:  # the stand-in callee loads from the cache only
        try:
            py = source_function(src, "hierlm_descent", key,
                                 {"__name__": __name__, "np": np, "lsj": line_search_jit,
                                  "psi_eval": callee})
            fn = numba.njit(cache=True, nogil=True, error_model="numpy")(py)
            fn(*_probe())  # loads (or compiles) the one specialization every model uses
            fn.disable_compile()
            return fn
        except NumbaError:
            continue
        except Exception:  # noqa: BLE001 - any failure of Numba: SciPy's driver
            return _failed(compile_missing)
    return _failed(compile_missing)


def _failed(compile_missing: bool) -> None:
    if compile_missing:
        with _LOCK:
            _LOOP[:] = [None]
    return None
