"""Which log density nutpie samples: the compiled one when its machine code is cached,
else the NumPy one (:mod:`hierlm.estimate.nuts_numpy`), compiling nothing.

The compiled density (:mod:`hierlm.estimate.nuts_compiled`) is machine code made by
Numba once per model structure and kept on disk: loaded, it is the fastest (about
19 us per gradient of sleepstudy) and its chains run in parallel threads.  Made, it is
the slowest: 99 s of a 100 s first fit with empty caches.  So a fit takes the compiled
density only when it is ready without compiling: in this process's memory, or its
graphs on disk and their C entry points in Numba's cache (:func:`cached_code`).  Else
a small model (:func:`hierlm.estimate.nuts_numpy.suits`) samples the NumPy density
through nutpie's Python-function interface (its chains in one thread unless ``cores``
is given: its calls hold the interpreter lock), and the structure is compiled afterwards
in a background process (:func:`warm_up`), so later processes take the compiled
density (in this process the structure keeps the NumPy density, so that a seed
reproduces its draws).  A model too large for the dense NumPy density keeps the
compiled density whatever it costs; ``HIERLM_NUTS_DENSITY`` overrides the choice
(:func:`choose`).
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from hierlm.estimate import nuts_compiled, warm_up_process
from hierlm.estimate.nuts_cfunc import cached_c_functions
from hierlm.estimate.nuts_compiled import DensityCode, _structure_key
from hierlm.estimate.nuts_numpy import NumpyDensity, suits
from hierlm.estimate.nuts_warm_up import PREFIX
from hierlm.estimate.priors import Priors
from hierlm.objective.graph_cache import cache_dir, cached_graph
from hierlm.objective.profiled import ProfiledObjective

_WARMING: set[tuple] = set()  # structures whose warm-up this process started
#: The warm-up processes this process started (a benchmark stops them).
STARTED: list[subprocess.Popen] = []
_CHOSEN: dict[tuple, str] = {}  # the density each structure took first in this process
_LOCK = threading.Lock()
#: ``python -m hierlm.estimate.nuts_warm_up FILE`` at the lowest CPU priority from its
#: first line (:func:`hierlm.estimate.warm_up_process.launch_source`).
_LAUNCH = warm_up_process.launch_source("hierlm.estimate.nuts_warm_up")


def cached_code(objective: ProfiledObjective, pr: Priors) -> DensityCode | None:
    """The structure's compiled density if it needs no compiling, else None."""
    key = _structure_key(objective)
    got = nuts_compiled._CODE.get(key)  # compiled in this process
    if got is not None:
        return got
    graphs = [cached_graph(f"nuts-{role}", key) for role in ("logp", "expand", "forward")]
    if any(g is None for g in graphs):
        return None
    logp, expand, forward = graphs
    assert logp is not None and expand is not None and forward is not None
    fns = cached_c_functions(logp, expand)
    if fns is None:
        return None
    code = DensityCode(logp, expand, forward)
    code.__dict__["c_functions"] = fns  # (a cached_property: set, not loaded again)
    return nuts_compiled._CODE.setdefault(key, code)  # what density_code would load


def choose(objective: ProfiledObjective, pr: Priors) -> str:
    """``"compiled"`` or ``"numpy"``: which density a nutpie fit of this model samples.

    ``HIERLM_NUTS_DENSITY`` (environment): ``"auto"`` (default, see the module
    docstring), ``"compiled"`` or ``"numpy"`` (where :func:`suits`; nothing is
    compiled in the background then).  A structure keeps, in a process, the density
    its first fit took, so a seed reproduces a fit's draws there.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.estimate.priors import resolve_priors
    >>> m = hierlm.Model("Reaction ~ Days + (1 | Subject)", hierlm.load_sleepstudy())
    >>> choose(m.objective, resolve_priors(m.design)) in ("numpy", "compiled")
    True
    """
    setting = os.environ.get("HIERLM_NUTS_DENSITY", "auto")
    if setting == "compiled" or not suits(objective):
        return "compiled"
    if setting == "numpy":
        return "numpy"
    key = _structure_key(objective)
    with _LOCK:
        chosen = _CHOSEN.get(key)
    if chosen is None:
        chosen = "compiled" if cached_code(objective, pr) is not None else "numpy"
        with _LOCK:
            chosen = _CHOSEN.setdefault(key, chosen)
    return chosen


def warm_up(objective: ProfiledObjective, pr: Priors) -> subprocess.Popen | None:
    """Compile the structure's density in a background process at the lowest CPU
    priority (:mod:`hierlm.estimate.nuts_warm_up`), once per structure and process;
    None when nothing is started (already started, told not to, or no disk cache).
    ``HIERLM_NUTS_WARM_UP=0`` (environment) starts none."""
    if (os.environ.get("HIERLM_NUTS_DENSITY", "auto") == "numpy"
            or os.environ.get("HIERLM_NUTS_WARM_UP", "1") == "0"):
        return None  # told not to compile
    folder = cache_dir()
    if folder is None:  # nothing a later process could load
        return None
    key = _structure_key(objective)
    with _LOCK:
        if key in _WARMING:
            return None
        _WARMING.add(key)
    proc = warm_up_process.launch(
        "hierlm.estimate.nuts_warm_up", PREFIX,
        (objective.design, objective.gram, objective.structure, pr))
    STARTED.append(proc)
    return proc


def numpy_model(density: NumpyDensity, coords: dict[str, list[str]],
                init: Callable[[Any], np.ndarray]) -> Any:
    """A nutpie model that samples ``density`` through nutpie's Python-function
    interface, with the same variables, shapes, dimensions and coordinates as the
    compiled model of :func:`hierlm.estimate.nuts_compiled.nutpie_model`."""
    from nutpie.compiled_pyfunc import from_pyfunc

    def make_logp() -> Callable[..., tuple[float, np.ndarray]]:
        return density.kernel  # called as kernel(x): nutpie shares no data with it

    def make_expand(seed1: Any, seed2: Any, chain: Any) -> Callable[..., dict[str, np.ndarray]]:
        return lambda x, **_: density.expand(x)

    used = {d for ds in density.dims.values() for d in ds}
    return from_pyfunc(
        density.ndim, make_logp, make_expand, [np.dtype("float64")] * len(density.names),
        list(density.shapes), list(density.names),
        coords={k: list(v) for k, v in coords.items() if k in used},
        dims=dict(density.dims), make_initial_point_fn=init)
