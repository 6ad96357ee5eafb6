"""The log density NUTS samples, compiled once and called by nutpie without Python.

The PyMC model of :mod:`hierlm.estimate.nuts_model` defines, in the unconstrained
coordinates ``x`` of its value variables (``log sigma``, ``log sd``, the LKJ factor's
unconstrained values), the joined log density::

    log p(x) = sum of the log priors (with their log-Jacobians) - deviance(x) / 2

where ``deviance`` is the unprofiled marginal deviance of
:mod:`hierlm.objective.cholesky`.  Three graphs are taken from it and kept on disk by
:mod:`hierlm.objective.graph_cache`, so a new process neither builds the PyMC model
nor rewrites its graphs:

``logp``     ``x -> (log p(x), d log p / dx)``
``expand``   ``x -> (beta, sigma, sd_i, L_i)`` flattened (the constrained draws)
``forward``  constrained values -> ``x`` (for the chains' starting points)

Their data (Gram blocks, prior parameters) are plain inputs.  nutpie calls ``logp`` and
``expand`` through C function pointers: small Numba ``cfunc`` wrappers that read the
data's addresses and shapes from one ``int64`` array and call the graph's Numba
function.  The wrappers are cached by Numba like the graphs, and the chains run in
parallel threads with no interpreter lock.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt

from hierlm.estimate.nuts_model import _data_values, compiled
from hierlm.estimate.nuts_posterior import coords_of
from hierlm.estimate.priors import Priors
from hierlm.objective.graph_cache import (
    CompiledGraph,
    NotNeeded,
    compile_graph,
    wrapper_function,
)
from hierlm.objective.profiled import ProfiledObjective


@dataclass(frozen=True)
class DensityGraphs:
    """The three compiled graphs of one model structure and their variables.

    Attributes
    ----------
    logp, expand, forward : CompiledGraph
    names : tuple of str
        The sampled variables (constrained), in ``expand``'s order.
    shapes : tuple of tuple of int
    dims : dict
        Dimension names of the variables that have them.
    value_names : tuple of str
        The unconstrained value variables, in ``x``'s order.
    value_shapes : tuple of tuple of int
    ndim : int
        Length of ``x``.
    """

    logp: CompiledGraph
    expand: CompiledGraph
    forward: CompiledGraph
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dims: dict[str, tuple[str, ...]]
    value_names: tuple[str, ...]
    value_shapes: tuple[tuple[int, ...], ...]
    ndim: int

    @property
    def n_expanded(self) -> int:
        """Length of ``expand``'s output (all constrained values, flattened)."""
        return int(sum(int(np.prod(s)) for s in self.shapes))

    def unravel(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """``x`` split into the value variables, by name."""
        sizes = [int(np.prod(s)) for s in self.value_shapes]
        parts = np.split(np.asarray(x), np.cumsum(sizes)[:-1])
        return {k: p.reshape(s) for k, p, s in
                zip(self.value_names, parts, self.value_shapes, strict=True)}

    @functools.cached_property
    def c_functions(self) -> tuple[Any, Any]:
        """The ``logp`` and ``expand`` C entry points (Numba ``cfunc``), in nutpie's ABI.

        Both read their data from one :func:`user_data` array laid out by ``logp``'s
        inputs.
        """
        sig_logp, sig_expand = _signatures()
        return (_cfunc(self.logp, self.logp, _LOGP_SRC, "hierlm_logp", sig_logp, n=self.ndim),
                _cfunc(self.logp, self.expand, _EXPAND_SRC, "hierlm_expand", sig_expand,
                       n=self.ndim, m=self.n_expanded))


def _structure_key(objective: ProfiledObjective, pr: Priors) -> tuple:
    design = objective.design
    return (objective.structure, design.p, tuple(pr.labels), tuple(t.p for t in design.terms))


def _python_thunks() -> Any:
    """PyTensor evaluates graphs with Python thunks in the block, compiling no C.

    The two one-off helper evaluations below (PyMC's initial point, the value shapes)
    would otherwise compile every node to C (about 15 s for sleepstudy on an empty
    cache) and, for the matrix product in the LKJ transform's Scan, look for BLAS link
    flags, warning "could not link to a BLAS installation" where there are none.
    hierlm's own graphs are compiled by Numba, which calls BLAS and LAPACK through
    SciPy (:mod:`hierlm.objective.lapack`): the warning never applied to them.
    """
    return pytensor.config.change_flags(cxx="")


def _pymc_pieces(objective: ProfiledObjective, pr: Priors) -> dict[str, Any]:
    """Inputs, outputs and metadata of the three graphs, from the PyMC model."""
    from pymc.pytensorf import join_nonshared_inputs

    model = compiled(objective, pr).model
    value_vars = model.value_vars
    with _python_thunks():
        point = model.initial_point()
    logp = model.logp()
    grads: Any = pt.grad(logp, value_vars)
    values = model.replace_rvs_by_values(model.free_RVs)
    flat = pt.concatenate([pt.as_tensor(v).ravel() for v in values])
    outs, x = join_nonshared_inputs(
        point, _without_parameter_checks(
            [logp, pt.concatenate([g.ravel() for g in grads]), flat,
             *[pt.as_tensor(v).shape for v in values]]), value_vars)
    x0 = np.concatenate([np.ravel(point[v.name]) for v in value_vars])
    with _python_thunks():
        shapes = pytensor.function([x], outs[3:], mode="FAST_COMPILE")(x0)
    constrained, unconstrained = [], []
    for rv in model.free_RVs:
        c = rv.type(name=rv.name)
        tr = model.rvs_to_transforms.get(rv)
        constrained.append(c)
        unconstrained.append(c if tr is None else tr.forward(c, *rv.owner.inputs))
    names = tuple(rv.name for rv in model.free_RVs)
    meta = {
        "names": names,
        "shapes": tuple(tuple(int(d) for d in np.ravel(sh)) for sh in shapes),
        "dims": {n: tuple(model.named_vars_to_dims[n]) for n in names
                 if n in model.named_vars_to_dims},
        "value_names": tuple(v.name for v in value_vars),
        "value_shapes": tuple(tuple(int(d) for d in np.shape(point[v.name])) for v in value_vars),
        "ndim": int(x0.size),
    }
    by_value = dict(zip([model.rvs_to_values[rv].name for rv in model.free_RVs],
                        unconstrained, strict=True))
    forward = pt.concatenate([pt.as_tensor(by_value[v.name]).ravel() for v in value_vars])
    return {"logp": ([x], outs[:2], meta), "expand": ([x], outs[2:3], meta),
            "forward": (constrained, [forward], meta)}


def _without_parameter_checks(outputs: list[Any]) -> list[Any]:
    """``outputs`` with PyMC's parameter checks removed (what ``pm.Model(check_bounds=
    False)`` does when PyMC compiles).  The checks test the priors' parameters, which
    :mod:`hierlm.estimate.priors` has validated, and the transformed values, which are
    valid by construction; without them the graphs hold no PyMC Op, so loading them
    from disk does not import PyMC."""
    from pymc.logprob.utils import CheckParameterValue
    from pytensor.graph.replace import clone_replace
    from pytensor.graph.traversal import ancestors

    while True:
        checks = {v: v.owner.inputs[0] for v in ancestors(outputs)
                  if v.owner is not None and isinstance(v.owner.op, CheckParameterValue)}
        if not checks:
            return outputs
        outputs = clone_replace(outputs, replace=checks)


_GRAPHS: dict[tuple, DensityGraphs] = {}


def density_graphs(objective: ProfiledObjective, pr: Priors) -> DensityGraphs:
    """The compiled graphs of this model's structure (from memory, disk, or built).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.estimate.priors import resolve_priors
    >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> g = density_graphs(m.objective, resolve_priors(m.design))
    >>> g.names, g.ndim
    (('beta', 'sigma', 'sd_Subject', 'chol_corr_Subject'), 6)
    """
    key = _structure_key(objective, pr)
    got = _GRAPHS.get(key)
    if got is not None:
        return got
    built: dict[str, Any] = {}

    def piece(role: str) -> Any:
        if not built:  # one PyMC model for all three, and only when one is not on disk
            built.update(_pymc_pieces(objective, pr))
        return built[role]

    g = {role: compile_graph(f"nuts-{role}", key, functools.partial(piece, role))
         for role in ("logp", "expand", "forward")}
    meta = g["logp"].meta
    got = _GRAPHS[key] = DensityGraphs(
        g["logp"], g["expand"], g["forward"], tuple(meta["names"]),
        tuple(tuple(s) for s in meta["shapes"]), dict(meta["dims"]),
        tuple(meta["value_names"]), tuple(tuple(s) for s in meta["value_shapes"]),
        int(meta["ndim"]))
    return got


def data_values(objective: ProfiledObjective, pr: Priors) -> dict[str, np.ndarray]:
    """Values of every data input of the graphs, by name (Gram blocks, prior
    parameters and the lengths of the named dimensions)."""
    vals = _data_values(objective, pr)
    vals.update({dim: np.asarray(len(labels), dtype=np.int64)
                 for dim, labels in coords_of(objective.design).items()})
    return vals


def call_args(graph: CompiledGraph, values: dict[str, np.ndarray], n_explicit: int
              ) -> list[np.ndarray]:
    """The data arguments of ``graph.fn`` after its ``n_explicit`` explicit inputs."""
    out = []
    for var in graph.fgraph.inputs[n_explicit:]:
        v = values[str(var.name)]  # (ascontiguousarray makes 0-d arrays 1-d: reshape)
        out.append(np.ascontiguousarray(v, dtype=var.type.dtype).reshape(np.shape(v)))
    return out


# --- C entry points for nutpie ---------------------------------------------------------

@functools.cache
def _intrinsics() -> Any:
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def as_pointer(typingctx: Any, address: Any) -> Any:
        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            return builder.inttoptr(args[0], cgutils.voidptr_t)
        return types.voidptr(address), codegen

    return as_pointer


def _data_lines(layout: CompiledGraph, graph: CompiledGraph) -> tuple[list[str], list[str]]:
    """Source lines that rebuild the data inputs of ``layout`` (after ``x``) from ``ud``
    (each one's address, then its shape), and the names ``graph`` takes of them."""
    lines, names, pos = [], {}, 0
    for k, var in enumerate(layout.fgraph.inputs[1:]):
        nd = var.type.ndim
        shape = "(" + "".join(f"ud[{pos + 1 + j}], " for j in range(nd)) + ")"
        dtype = var.type.dtype
        lines.append(f"    a{k} = numba.carray(as_pointer(ud[{pos}]), {shape}, np.{dtype})")
        names[var.name] = f"a{k}"
        pos += 1 + nd
    args = [names[var.name] for var in graph.fgraph.inputs[1:]]
    return [f"    ud = numba.carray(ud_, ({pos},), np.int64)", *lines], args


_LOGP_SRC = """
def hierlm_logp(dim, x_, out_, logp_, ud_):
    if dim != {n}:
        return -1
    try:
        x = numba.carray(x_, ({n},))
        out = numba.carray(out_, ({n},))
        logp = numba.carray(logp_, ())
{data}
        value, grad = fn(x, {args})
        logp[()] = value
        out[:] = grad
        if not np.all(np.isfinite(out)):
            return 3
        if not np.isfinite(value):
            return 4
    except Exception:
        return 1
    return 0
"""

_EXPAND_SRC = """
def hierlm_expand(dim, expanded, x_, out_, ud_):
    if dim != {n} or expanded != {m}:
        return -1
    try:
        x = numba.carray(x_, ({n},))
        out = numba.carray(out_, ({m},))
{data}
        (values,) = fn(x, {args})
        out[:] = values
    except Exception:
        return -2
    return 0
"""


def _cfunc(layout: CompiledGraph, graph: CompiledGraph, template: str, fname: str, sig: Any,
           **sizes: int) -> Any:
    import numba

    lines, args = _data_lines(layout, graph)
    src = template.format(data="\n".join("    " + ln for ln in lines), args=", ".join(args),
                          **sizes)

    def make(fn: Any) -> Any:
        env = {"numba": numba, "np": np, "as_pointer": _intrinsics()}
        py_fn = wrapper_function(graph, src, fname, fn, env)
        return numba.cfunc(sig, cache=graph.digest is not None)(py_fn)

    if graph.digest is not None:
        try:  # converting the graph to Numba costs ~0.5 s; skip it when cached
            return make(NotNeeded())
        except numba.core.errors.TypingError:
            pass
    return make(graph.fn)


@functools.cache
def _signatures() -> tuple[Any, Any]:
    from numba import types

    dptr = types.CPointer(types.double)
    return (types.int64(types.uint64, dptr, dptr, dptr, types.voidptr),
            types.int64(types.uint64, types.uint64, dptr, dptr, types.voidptr))


def user_data(args: list[np.ndarray]) -> np.ndarray:
    """The ``int64`` array the C entry points read: each input's address, then shape.
    ``args`` must stay alive while it is in use."""
    out: list[int] = []
    for a in args:
        out += [a.ctypes.data, *a.shape]
    return np.asarray(out, dtype=np.int64)


class LogpDlogp:
    """The cached ``logp`` graph as PyMC's NUTS calls a log density.

    It has the attributes of PyMC's ``ValueGradFunction`` that ``pm.NUTS`` reads
    (passed as ``logp_dlogp_func``), so PyMC's sampler does not compile the model's
    density in every process: ``x -> (log p(x), d log p / dx)`` on the raveled value
    variables, in ``DensityGraphs.value_names`` order.  It pickles as the graph and the
    data, so PyMC's worker processes load the graph's machine code from the caches.
    ``args`` (the data) is read at each call, so one step serves every dataset of the
    same structure.
    """

    dtype = "float64"
    _raveled_inputs = True
    trust_input = True

    def __init__(self, graph: CompiledGraph, args: list[np.ndarray]) -> None:
        self._graph = graph
        self.args = args
        self._extra_vars_shared: dict[str, Any] = {}

    def _pytensor_function(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        value, grad = self._graph.python_fn(x, *self.args)
        return value, grad

    def __call__(self, x: np.ndarray, extra_vars: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return self._pytensor_function(x)

    def __getstate__(self) -> dict[str, Any]:
        g = self._graph  # not its Numba functions: the worker loads them from the caches
        return {"fgraph": g.fgraph, "meta": g.meta, "digest": g.digest, "args": self.args}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._graph = CompiledGraph(state["fgraph"], state["meta"], state["digest"], loaded=True)
        self.args = state["args"]
        self._extra_vars_shared = {}


def to_unconstrained(graphs: DensityGraphs, values: dict[str, np.ndarray],
                     starts: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """Constrained starting points (by variable name) as vectors ``x``."""
    data = call_args(graphs.forward, values, len(graphs.names))
    return [np.asarray(graphs.forward.python_fn(*[np.asarray(st[k], dtype=np.float64)
                                           for k in graphs.names], *data)[0])
            for st in starts]


def nutpie_model(graphs: DensityGraphs, values: dict[str, np.ndarray],
                 coords: dict[str, list[str]], init: Callable[[Any], np.ndarray]) -> Any:
    """A nutpie model that samples ``graphs.logp`` with this fit's data."""
    from nutpie.compile_pymc import CompiledPyMCModel

    logp_c, expand_c = graphs.c_functions
    args = call_args(graphs.logp, values, 1)
    sizes = [int(np.prod(s)) for s in graphs.shapes]
    slices = [slice(a - s, a) for a, s in zip(np.cumsum(sizes), sizes, strict=True)]
    used = {d for ds in graphs.dims.values() for d in ds}
    return CompiledPyMCModel(
        dims=dict(graphs.dims), _coords={k: list(v) for k, v in coords.items() if k in used},
        _n_dim=graphs.ndim, _shapes=dict(zip(graphs.names, graphs.shapes, strict=True)),
        compiled_logp_func=logp_c, compiled_expand_func=expand_c,
        initial_point_func=init, shared_data={"args": args},  # keeps the data alive
        shared_var_keys={}, user_data=user_data(args), n_expanded=graphs.n_expanded,
        shape_info=(list(graphs.names), slices, [list(s) for s in graphs.shapes]),
        logp_func=None, expand_func=None)
