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

Their data (Gram blocks, prior parameters, the number of fixed effects) are plain
inputs.  nutpie calls ``logp`` and ``expand`` through C function pointers
(:mod:`hierlm.estimate.nuts_cfunc`): small Numba ``cfunc`` wrappers that read the
sizes and the data's addresses and shapes from one ``int64`` array and call the
graph's Numba function.  The wrappers are cached by Numba like the graphs, and the
chains run in parallel threads with no interpreter lock.

What is compiled depends only on the structure (:func:`_structure_key`): the
objective's :class:`~hierlm.objective.cholesky.Structure`, whether there are fixed
effects, each term's number of coefficients and, where a term has a structured
covariance (``ar1``, ``cs``, ``toep``, ``diag``: sampled in its own parameters and
mapped to theta inside the density, :mod:`hierlm.estimate.nuts_structured`), each
term's structure.  The graphs are built from a PyMC
model whose terms are named ``{0}``, ``{1}``, ... and whose fixed-effect length is
an input (``x`` is split with a symbolic offset), so column names, level counts and
the number of fixed effects never enter them: a model with new names loads another
model's graphs and machine code, and :class:`DensityGraphs` puts its names back for
nutpie's ArviZ output.

Measured with ``python -m benchmarks.nuts_first`` (2-core machine, one run, old and
new keying one after the other; sleepstudy renamed at random, 1-5 subjects left out,
a random covariate added in two of three formulas; fresh process after one warm-up
process with other names; 2 chains x 200 draws; medians of 2 processes).  First NUTS
fit of a new model keyed by structure, against ``before`` (keyed by names and
sizes)::

    formula                    graphs  C entry points  rest of fit (sampling)  first fit  before
    y ~ 1 + x + (1 + x | g)      0.24            0.24             1.46 (1.14)       1.94   17.98
    y ~ 1 + x + z + (1 | g)      0.05            0.07             0.12 (0.07)       0.24   10.20
    y ~ 1 + x + z + (x || g)     0.01            0.07             0.27 (0.10)       0.35   11.19

