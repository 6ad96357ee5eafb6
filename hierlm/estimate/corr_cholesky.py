"""The Cholesky factor of a correlation matrix from unconstrained values, as one Op.

NUTS samples each LKJ prior's correlation factor ``L`` (``n x n``, lower, unit-norm
rows) through ``k = n(n-1)/2`` unconstrained values ``z``.  As in PyMC's
``CholeskyCorrTransform`` (same ordering of ``z``, so the value variables and their
meaning are unchanged), the strictly lower entries of a unit-diagonal matrix ``U``
are filled from ``z`` and every row is normalized::

    L_i = U_i / s_i,    s_i = sqrt(1 + |x_i|^2),   x_i = U_i's off-diagonal entries,

with log-Jacobian ``sum_i (i + 2) log L_ii`` (``i`` from 0).  Reverse mode, row by
row::

    dz_b = Lbar_ib / s_i - x_b (Lbar_i . U_i) / s_i^3.

Why one Op: PyMC builds this map from a spiral fill, a pad, a set-subtensor and a
norm, ~40 nodes with their reverse mode.  In the compiled log density each is an
array allocation, and for sleepstudy they cost about a fifth of a gradient
evaluation; here it is one loop.  The PyMC transform that uses the Op
(:func:`fused_cholesky_corr`) is made only when a model is built, so cached graphs
load without PyMC.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.tensor.variable import TensorVariable

# isort: off
from hierlm.objective.jit.lapack import source_version  # makes Numba's cache safe first
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key
# isort: on

_VERSION = source_version(Path(__file__))


def fill_order(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of ``L`` that each entry of ``z`` fills (PyMC's spiral order).

    Examples
    --------
    >>> [a.tolist() for a in fill_order(3)]
    [[2, 2, 1], [1, 0, 0]]
    """
    k, m = n * (n - 1) // 2, n - 1
    idx = np.arange(k)
    Y = np.concatenate([idx[m:], idx[::-1]]).reshape(m, m) if m else np.zeros((0, 0), int)
    row, col = np.empty(k, dtype=np.int64), np.empty(k, dtype=np.int64)
    for i in range(m):
        for j in range(i + 1):
            row[Y[i, j]], col[Y[i, j]] = i + 1, j
    return row, col


@numba.njit(cache=True)
def corr_cholesky_kernel(z: np.ndarray, row: np.ndarray, col: np.ndarray,
                         n: int) -> np.ndarray:  # pragma: no cover
    """``L`` from ``z`` (see the module docstring)."""
    L = np.zeros((n, n))
    for i in range(n):
        L[i, i] = 1.0
    for a in range(z.shape[0]):
        L[row[a], col[a]] = z[a]
    for i in range(n):
        s = 0.0
        for j in range(i + 1):
            s += L[i, j] * L[i, j]
        s = 1.0 / math.sqrt(s)
        for j in range(i + 1):
            L[i, j] *= s
    return L


@numba.njit(cache=True)
def corr_cholesky_grad_kernel(z: np.ndarray, row: np.ndarray, col: np.ndarray, L: np.ndarray,
                              Lbar: np.ndarray) -> np.ndarray:  # pragma: no cover
    """``dz`` from ``dL`` (see the module docstring)."""
    n = L.shape[0]
    dot = np.empty(n)  # (Lbar_i . U_i) / s_i^3 = (Lbar_i . L_i) L_ii^2, with 1/s_i = L_ii
    for i in range(n):
        acc = 0.0
        for j in range(i + 1):
            acc += Lbar[i, j] * L[i, j]
        dot[i] = acc * L[i, i] * L[i, i]
    out = np.empty(z.shape[0])
    for a in range(z.shape[0]):
        i = row[a]
        out[a] = Lbar[i, col[a]] * L[i, i] - z[a] * dot[i]
    return out


class CorrCholeskyGrad(Op):
    """``(z, row, col, L, Lbar) -> dz``."""

    __props__ = ()

    def make_node(self, *inputs: Any) -> Apply:
        return Apply(self, [pt.as_tensor_variable(x) for x in inputs],
                     [pt.vector(dtype="float64")])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        outputs[0][0] = corr_cholesky_grad_kernel(*inputs)


class CorrCholesky(Op):
    """``(z, row, col) -> L`` for an ``n x n`` factor (see the module docstring)."""

    __props__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = int(n)
        super().__init__()

    def make_node(self, *inputs: Any) -> Apply:  # (z, row, col)
        return Apply(self, [pt.as_tensor_variable(x) for x in inputs],
                     [pt.tensor(dtype="float64", shape=(self.n, self.n))])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        outputs[0][0] = corr_cholesky_kernel(*inputs, self.n)  # type: ignore[call-arg]

    def pullback(self, inputs: Any, outputs: Any, output_grads: Any) -> list:
        z, row, col = inputs
        return [CorrCholeskyGrad()(z, row, col, outputs[0], output_grads[0]),
                DisconnectedType()(), DisconnectedType()()]

    def connection_pattern(self, node: Apply) -> list[list[bool]]:
        return [[True], [False], [False]]


def corr_cholesky(z: TensorVariable, n: int) -> TensorVariable:
    """The ``n x n`` correlation Cholesky factor of unconstrained ``z``.

    Parameters
    ----------
    z : TensorVariable
        Vector of ``n(n-1)/2`` unconstrained values, in PyMC's order.
    n : int
        Size of the correlation matrix.

    Returns
    -------
    TensorVariable
        Lower-triangular ``(n, n)`` factor with unit-norm rows.

    Examples
    --------
    >>> import numpy as np
    >>> L = corr_cholesky(pt.as_tensor(np.array([0.75])), 2).eval()
    >>> L.round(12).tolist()
    [[1.0, 0.0], [0.6, 0.8]]
    """
    row, col = fill_order(n)
    out: TensorVariable = CorrCholesky(n)(z, pt.constant(row), pt.constant(col))  # type: ignore[assignment]
    return out


@functools.cache
def fused_cholesky_corr(n: int) -> Any:
    """PyMC's ``CholeskyCorrTransform`` whose backward map and log-Jacobian use
    :func:`corr_cholesky` (its forward map, used for starting points, is PyMC's)."""
    from pymc.distributions.transforms import CholeskyCorrTransform

    class FusedCholeskyCorr(CholeskyCorrTransform):
        def backward(self, value: Any, *inputs: Any) -> TensorVariable:
            return corr_cholesky(pt.as_tensor(value), self.n)

        def log_jac_det(self, value: Any, *inputs: Any) -> TensorVariable:
            L = self.backward(value)
            w = np.arange(2, 2 + self.n, dtype="float64")
            out: TensorVariable = (pt.log(pt.diagonal(L)) * w).sum()
            return out

    return FusedCholeskyCorr(n)


@register_funcify_default_op_cache_key(CorrCholesky)
def _numba_corr_cholesky(op: CorrCholesky, node: Apply, **kwargs: Any) -> Any:
    n = op.n

    @numba.njit
    def fn(z, row, col):  # type: ignore[no-untyped-def]  # pragma: no cover
        return corr_cholesky_kernel(z, row, col, n)

    return fn, _VERSION  # n is a prop: PyTensor's default cache key includes it


@register_funcify_default_op_cache_key(CorrCholeskyGrad)
def _numba_corr_cholesky_grad(op: CorrCholeskyGrad, node: Apply, **kwargs: Any) -> Any:
    @numba.njit
    def fn(z, row, col, L, Lbar):  # type: ignore[no-untyped-def]  # pragma: no cover
        return corr_cholesky_grad_kernel(z, row, col, L, Lbar)

    return fn, _VERSION
