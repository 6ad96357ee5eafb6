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

import numpy as np
import pytensor.tensor as pt
import scipy.sparse
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.tensor.variable import TensorVariable


def _by_row(val: np.ndarray, nz_level: np.ndarray, row_order: np.ndarray, row_ptr: np.ndarray,
            l1: int) -> scipy.sparse.csr_matrix:
    """``A_R1`` (or a matrix of its pattern with values ``val``) as a CSR matrix."""
    p1 = val.shape[1]
    cols = (nz_level[row_order, None] * p1 + np.arange(p1)).ravel()
    return scipy.sparse.csr_matrix((val[row_order].ravel(), cols, row_ptr * p1),
                                   shape=(len(row_ptr) - 1, l1 * p1))


def schur_update_values(W: np.ndarray, nz_val: np.ndarray, nz_row: np.ndarray,
                        nz_level: np.ndarray, level_ptr: np.ndarray, row_order: np.ndarray,
                        row_ptr: np.ndarray) -> np.ndarray:
    """``U = A_R1 W A_R1'`` with SciPy's sparse product (the Numba kernel, which needs
    no memory beyond ``U``, is :mod:`hierlm.objective.jit.schur_update`).

    Examples
    --------
    >>> i = lambda *v: np.array(v, dtype=np.int64)
    >>> schur_update_values(np.full((2, 1, 1), 0.5), np.ones((3, 1)), i(0, 1, 1), i(0, 0, 1),
    ...                     i(0, 2, 3), i(0, 1, 2), i(0, 1, 3)).tolist()
    [[0.5, 0.5], [0.5, 1.0]]
    """
    l1 = W.shape[0]
    Y = np.einsum("aij,aj->ai", W[nz_level], nz_val)  # W_k v_a
    U = (_by_row(nz_val, nz_level, row_order, row_ptr, l1)
         @ _by_row(Y, nz_level, row_order, row_ptr, l1).T).toarray()
    return 0.5 * (U + U.T)


def schur_update_grad_values(Ubar: np.ndarray, W: np.ndarray, nz_val: np.ndarray,
                             nz_row: np.ndarray, nz_level: np.ndarray, level_ptr: np.ndarray,
                             row_order: np.ndarray, row_ptr: np.ndarray) -> np.ndarray:
    """``dW_k = A_k' sym(dU) A_k`` in NumPy (``A_k``: level ``k``'s columns of ``A_R1``).

    Examples
    --------
    >>> i = lambda *v: np.array(v, dtype=np.int64)
    >>> schur_update_grad_values(np.eye(2), np.zeros((2, 1, 1)), np.ones((3, 1)),
    ...     i(0, 1, 1), i(0, 0, 1), i(0, 2, 3), i(0, 1, 2), i(0, 1, 3)).ravel().tolist()
    [2.0, 1.0]
    """
    l1, p1 = W.shape[0], W.shape[1]
    A = _by_row(nz_val, nz_level, row_order, row_ptr, l1)
    PT = np.asarray(A.T @ (0.5 * (Ubar + Ubar.T)))  # (l1 p1, m): A' sym(dU)
    t = PT[nz_level[:, None] * p1 + np.arange(p1), nz_row[:, None]]  # (sym(dU) A_k)[r_a]
    G = np.zeros((l1, p1, p1))
    np.add.at(G, nz_level, nz_val[:, :, None] * t[:, None, :])
    return 0.5 * (G + G.transpose(0, 2, 1))


class SchurUpdateGrad(Op):
    """``(dU, W, nz_val, *pattern) -> dW``."""

    __props__ = ()

    def make_node(self, *inputs: Any) -> Apply:  # (Ubar, W, nz_val, *pattern)
        return Apply(self, [pt.as_tensor_variable(x) for x in inputs],
                     [pt.tensor3(dtype="float64")])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        Ubar, W, nz_val, *pattern = inputs
        outputs[0][0] = schur_update_grad_values(Ubar, W, nz_val, *pattern)


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
        outputs[0][0] = schur_update_values(*inputs)

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