(seconds). Before, the time went to building the PyMC model and rewriting its graphs
(0.7-2.1 s) and, above all, to Numba compiling each model's graphs anew (9.0-14.3 s).
Now the graphs load from disk (0.01-0.24 s) and their machine code from Numba's cache;
the whole process (import, three first fits) took 3.85 s against 41.8 s. A second run at
a higher load (``benchmarks/nuts_first_results.md``): 3.10, 0.39 and 0.56 s against
23.6, 15.8 and 16.5 s; whole process 6.3 s against 59.8 s. Where the first model's first
fit in a process goes now (fresh process, load average 2.5): importing nutpie 1.05 s (it
imports ArviZ, with arviz_plots, matplotlib.pyplot and scipy.stats), the REML fit for
the starting points 0.26-0.33 s, sampling and nutpie's conversion to ArviZ 0.36 s, the
starting points through ``forward`` 0.10-0.13 s, the C entry points from Numba's cache
0.08 s, the graphs from disk 0.02 s. One log density and gradient of sleepstudy took
18.8 us against 20.3 us before (``python -m benchmarks.nuts_bench gradient``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hierlm.covariance.design import DesignCovariance
from hierlm.estimate.nuts_cfunc import c_functions, user_data
from hierlm.estimate.nuts_density_graph import pymc_pieces
from hierlm.estimate.nuts_model import _data_values, generic_dims
from hierlm.estimate.priors import Priors
from hierlm.objective.graph_cache import CompiledGraph, compile_graph
from hierlm.objective.profiled import ProfiledObjective


@dataclass(frozen=True)
class DensityCode:
    """The three compiled graphs of one model structure, shared by all its models.

    Built from a model whose terms are named ``{0}``, ``{1}``, ... (see
    :func:`hierlm.estimate.nuts_model.generic_labels`); ``logp.meta`` holds the names
    as templates for ``str.format`` and the shapes with ``None`` for the fixed-effect
    axis.
    """

    logp: CompiledGraph
    expand: CompiledGraph
    forward: CompiledGraph

    @functools.cached_property
    def c_functions(self) -> tuple[Any, Any]:
        """The ``logp`` and ``expand`` C entry points (:mod:`hierlm.estimate.nuts_cfunc`)."""
        return c_functions(self.logp, self.expand)


@dataclass(frozen=True)
class DensityGraphs:
    """The compiled graphs of one model, with its variables' names and shapes.

    Attributes
    ----------
    code : DensityCode
        The compiled graphs (``logp``, ``expand``, ``forward``), shared by every model
        of the structure.
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

    code: DensityCode
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dims: dict[str, tuple[str, ...]]
    value_names: tuple[str, ...]
    value_shapes: tuple[tuple[int, ...], ...]
    ndim: int

    @property
    def logp(self) -> CompiledGraph:
        """``x -> (log p(x), d log p / dx)``."""
        return self.code.logp

    @property
    def expand(self) -> CompiledGraph:
        """``x -> `` the constrained values, flattened in ``names`` order."""
        return self.code.expand

    @property
    def forward(self) -> CompiledGraph:
        """Constrained values (in ``names`` order) ``-> x``."""
        return self.code.forward

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

    @property
    def c_functions(self) -> tuple[Any, Any]:
        """The ``logp`` and ``expand`` C entry points (Numba ``cfunc``), in nutpie's ABI.

        Both read their data from one :meth:`user_data` array laid out by ``logp``'s
        inputs.
        """
        return self.code.c_functions

    def user_data(self, args: list[np.ndarray]) -> np.ndarray:
        """The array the C entry points read (:func:`~hierlm.estimate.nuts_cfunc.user_data`)
        for this model's data ``args``; ``args`` must stay alive while it is in use."""
        return user_data(args, self.ndim, self.n_expanded)


def _structure_key(objective: ProfiledObjective) -> tuple:
    """What the compiled density depends on: the objective's structure, whether there
    are fixed effects, and each term's number of coefficients (the prior families are
    fixed), followed by :func:`covariance_key` where a term is structured.  Names, level
    counts and the number of fixed effects are data."""
    design = objective.design
    return (objective.structure, design.p > 0, tuple(t.p for t in design.terms),
            *covariance_key(design))


def covariance_key(design: Any) -> tuple:
    """Each term's covariance structure (``us``, ``ar1``, ``homcs``, ``hetar1``, ...: the
    name holds ``hom``/``het``), as a one-element tuple; empty where every term is
    unstructured, so that those models keep their keys (and their graphs on disk).
    A structured term's density differs by its structure and ``p`` only: its SDs'
    prior scales are data, its correlation parameters' ranges follow from ``p``."""
    cov = DesignCovariance.of(design)
    return (tuple(c.structure for c in cov.terms),) if cov.structured else ()


_CODE: dict[tuple, DensityCode] = {}


def density_code(objective: ProfiledObjective, pr: Priors) -> DensityCode:
    """The compiled graphs of this model's structure (from memory, disk, or built).

    ``pr`` supplies the priors' values only when the graphs are built (as data: any
    priors give the same graphs)."""
    key = _structure_key(objective)
    got = _CODE.get(key)
    if got is not None:
        return got
    built: dict[str, Any] = {}

    def piece(role: str) -> Any:
        if not built:  # one PyMC model for all three, and only when one is not on disk
            built.update(pymc_pieces(objective, pr))
        return built[role]

    g = {role: compile_graph(f"nuts-{role}", key, functools.partial(piece, role))
         for role in ("logp", "expand", "forward")}
    got = _CODE[key] = DensityCode(g["logp"], g["expand"], g["forward"])
    return got


def density_graphs(objective: ProfiledObjective, pr: Priors) -> DensityGraphs:
    """The compiled graphs of this model's structure, with this model's names and
    shapes (the terms' labels are ``pr.labels``).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.estimate.priors import resolve_priors
    >>> m = hierlm.Model("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> g = density_graphs(m.objective, resolve_priors(m.design))
    >>> g.names, g.ndim
    (('beta', 'sigma', 'sd_Subject', 'chol_corr_Subject'), 6)
    """
    code = density_code(objective, pr)
    meta, p = code.logp.meta, objective.design.p

    def name(template: str) -> str:
        return template.format(*pr.labels)

    def shape(template: Any) -> tuple[int, ...]:
        return tuple(p if d is None else int(d) for d in template)

    value_shapes = tuple(shape(s) for s in meta["value_shapes"])
    return DensityGraphs(
        code, tuple(name(n) for n in meta["names"]), tuple(shape(s) for s in meta["shapes"]),
        {name(k): tuple(name(d) for d in v) for k, v in meta["dims"].items()},
        tuple(name(n) for n in meta["value_names"]), value_shapes,
        int(sum(int(np.prod(s)) for s in value_shapes)))


def data_values(objective: ProfiledObjective, pr: Priors) -> dict[str, np.ndarray]:
    """Values of every data input of the graphs, by name (Gram blocks, prior
    parameters and the lengths of the dimensions of the generic model)."""
    vals = _data_values(objective, pr)
    vals.update({dim: np.asarray(n, dtype=np.int64)
                 for dim, n in generic_dims(objective.design).items()})
    return vals


def call_args(graph: CompiledGraph, values: dict[str, np.ndarray], n_explicit: int
              ) -> list[np.ndarray]:
    """The data arguments of ``graph.fn`` after its ``n_explicit`` explicit inputs."""
    out = []
    for var in graph.fgraph.inputs[n_explicit:]:
        v = values[str(var.name)]  # (ascontiguousarray makes 0-d arrays 1-d: reshape)
        out.append(np.ascontiguousarray(v, dtype=var.type.dtype).reshape(np.shape(v)))
    return out


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
        shared_var_keys={}, user_data=graphs.user_data(args), n_expanded=graphs.n_expanded,
        shape_info=(list(graphs.names), slices, [list(s) for s in graphs.shapes]),
        logp_func=None, expand_func=None)
