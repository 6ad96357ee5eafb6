"""The sparse Schur update ``U = A_R1 W A_R1'`` as a PyTensor Op with its gradient.

``A_R1`` (rest rows x block-1 columns) is stored by level of the first term: the
nonzeros of level ``k`` are ``a = level_ptr[k] .. level_ptr[k+1]-1``, each with a
row ``nz_row[a]`` (ascending within a level), its level ``nz_level[a]`` and a
``p1``-vector ``v_a = nz_val[a]``.  With ``W`` block diagonal (``W_k``, symmetric
``p1 x p1``)::

    U[r_a, r_b] = sum_k sum_{a, b in level k} v_a' W_k v_b

costs ``sum_k nnz_k^2`` multiply-adds (half of them, by symmetry) and needs no
memory beyond ``U``.  The gradient of a scalar ``f`` is::

    dW_k = sum_{a, b in level k} dU[r_a, r_b] v_a v_b'     (symmetrized)

Both loops run row by row of ``U`` (``row_order[row_ptr[r]:row_ptr[r+1]]`` are the
nonzeros in row ``r``): for each nonzero ``a`` in row ``r`` they walk its level's
short, contiguous run ``b <= a``, so the writes stay in one row of ``U`` (in cache)
instead of scattering over all ``m^2`` entries.

Both loops are compiled with Numba; the Op registers them with PyTensor's Numba
backend, so the surrounding graph stays cacheable on disk.  PyTensor has no sparse
Op for a block-diagonal congruence, and expressing it with gathers and an
``inc_subtensor`` materializes five arrays of ``sum_k nnz_k^2`` entries per
evaluation (the reason for writing the loop).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key
from pytensor.tensor.variable import TensorVariable

from hierlm.objective.lapack import KERNEL_VERSION


@numba.njit(cache=True)
def schur_update_kernel(W: np.ndarray, nz_val: np.ndarray, nz_row: np.ndarray,
                        nz_level: np.ndarray, level_ptr: np.ndarray, row_order: np.ndarray,
                        row_ptr: np.ndarray) -> np.ndarray:  # pragma: no cover
    """``U = sum_k A_k W_k A_k'`` (see the module docstring)."""
    m = row_ptr.shape[0] - 1
    U = np.zeros((m, m))
    p1 = W.shape[1]
    tmp = np.empty(p1)
    for r in range(m):
        for i in range(row_ptr[r], row_ptr[r + 1]):
            a = row_order[i]
            k = nz_level[a]
            for c in range(p1):
                acc = 0.0
                for d in range(p1):
                    acc += W[k, c, d] * nz_val[a, d]
                tmp[c] = acc
            for b in range(level_ptr[k], a + 1):
                v = 0.0
                for c in range(p1):
                    v += tmp[c] * nz_val[b, c]
                U[r, nz_row[b]] += v  # nz_row[b] <= r: the lower triangle
    for i in range(m):
        for j in range(i + 1, m):
            U[i, j] = U[j, i]
    return U


@numba.njit(cache=True)
def schur_update_grad_kernel(Ubar: np.ndarray, nz_val: np.ndarray, nz_row: np.ndarray,
                             nz_level: np.ndarray, level_ptr: np.ndarray,
                             row_order: np.ndarray, row_ptr: np.ndarray,
                             l1: int) -> np.ndarray:  # pragma: no cover
    """``dW_k = sym(sum_{a, b} dU[r_a, r_b] v_a v_b')`` (see the module docstring).

    With ``Us = dU + dU'`` this is ``sym(sum_a v_a t_a')``,
    ``t_a = Us[r_a, r_a]/2 v_a + sum_{b<a} Us[r_a, r_b] v_b``: ``p1`` flops per pair.
    """
    p1 = nz_val.shape[1]
    m = row_ptr.shape[0] - 1
    G = np.zeros((l1, p1, p1))
    t = np.empty(p1)
    us = np.empty(m)
    for r in range(m):
        for j in range(r + 1):
            us[j] = Ubar[r, j] + Ubar[j, r]
        for i in range(row_ptr[r], row_ptr[r + 1]):
            a = row_order[i]
            k = nz_level[a]
            h = 0.5 * us[r]
            for c in range(p1):
                t[c] = h * nz_val[a, c]
            for b in range(level_ptr[k], a):
                w = us[nz_row[b]]
                for c in range(p1):
                    t[c] += w * nz_val[b, c]
            for c in range(p1):
                for d in range(p1):
                    G[k, c, d] += nz_val[a, c] * t[d]
    for k in range(l1):
        for c in range(p1):
            for d in range(c, p1):
                s = 0.5 * (G[k, c, d] + G[k, d, c])
                G[k, c, d] = s
                G[k, d, c] = s
    return G


