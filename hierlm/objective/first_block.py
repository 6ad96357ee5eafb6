"""The first term's diagonal blocks, factored level by level, as one PyTensor Op.

For the first term's relative factor ``T`` (lower triangular, ``p1 x p1``) and the
Gram blocks ``A_k = Z_k'Z_k`` of its levels ``k = 1..l1``::

    M_k = T'A_k T + I = L_k L_k',      W_k = T M_k^{-1} T',
    logdet = sum_k log|M_k| = 2 sum_k sum_i log (L_k)_ii.

The Op returns ``(L, logdet, W)``; ``W`` feeds the Schur complement
(:mod:`hierlm.objective.cholesky`).  For a scalar ``f(logdet, W)`` with
``g = df/dlogdet`` and ``G_k = sym(df/dW_k)``, differentiating ``M_k`` and ``W_k``
in ``T`` gives::

    df/dT = 2 sum_k [(I - A_k W_k) G_k + g A_k] T M_k^{-1}

(``d log|M| = tr(M^{-1} dM)``, ``dM^{-1} = -M^{-1} dM M^{-1}``, ``A_k`` symmetric).
``L`` has no gradient: only the conditional modes read it.

Why one Op: written with PyTensor's elementwise operations, the unrolled ``p1 x p1``
factorization and its reverse mode are ~80 graph nodes, each a separate array
allocation and loop over the levels in the compiled function, and the cached
machine code grows with them.  Here each direction is one loop over the levels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.tensor.variable import TensorVariable


def first_block_values(T: np.ndarray, A: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """``(L, logdet, W)`` in NumPy, batched over the levels; NaN where an ``M_k`` is
    not positive definite (the Numba kernel is :mod:`hierlm.objective.jit.first_block`).

    Examples
    --------
    >>> L, logdet, W = first_block_values(np.array([[2.0]]), np.array([[[1.0]], [[2.0]]]))
    >>> round(float(np.exp(logdet)), 12), np.round(W.ravel(), 4).tolist()
    (45.0, [0.8, 0.4444])
    """
    p = T.shape[0]
    M = np.matmul(T.T, np.matmul(A, T)) + np.eye(p)
    try:
        L = np.linalg.cholesky(M)
    except np.linalg.LinAlgError:
        return np.full(M.shape, np.nan), float("nan"), np.full(M.shape, np.nan)
    logdet = 2.0 * float(np.log(np.diagonal(L, axis1=1, axis2=2)).sum())
    V = np.linalg.solve(L, np.broadcast_to(T.T, M.shape))  # L_k^{-1} T'
    return L, logdet, np.matmul(V.transpose(0, 2, 1), V)


def first_block_grad_values(T: np.ndarray, A: np.ndarray, L: np.ndarray, W: np.ndarray,
                            g: float, Wbar: np.ndarray) -> np.ndarray:
    """``df/dT = 2 sum_k [(I - A_k W_k) G_k + g A_k] T M_k^{-1}``, ``G_k = sym(Wbar_k)``,
    in NumPy.

    Examples
    --------
    ``d/dT log(1 + T^2 A) = 2 T A / (1 + T^2 A)``:

    >>> T, A = np.array([[2.0]]), np.array([[[1.0]]])
    >>> L, _, W = first_block_values(T, A)
    >>> np.round(first_block_grad_values(T, A, L, W, 1.0, np.zeros((1, 1, 1))), 12).tolist()
    [[0.8]]
    """
    if A.shape[0] == 0:
        return np.zeros_like(T)
    Li = np.linalg.inv(L)
    TMi = np.matmul(T, np.matmul(Li.transpose(0, 2, 1), Li))  # T M_k^{-1}
    G = 0.5 * (Wbar + Wbar.transpose(0, 2, 1))
    X = G - np.matmul(np.matmul(A, W), G) + g * A
    return 2.0 * np.einsum("kab,kbc->ac", X, TMi)


class FirstBlockGrad(Op):
    """``(T, A11, L, W, g, Wbar) -> df/dT``."""

    __props__ = ()

    def make_node(self, *inputs: Any) -> Apply:
        return Apply(self, [pt.as_tensor_variable(x) for x in inputs],
                     [pt.matrix(dtype="float64")])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        T, A, L, W, g, Wbar = inputs
        outputs[0][0] = first_block_grad_values(T, A, L, W, float(g), Wbar)


class FirstBlock(Op):
    """``(T, A11) -> (L, logdet, W)`` (see the module docstring)."""

    __props__ = ()

    def make_node(self, *inputs: Any) -> Apply:  # (T, A11)
        return Apply(self, [pt.as_tensor_variable(x) for x in inputs],
                     [pt.tensor3(dtype="float64"), pt.scalar(dtype="float64"),
                      pt.tensor3(dtype="float64")])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        L, logdet, W = first_block_values(*inputs)
        outputs[0][0] = L
        outputs[1][0] = np.asarray(logdet)
        outputs[2][0] = W

    def pullback(self, inputs: Any, outputs: Any, output_grads: Any) -> list:
        T, A = inputs
        L, _, W = outputs
        Lbar, gbar, Wbar = output_grads
        if not isinstance(Lbar.type, DisconnectedType):
            raise NotImplementedError("FirstBlock: the factors L have no gradient")
        if isinstance(gbar.type, DisconnectedType):
            gbar = pt.zeros(())
        if isinstance(Wbar.type, DisconnectedType):
            Wbar = pt.zeros_like(W)
        return [FirstBlockGrad()(T, A, L, W, gbar, Wbar), grad_not_implemented(self, 1, A)]


_FIRST_BLOCK = FirstBlock()


def first_block(T: TensorVariable, A11: TensorVariable
                ) -> tuple[TensorVariable, TensorVariable, TensorVariable]:
    """``(L, logdet, W)`` of the first term's blocks ``M_k = T'A_k T + I``.

    Parameters
    ----------
    T : TensorVariable
        The first term's relative factor, lower triangular ``(p1, p1)``.
    A11 : TensorVariable
        ``(l1, p1, p1)`` Gram blocks of its levels.

    Returns
    -------
    L : TensorVariable
        ``(l1, p1, p1)`` Cholesky factors of ``M_k`` (no gradient).
    logdet : TensorVariable
        ``sum_k log|M_k|``.
    W : TensorVariable
        ``(l1, p1, p1)``: ``T M_k^{-1} T'``.

    Examples
    --------
    >>> import numpy as np
    >>> L, logdet, W = first_block(pt.as_tensor(np.array([[2.0]])),
    ...                            pt.as_tensor(np.array([[[1.0]], [[2.0]]])))
    >>> [np.round(np.exp(logdet.eval()), 12), *np.round([L.eval(), W.eval()], 4).ravel()]
    [np.float64(45.0), np.float64(2.2361), np.float64(3.0), np.float64(0.8), np.float64(0.4444)]
    """
    L, logdet, W = _FIRST_BLOCK(T, A11)  # type: ignore[misc]
    return L, logdet, W  # type: ignore[return-value]
