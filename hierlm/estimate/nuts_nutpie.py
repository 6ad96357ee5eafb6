"""Sampling with nutpie (the optional ``nutpie`` extra), in one of two ways.

nutpie's sampler is written in Rust; what differs is how it evaluates the log density
``log p(x)`` and its gradient in the unconstrained coordinates ``x`` of the PyMC model
(:mod:`hierlm.estimate.nuts_model`):

``"python"``
    PyTensor compiles ``x -> (log p, d log p / dx)`` once, with the Gram blocks as shared
    data, like every hierlm graph (its compiled code is cached on disk), and nutpie
    calls it through Python.  No compilation beyond PyTensor's (whose graph rewriting
    is still paid once per process), but each call holds the interpreter lock, so
    the chains take turns on one core.
``"numba"``
    nutpie compiles its own Numba function of the model (tens of seconds in every
    process: it is not cached), whose calls run in parallel threads.

A gradient costs ``O(m^3)`` for the dense Schur block of order ``m`` plus the sparse
update; when it is cheap, compilation dominates and ``"python"`` is faster, and on
large designs the parallel chains of ``"numba"`` repay its compilation.
:func:`nutpie_backend` chooses by the size of that block.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from pymc.pytensorf import join_nonshared_inputs

from hierlm.objective.gram import GramBlocks

#: Dense Schur blocks of at least this order (or this many sparse-update nonzeros)
#: sample with nutpie's own Numba compilation.
NUMBA_MIN_ORDER = 300
NUMBA_MIN_NONZEROS = 200_000


def nutpie_backend(gram: GramBlocks) -> str:
    """``"numba"`` for large designs (one gradient costs milliseconds or more), else
    ``"python"``.

    Examples
    --------
    >>> import hierlm
    >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> nutpie_backend(m.objective.gram)
    'python'
    """
    large = (gram.A_RR.shape[0] >= NUMBA_MIN_ORDER
             or int(np.size(gram.nz_val)) >= NUMBA_MIN_NONZEROS)
    return "numba" if large else "python"


@dataclasses.dataclass(frozen=True)
class _PyFunctions:
    """The compiled joined log density and the map back to the model's variables."""

    logp_grad: Any
    expand: Any
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    ndim: int


def _python_functions(model: pm.Model) -> _PyFunctions:
    value_vars = model.value_vars
    point = model.initial_point()
    logp = model.logp()
    grads: Any = pt.grad(logp, value_vars)
    grad = pt.concatenate([g.ravel() for g in grads])
    values = model.replace_rvs_by_values(model.free_RVs)
    outs, x = join_nonshared_inputs(point, [logp, grad, *values], value_vars)
    logp_grad = pytensor.function([x], outs[:2], trust_input=True)
    expand = pytensor.function([x], outs[2:], trust_input=True)
    x0 = np.concatenate([np.ravel(point[v.name]) for v in value_vars])
    shapes = tuple(tuple(np.shape(v)) for v in expand(x0))
    return _PyFunctions(logp_grad, expand, tuple(rv.name for rv in model.free_RVs),
                        shapes, x0.size)


def _python_model(model: pm.Model, fns: _PyFunctions, init: Any) -> Any:
    from nutpie.compiled_pyfunc import from_pyfunc

    def make_logp() -> Any:
        fn = fns.logp_grad

        def logp(x: np.ndarray, **_: Any) -> tuple[float, np.ndarray]:
            value, grad = fn(x)
            return float(value), grad

        return logp

    def make_expand(seed1: Any, seed2: Any, chain: Any) -> Any:
        fn = fns.expand

        def expand(x: np.ndarray, **_: Any) -> dict[str, np.ndarray]:
            return {name: np.asarray(v, dtype=np.float64).reshape(shape)
                    for name, v, shape in zip(fns.names, fn(x), fns.shapes, strict=True)}

        return expand

    dims = {name: tuple(model.named_vars_to_dims[name]) for name in fns.names
            if name in model.named_vars_to_dims}
    used = {d for ds in dims.values() for d in ds}
    coords = {k: list(v) for k, v in model.coords.items() if k in used}
    return from_pyfunc(fns.ndim, make_logp, make_expand, [np.dtype("float64")] * len(fns.names),
                       list(fns.shapes), list(fns.names), coords=coords, dims=dims,
                       make_initial_point_fn=init)


def nutpie_sample(model: pm.Model, cache: dict[Any, Any], data: dict[str, Any],
                  backend: str, starts: list[dict[str, np.ndarray]] | None, seed: int,
                  draws: int, tune: int, chains: int, cores: int | None, progressbar: bool,
                  target_accept: float) -> Any:
    """Sample ``model`` with nutpie; ``cache`` keeps the compiled pieces per backend.

    ``data`` holds the model's shared variables (the Gram blocks and prior parameters),
    already set to this fit's values.  Chains start at ``starts`` (unconstrained values
    keyed by value-variable name, one dict per chain: their mean, jittered by their
    spread) or at PyMC's initial point.
    """
    import nutpie

    order = [v.name for v in model.value_vars]
    if starts:
        vecs = [np.concatenate([np.ravel(p[k]) for k in order]) for p in starts]
    else:
        point = model.initial_point()
        vecs = [np.concatenate([np.ravel(point[k]) for k in order])]
    center = np.mean(vecs, axis=0)
    spread = np.std(vecs, axis=0) if len(vecs) > 1 else None

    def init(s: Any) -> np.ndarray:  # nutpie calls this with one seed per chain
        rng = np.random.default_rng(np.random.SeedSequence([seed, int(s) % 2**32]))
        if spread is None:  # PyMC's jitter of its initial point
            return center + rng.uniform(-1.0, 1.0, len(center))
        return center + spread * rng.standard_normal(len(spread))

    if backend == "python":
        pyfns = cache.get("nutpie-python")
        if pyfns is None:
            pyfns = cache["nutpie-python"] = _python_functions(model)
        comp = _python_model(model, pyfns, init)
    else:
        comp = cache.get("nutpie-numba")
        if comp is None:
            comp = cache["nutpie-numba"] = nutpie.compile_pymc_model(model)
        used = {v.name for v in comp.shared_var_keys}
        comp = comp.with_data(**{k: v.get_value() for k, v in data.items() if k in used})
        comp = dataclasses.replace(comp, initial_point_func=init)
    return nutpie.sample(comp, draws=draws, tune=tune, chains=chains, seed=seed,
                         cores=cores, save_warmup=True, progress_bar=progressbar,
                         target_accept=target_accept)
