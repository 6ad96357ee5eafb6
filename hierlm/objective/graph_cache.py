"""Compiled graphs kept on disk across processes: rewrite once, then only link.

Compiling a PyTensor graph has three costs: building it (Python), rewriting it
(PyTensor's graph rewrites, seconds for the few hundred nodes of a hierlm objective)
and generating machine code (Numba, which PyTensor already caches on disk).  Only the
first two were paid again in every process.  :func:`compile_graph` also keeps the
*rewritten* graph on disk: a later process loads it and skips building and rewriting.

A graph has two links (``link``).  ``"numba"``: :attr:`CompiledGraph.fn` and
``python_fn``, Numba's machine code; fastest per call, but a new structure costs tens
of seconds of compiling, and even a cached one about a second per process (importing
Numba, starting its compiler, loading the machine code).  ``"vm"``:
:attr:`CompiledGraph.vm_fn`, PyTensor's Python VM over NumPy (the Ops' ``perform``);
nothing is compiled and Numba is not imported.  Each link has its own rewritten graph
(:func:`rewrite_mode`): Numba's rewrites fuse elementwise loops, which Numba compiles
into one loop but the VM would run element by element in Python, so the VM's graph is
rewritten without fusion, each elementwise node one NumPy call.  Rewriting compiles
nothing for either link.
Called from Python (:attr:`CompiledGraph.python_fn`) it goes through a one-line
Numba wrapper cached under the graph's digest, whose machine code includes the
graph's, so a warm process does not even convert the graph to Numba.

A cached graph is keyed by a name, the caller's structural key, the versions of
PyTensor, PyMC, Numba, NumPy and nutpie, and a digest of the hierlm modules that build
graphs, so editing them or upgrading a dependency never loads a stale graph.  The
file holds that key too, and a graph is used only when the key matches: a file
copied over another's name is rebuilt, never run.  The
files live under PyTensor's compile directory (``pytensor.config.base_compiledir``), in ``hierlm/``;
setting the environment variable ``HIERLM_GRAPH_CACHE=0`` turns the cache off.
Any file that cannot be read is rebuilt, never trusted.

(PyTensor can pickle a compiled ``Function``, but not hierlm's: gradients of its
``OpFromGraph`` ops are closures.  The rewritten ``FunctionGraph`` has those ops
inlined and pickles, so it is what is stored.)
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import pickle
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytensor
from pytensor.compile.io import In, Out
from pytensor.compile.mode import Mode, get_mode
from pytensor.compile.sharedvalue import SharedVariable
from pytensor.graph.basic import Variable
from pytensor.graph.destroyhandler import DestroyHandler
from pytensor.graph.fg import FunctionGraph
from pytensor.graph.replace import clone_replace
from pytensor.graph.rewriting.basic import SequentialGraphRewriter
from pytensor.graph.rewriting.db import RewriteDatabaseQuery
from pytensor.link.numba.linker import NumbaLinker  # imports no Numba
from pytensor.link.vm import VMLinker

from hierlm.objective import numba_cache
from hierlm.objective.interrupts import interrupts_kept
from hierlm.objective.numba_wrapper import NotNeeded, _WarmCall, wrapper_function
from hierlm.objective.threads import (
    PYTENSOR_LOCK,
    PerThread,
    inner_function_ops,
    own_inner_functions,
)

__all__ = ["CompiledGraph", "NotNeeded", "cache_dir", "cached_graph", "compile_graph",
           "on_disk", "rewrite_mode", "source_digest", "wrapper_function"]

_PACKAGES = ("pytensor", "pymc", "numba", "numpy", "nutpie")
#: The modules that build cached graphs (relative to the package root).
GRAPH_SOURCES = ("objective/*.py", "estimate/nuts_model.py", "estimate/nuts_compiled.py",
                 "estimate/nuts_density_graph.py", "estimate/nuts_cfunc.py",
                 "estimate/corr_cholesky.py",
                 "estimate/nuts_posterior.py", "inference/deviance.py")


@dataclass(frozen=True)
class CompiledGraph:
    """A rewritten graph; its Numba function is made on first use.

    Attributes
    ----------
    fgraph : FunctionGraph
        The rewritten graph (inputs in call order, shared variables included).
    meta : dict
        What the builder stored alongside the graph (names, shapes, ...).
    digest : str or None
        Identifies the graph on disk (None when the disk cache is off).
    loaded : bool
        True when the graph came from disk.
    """

    fgraph: FunctionGraph
    meta: dict[str, Any] = field(default_factory=dict)
    digest: str | None = None
    loaded: bool = False

    @functools.cached_property
    def fn(self) -> Callable[..., Any]:
        """Numba function ``fn(*inputs) -> tuple of outputs`` (machine code from
        Numba's cache when PyTensor has compiled this graph before).  Numba's
        functions allocate their outputs on every call, so one serves every thread."""
        numba_cache.prepare()
        from pytensor.link.numba.dispatch.basic import numba_funcify_ensure_cache, numba_njit

        import hierlm.objective.jit  # noqa: F401 - registers hierlm's Numba kernels

        py_fn: Any
        with interrupts_kept(), PYTENSOR_LOCK:
            py_fn, key = numba_funcify_ensure_cache(self.fgraph)
            return numba_njit(py_fn.py_func, final_function=True, cache=key is not None)

    @functools.cached_property
    def python_fn(self) -> Callable[..., Any]:
        """:attr:`fn` for callers in Python, loaded without converting the graph.

        Converting a graph to Numba is Python work (~0.25 s for the profiled
        objective) that Numba's cache does not save.  A cached graph is called through
        a one-line Numba wrapper, cached under the graph's digest: a wrapper that Numba
        loads from its cache holds the graph's machine code, so it loads with a
        stand-in callee and the graph is never converted.  When Numba has not cached
        it (for these argument types), typing the stand-in fails before anything runs
        and the wrapper is compiled against :attr:`fn`.
        """
        if self.digest is None:
            return self.fn
        return _WarmCall(self)

    @functools.cached_property
    def vm_fn(self) -> Callable[..., Any]:
        """The graph on PyTensor's Python VM: ``vm_fn(*inputs) -> list of outputs``.

        Links in a fraction of a second; nothing is compiled (no C, no Numba).  A
        PyTensor ``Function`` keeps its inputs, intermediates and outputs in storage
        of its own, so two threads calling one would overwrite each other's values:
        each thread calls its own link (:class:`PerThread`).
        """
        nested = any(inner_function_ops(op.fgraph)  # type: ignore[arg-type]
                     for op in inner_function_ops(self.fgraph))
        return PerThread(self._link_vm, serialize=nested)

    def _link_vm(self) -> Callable[..., Any]:
        with PYTENSOR_LOCK, pytensor.config.change_flags(cxx=""):
            mode = Mode(_python_vm(), SequentialGraphRewriter())  # link only
            fg = self.fgraph.clone()
            own_inner_functions(fg)
            fn = mode.function_maker([In(v) for v in fg.inputs], [Out(v) for v in fg.outputs],
                                     mode, fgraph=fg, accept_inplace=True,
                                     on_unused_input="ignore").create()
        fn.trust_input = True
        return fn  # type: ignore[no-any-return]


def _python_vm() -> VMLinker:
    """PyTensor's Python VM with Python thunks only (no C is compiled)."""
    return VMLinker(use_cloop=False, c_thunks=False, allow_gc=False)


def rewrite_mode(link: str = "numba") -> Mode:
    """The mode a graph for ``link`` is rewritten in, linked by the Python VM so that
    rewriting compiles nothing: Numba's rewrites (``"numba"``), or PyTensor's
    ``fast_run`` rewrites without elementwise fusion (``"vm"``)."""
    linker = _python_vm()
    if link == "vm":
        return Mode(linker, RewriteDatabaseQuery(include=["fast_run"], exclude=["fusion"]))
    # the VM asks for the rewrites the Numba linker would
    linker.required_rewrites = NumbaLinker.required_rewrites
    linker.incompatible_rewrites = NumbaLinker.incompatible_rewrites
    return Mode(linker, get_mode("NUMBA").provided_optimizer)


@functools.cache
def source_digest() -> str:
    """Digest of the hierlm modules that build graphs (:data:`GRAPH_SOURCES`) and of
    the versions of the packages the graphs depend on."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for path in sorted(p for pattern in GRAPH_SOURCES for p in root.glob(pattern)):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    for pkg in _PACKAGES:
        try:
            h.update(f"{pkg}={importlib.metadata.version(pkg)}".encode())
        except importlib.metadata.PackageNotFoundError:
            h.update(f"{pkg}=none".encode())
    return h.hexdigest()


def cache_dir() -> Path | None:
    """Folder of the cached graphs (None when ``HIERLM_GRAPH_CACHE=0``)."""
    if os.environ.get("HIERLM_GRAPH_CACHE", "1") == "0":
        return None
    return Path(pytensor.config.base_compiledir) / "hierlm"


def _identity(name: str, key: Any, link: str) -> str:
    """Everything a cached graph depends on, as stored in its file."""
    return f"{name}|{key!r}|{link}|{source_digest()}"


def _location(name: str, key: Any, link: str) -> tuple[str, Path] | None:
    """The graph's digest and file (None when the cache is off)."""
    folder = cache_dir()
    if folder is None:
        return None
    digest = hashlib.sha256(_identity(name, key, link).encode()).hexdigest()[:32]
    return digest, folder / f"{name}-{digest}.pkl"


def _load(path: Path, identity: str) -> tuple[FunctionGraph, dict[str, Any]] | None:
    """The graph stored in ``path`` if the file holds the graph of ``identity``
    (a file renamed, copied over another or written by another version is not)."""
    try:
        with path.open("rb") as fh:
            stored, fgraph, meta = pickle.load(fh)
    except Exception:  # noqa: BLE001 - any unreadable file is rebuilt
        return None
    if (stored != identity or not isinstance(fgraph, FunctionGraph)
            or not isinstance(meta, dict)):
        return None
    # In-place ops must run after every other reader of their input: the destroy
    # handler restores that ordering, as it does in every PyTensor compilation.
    fgraph.attach_feature(DestroyHandler())
    return fgraph, meta


def _store(path: Path, identity: str, fgraph: FunctionGraph, meta: dict[str, Any]) -> None:
    # Ops with an inner graph (fused loops) hold the inner function the rewrite's VM
    # linked: it is process state, not graph, so it stays out of the file.
    inner = inner_function_ops(fgraph)
    linked = [op._fn for op in inner]
    try:
        for op in inner:
            op._fn = None
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump((identity, fgraph, meta), fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - a cache that cannot be written only costs time
        pass
    finally:
        for op, fn in zip(inner, linked, strict=True):
            op._fn = fn


def compile_graph(name: str, key: Any,
                  build: Callable[[], tuple[Sequence[Variable], Sequence[Variable],
                                            dict[str, Any]]],
                  link: str = "numba") -> CompiledGraph:
    """Compile ``build()``'s graph, or load its rewritten form from disk.

    Parameters
    ----------
    name : str
        What the graph is (part of the file name).
    key : hashable
        Everything the graph's structure depends on (its ``repr`` is hashed).
    build : callable
        Returns ``(inputs, outputs, meta)``: the graph's explicit inputs, its outputs
        and picklable metadata.  Shared variables of the graph become plain inputs
        after the explicit ones (``fgraph.inputs`` gives the order).  Called
        only when nothing usable is cached.
    link : {"numba", "vm"}
        The link the graph is rewritten for (:func:`rewrite_mode`).

    Returns
    -------
    CompiledGraph

    Examples
    --------
    >>> import numpy as np
    >>> import pytensor.tensor as pt
    >>> def build():
    ...     x = pt.vector("x")
    ...     return [x], [(x ** 2).sum()], {"note": "sum of squares"}
    >>> g = compile_graph("example", 1, build)
    >>> float(g.fn(np.array([3.0, 4.0]))[0]), g.meta["note"]
    (25.0, 'sum of squares')
    """
    where = _location(name, key, link)
    digest, path = where if where is not None else (None, None)
    identity = _identity(name, key, link)
    loaded = _load(path, identity) if path is not None and path.exists() else None
    if loaded is not None:
        return CompiledGraph(loaded[0], loaded[1], digest, loaded=True)
    with interrupts_kept():
        return _compile(name, key, build, link, digest, path)


def on_disk(name: str, key: Any, link: str = "numba") -> bool:
    """Whether a file for the graph is on disk (what :func:`cached_graph` would read).

    Examples
    --------
    >>> on_disk("never-stored", 0)
    False
    """
    where = _location(name, key, link)
    return where is not None and where[1].exists()


def cached_graph(name: str, key: Any, link: str = "numba") -> CompiledGraph | None:
    """The graph :func:`compile_graph` would load from disk, or None when it would
    have to build it (nothing usable on disk, or the cache off).

    Examples
    --------
    >>> cached_graph("never-stored", 0) is None
    True
    """
    where = _location(name, key, link)
    if where is None or not where[1].exists():
        return None
    loaded = _load(where[1], _identity(name, key, link))
    return None if loaded is None else CompiledGraph(loaded[0], loaded[1], where[0], loaded=True)


def _compile(name: str, key: Any,
             build: Callable[[], tuple[Sequence[Variable], Sequence[Variable],
                                       dict[str, Any]]],
             link: str, digest: str | None, path: Path | None) -> CompiledGraph:
    inputs, outputs, meta = build()
    with PYTENSOR_LOCK, pytensor.config.change_flags(cxx=""), warnings.catch_warnings():
        # a rewrite's note that it left two loops unfused: nothing for the user to do
        warnings.filterwarnings("ignore", message="Loop fusion failed", category=UserWarning)
        compiled = pytensor.function(list(inputs), list(outputs), trust_input=True,
                                     on_unused_input="ignore", mode=rewrite_mode(link))
    rewritten = compiled.maker.fgraph
    # Shared variables become plain inputs: their values are the caller's, per call,
    # and stay out of the file.
    plain: dict[Variable, Variable] = {
        v: v.type(name=v.name) for v in rewritten.inputs if isinstance(v, SharedVariable)}
    outputs = clone_replace(list(rewritten.outputs), replace=plain) if plain else rewritten.outputs
    fgraph = FunctionGraph([plain.get(v, v) for v in rewritten.inputs], outputs, clone=True)
    if path is not None:
        _store(path, _identity(name, key, link), fgraph, meta)
    fgraph.attach_feature(DestroyHandler())
    return CompiledGraph(fgraph, meta, digest)
