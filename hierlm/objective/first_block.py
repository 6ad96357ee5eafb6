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

import math
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
def first_block_kernel(T: np.ndarray, A: np.ndarray
                       ) -> tuple[np.ndarray, float, np.ndarray]:  # pragma: no cover
    """``(L, logdet, W)`` (see the module docstring); NaN where ``M_k`` is not
    positive definite."""
    l1, p = A.shape[0], A.shape[1]
    L = np.zeros((l1, p, p))
    W = np.empty((l1, p, p))
    B = np.empty((p, p))
    V = np.empty((p, p))
    logdet = 0.0
    for k in range(l1):
        for a in range(p):  # B = A_k T (T lower: column j has rows j..p-1)
            for j in range(p):
                s = 0.0
                for b in range(j, p):
                    s += A[k, a, b] * T[b, j]
                B[a, j] = s
        Lk = L[k]
        for j in range(p):  # M = T'B + I, factored column by column (lower triangle only)
            for i in range(j, p):
                s = 1.0 if i == j else 0.0
                for a in range(i, p):
                    s += T[a, i] * B[a, j]
                for q in range(j):
                    s -= Lk[i, q] * Lk[j, q]
                if i == j:
                    d = math.sqrt(s) if s > 0.0 else math.nan
                    Lk[j, j] = d
                    logdet += 2.0 * math.log(d)
                else:
                    Lk[i, j] = s / Lk[j, j]
        for i in range(p):  # V = L^{-1} T' by forward substitution
            for c in range(p):
                s = T[c, i]
                for j in range(i):
                    s -= Lk[i, j] * V[j, c]
                V[i, c] = s / Lk[i, i]
        for a in range(p):  # W = V'V
            for b in range(a, p):
                s = 0.0
                for i in range(p):
                    s += V[i, a] * V[i, b]
                W[k, a, b] = s
                W[k, b, a] = s
    return L, logdet, W


@numba.njit(cache=True)
def first_block_grad_kernel(T: np.ndarray, A: np.ndarray, L: np.ndarray, W: np.ndarray,
                            g: float, Wbar: np.ndarray) -> np.ndarray:  # pragma: no cover
    """``df/dT = 2 sum_k [(I - A_k W_k) G_k + g A_k] T M_k^{-1}``, ``G_k = sym(Wbar_k)``;
    ``O(p1^3)`` per level."""
    l1, p = A.shape[0], A.shape[1]
    dT = np.zeros((p, p))
    Li = np.empty((p, p))
    TLt = np.empty((p, p))
    TMi = np.empty((p, p))
    AW = np.empty((p, p))
    X = np.empty((p, p))
    for k in range(l1):
        Lk = L[k]
        for c in range(p):  # Li = L_k^{-1}, lower triangular
            for i in range(p):
                if i < c:
                    Li[i, c] = 0.0
                    continue
                s = 1.0 if i == c else 0.0
                for j in range(c, i):
                    s -= Lk[i, j] * Li[j, c]
                Li[i, c] = s / Lk[i, i]
        for a in range(p):  # TLt = T Li' (both lower triangular)
            for i in range(p):
                s = 0.0
                for j in range(min(a, i) + 1):
                    s += T[a, j] * Li[i, j]
                TLt[a, i] = s
        for a in range(p):  # TMi = T M^{-1} = TLt Li
            for b in range(p):
                s = 0.0
                for i in range(b, p):
                    s += TLt[a, i] * Li[i, b]
                TMi[a, b] = s
        for a in range(p):  # AW = A_k W_k
            for c in range(p):
                s = 0.0
                for d in range(p):
                    s += A[k, a, d] * W[k, d, c]
                AW[a, c] = s
        for a in range(p):  # X = G - AW G + g A, G = sym(Wbar_k)
            for b in range(p):
                s = 0.5 * (Wbar[k, a, b] + Wbar[k, b, a]) + g * A[k, a, b]
                for c in range(p):
                    s -= AW[a, c] * 0.5 * (Wbar[k, c, b] + Wbar[k, b, c])
                X[a, b] = s
        for a in range(p):
            for b in range(p):
                s = 0.0
                for c in range(p):
                    s += X[a, c] * TMi[c, b]
                dT[a, b] += 2.0 * s
    return dT


class FirstBlockGrad(Op):
    """``(T, A11, L, W, g, Wbar) -> df/dT``."""

    __props__ = ()

    def make_node(self, *inputs: Any) -> Apply:
        return Apply(self, [pt.as_tensor_variable(x) for x in inputs],
                     [pt.matrix(dtype="float64")])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        T, A, L, W, g, Wbar = inputs
        outputs[0][0] = first_block_grad_kernel(T, A, L, W, float(g), Wbar)


class FirstBlock(Op):
    """``(T, A11) -> (L, logdet, W)`` (see the module docstring)."""

    __props__ = ()

    def make_node(self, *inputs: Any) -> Apply:  # (T, A11)
        return Apply(self, [pt.as_tensor_variable(x) for x in inputs],
                     [pt.tensor3(dtype="float64"), pt.scalar(dtype="float64"),
                      pt.tensor3(dtype="float64")])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        L, logdet, W = first_block_kernel(*inputs)
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


@register_funcify_default_op_cache_key(FirstBlock)
def _numba_first_block(op: FirstBlock, node: Apply, **kwargs: Any) -> Any:
    @numba.njit
    def fn(T, A):  # type: ignore[no-untyped-def]  # pragma: no cover
        L, logdet, W = first_block_kernel(T, A)
        return L, np.asarray(logdet), W

    return fn, KERNEL_VERSION


@register_funcify_default_op_cache_key(FirstBlockGrad)
def _numba_first_block_grad(op: FirstBlockGrad, node: Apply, **kwargs: Any) -> Any:
    @numba.njit
    def fn(T, A, L, W, g, Wbar):  # type: ignore[no-untyped-def]  # pragma: no cover
        return first_block_grad_kernel(T, A, L, W, g.item(), Wbar)

    return fn, KERNEL_VERSION
