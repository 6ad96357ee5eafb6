"""C entry points of the NUTS log density, in nutpie's ABI.

nutpie calls ``logp(dim, x, grad, logp, user_data)`` and ``expand(dim, m, x, out,
user_data)`` through C function pointers.  Here they are small Numba ``cfunc`` wrappers
around a compiled graph's Numba function: ``user_data`` is one ``int64`` array::

    [ndim, n_expanded, address_0, shape_0..., address_1, shape_1..., ...]

holding the lengths of ``x`` and of ``expand``'s output, then each data input's address
and shape.  Nothing in a wrapper's source depends on a model's sizes, only on the
number and ranks of the graph's inputs, so one wrapper serves every model of a
structure and Numba caches it under the graph's digest.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from hierlm.objective.graph_cache import CompiledGraph, NotNeeded, wrapper_function

#: Leading entries of ``user_data`` before the data inputs: ``ndim``, ``n_expanded``.
N_SIZES = 2


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


def _data_lines(layout: CompiledGraph, graph: CompiledGraph) -> tuple[str, list[str], list[str]]:
    """The source line that reads ``ud`` (see the module docstring), the lines that
    rebuild the data inputs of ``layout`` (after ``x``) from it, and the names
    ``graph`` takes of them."""
    lines, names, pos = [], {}, N_SIZES
    for k, var in enumerate(layout.fgraph.inputs[1:]):
        nd = var.type.ndim
        shape = "(" + "".join(f"ud[{pos + 1 + j}], " for j in range(nd)) + ")"
        dtype = var.type.dtype
        lines.append(f"a{k} = numba.carray(as_pointer(ud[{pos}]), {shape}, np.{dtype})")
        names[var.name] = f"a{k}"
        pos += 1 + nd
    args = [names[var.name] for var in graph.fgraph.inputs[1:]]
    return f"ud = numba.carray(ud_, ({pos},), np.int64)", lines, args


_LOGP_SRC = """
def hierlm_logp(dim, x_, out_, logp_, ud_):
    {ud}
    n = ud[0]
    if dim != n:
        return -1
    try:
        x = numba.carray(x_, (n,))
        out = numba.carray(out_, (n,))
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
    {ud}
    n = ud[0]
    m = ud[1]
    if dim != n or expanded != m:
        return -1
    try:
        x = numba.carray(x_, (n,))
        out = numba.carray(out_, (m,))
{data}
        (values,) = fn(x, {args})
        out[:] = values
    except Exception:
        return -2
    return 0
"""


def _cfunc(layout: CompiledGraph, graph: CompiledGraph, template: str, fname: str,
           sig: Any, cached_only: bool = False) -> Any:
    """The C entry point; with ``cached_only``, None unless Numba has it cached."""
    import numba

    ud, lines, args = _data_lines(layout, graph)
    src = template.format(ud=ud, data="\n".join(" " * 8 + ln for ln in lines),
                          args=", ".join(args))

    def make(fn: Any) -> Any:
        env = {"numba": numba, "np": np, "as_pointer": _intrinsics()}
        py_fn = wrapper_function(graph, src, fname, fn, env)
        return numba.cfunc(sig, cache=graph.digest is not None)(py_fn)

    if graph.digest is not None:
        try:  # converting the graph to Numba costs ~0.5 s; skip it when cached
            return make(NotNeeded())
        except numba.core.errors.TypingError:
            pass
    if cached_only:
        return None
    return make(graph.fn)


@functools.cache
def _signatures() -> tuple[Any, Any]:
    from numba import types

    dptr = types.CPointer(types.double)
    return (types.int64(types.uint64, dptr, dptr, dptr, types.voidptr),
            types.int64(types.uint64, types.uint64, dptr, dptr, types.voidptr))


def c_functions(logp: CompiledGraph, expand: CompiledGraph) -> tuple[Any, Any]:
    """The ``logp`` and ``expand`` C entry points (Numba ``cfunc``); both read their
    data from one :func:`user_data` array laid out by ``logp``'s inputs."""
    sig_logp, sig_expand = _signatures()
    return (_cfunc(logp, logp, _LOGP_SRC, "hierlm_logp", sig_logp),
            _cfunc(logp, expand, _EXPAND_SRC, "hierlm_expand", sig_expand))


def cached_c_functions(logp: CompiledGraph, expand: CompiledGraph) -> tuple[Any, Any] | None:
    """:func:`c_functions` if Numba has both in its cache, else None (compiling nothing)."""
    sig_logp, sig_expand = _signatures()
    got_logp = _cfunc(logp, logp, _LOGP_SRC, "hierlm_logp", sig_logp, cached_only=True)
    if got_logp is None:
        return None
    got_expand = _cfunc(logp, expand, _EXPAND_SRC, "hierlm_expand", sig_expand, cached_only=True)
    return None if got_expand is None else (got_logp, got_expand)


def user_data(args: list[np.ndarray], ndim: int, n_expanded: int) -> np.ndarray:
    """The ``int64`` array the C entry points read: the lengths of ``x`` and of the
    expanded draws, then each input's address and shape.  ``args`` must stay alive
    while it is in use.

    Examples
    --------
    >>> a = np.zeros((2, 3))
    >>> user_data([a], 6, 9)[[0, 1, 3, 4]].tolist()
    [6, 9, 2, 3]
    """
    out: list[int] = [int(ndim), int(n_expanded)]
    for a in args:
        out += [a.ctypes.data, *a.shape]
    return np.asarray(out, dtype=np.int64)