class SchurUpdateGrad(Op):
    """``(dU, W, nz_val, *pattern) -> dW``."""

    __props__ = ()

    def make_node(self, *inputs: Any) -> Apply:  # (Ubar, W, nz_val, *pattern)
        return Apply(self, [pt.as_tensor_variable(x) for x in inputs],
                     [pt.tensor3(dtype="float64")])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        Ubar, W, nz_val, *pattern = inputs
        outputs[0][0] = schur_update_grad_kernel(Ubar, nz_val, *pattern, W.shape[0])  # type: ignore[call-arg]


class SchurUpdate(Op):
    """``(W, nz_val, nz_row, nz_level, level_ptr, row_order, row_ptr) -> U``.

    ``U = A_R1 W A_R1'`` for symmetric ``W_k``; the integer arrays are the sparsity
    pattern of ``A_R1`` (see the module docstring).
    """

    __props__ = ()

    def make_node(self, *inputs: Any) -> Apply:  # (W, nz_val, *pattern)
        if len(inputs) != 7:
            raise TypeError("SchurUpdate needs W, nz_val, nz_row, nz_level, level_ptr, "
                            "row_order, row_ptr")
        return Apply(self, [pt.as_tensor_variable(x) for x in inputs],
                     [pt.matrix(dtype="float64")])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        outputs[0][0] = schur_update_kernel(*inputs)

    def pullback(self, inputs: Any, outputs: Any, output_grads: Any) -> list:
        W, nz_val, *pattern = inputs
        gW = SchurUpdateGrad()(output_grads[0], W, nz_val, *pattern)
        return [gW, grad_not_implemented(self, 1, nz_val),
                *[DisconnectedType()() for _ in pattern]]

    def connection_pattern(self, node: Apply) -> list[list[bool]]:
        return [[True], [True]] + [[False]] * 5


_SCHUR_UPDATE = SchurUpdate()


def schur_update(W: TensorVariable, nz_val: TensorVariable,
                 *pattern: TensorVariable) -> TensorVariable:
    """``U = A_R1 W A_R1'``; ``pattern`` is ``nz_row, nz_level, level_ptr, row_order, row_ptr``.

    Examples
    --------
    >>> import numpy as np
    >>> W = pt.as_tensor(np.full((2, 1, 1), 0.5))
    >>> i = lambda *v: pt.as_tensor(np.array(v, dtype=np.int64))
    >>> U = schur_update(W, pt.as_tensor(np.ones((3, 1))), i(0, 1, 1), i(0, 0, 1),
    ...                  i(0, 2, 3), i(0, 1, 2), i(0, 1, 3))
    >>> U.eval().tolist()
    [[0.5, 0.5], [0.5, 1.0]]
    """
    out: TensorVariable = _SCHUR_UPDATE(W, nz_val, *pattern)  # type: ignore[assignment]
    return out


@register_funcify_default_op_cache_key(SchurUpdate)
def _numba_schur_update(op: SchurUpdate, node: Apply, **kwargs: Any) -> Any:
    @numba.njit
    def fn(W, nz_val, nz_row, nz_level, level_ptr, row_order, row_ptr):  # type: ignore[no-untyped-def]  # noqa: E501  # pragma: no cover
        return schur_update_kernel(W, nz_val, nz_row, nz_level, level_ptr, row_order, row_ptr)

    return fn, KERNEL_VERSION


@register_funcify_default_op_cache_key(SchurUpdateGrad)
def _numba_schur_update_grad(op: SchurUpdateGrad, node: Apply, **kwargs: Any) -> Any:
    @numba.njit
    def fn(Ubar, W, nz_val, nz_row, nz_level, level_ptr, row_order, row_ptr):  # type: ignore[no-untyped-def]  # noqa: E501  # pragma: no cover
        return schur_update_grad_kernel(Ubar, nz_val, nz_row, nz_level, level_ptr, row_order,
                                        row_ptr, W.shape[0])

    return fn, KERNEL_VERSION
