"""Cholesky factor with a cheap gradient for functions of its log-diagonal.

``S = L L'`` (lower ``L``).  The op returns ``L`` and ``g = log diag(L)``.  Every
criterion hierlm optimizes or samples reads the dense factor only through ``g``
(``log|L|^2``, ``log|R_X|^2`` and ``r^2`` are all diagonal entries), and for a
scalar ``f(g)`` the reverse-mode rule for the Cholesky factor,
``dS = L^{-T} Phi(L' dL) L^{-1}``, collapses with ``dL = diag(dg / L_ii)`` to::

    dS = 1/2 L^{-T} diag(dg) L^{-1} = 1/2 Y'Y - 1/2 Z'Z,

``Y = diag(sqrt(dg+)) L^{-1}``, ``Z = diag(sqrt(dg-)) L^{-1}``: one ``dtrtri`` and one
or two ``dlauum`` calls, ``m^3/3`` flops each, instead of a dense product and two
triangular solves with ``m`` right-hand sides.  The gradient with respect to the
``L`` output is not implemented (nothing differentiates through it).

When ``S`` is not positive definite both outputs are NaN (as
``pt.linalg.cholesky(on_error="nan")``).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key
from pytensor.tensor.variable import TensorVariable

from hierlm.objective import lapack
from hierlm.objective.lapack import KERNEL_VERSION


@numba.njit(cache=True)
def chol_kernel(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
    """``(L, log diag L)``; NaN when ``S`` is not positive definite."""
    L = np.ascontiguousarray(S).copy()
    info = lapack.potrf_lower(L)
    n = L.shape[0]
    g = np.empty(n)
    if info != 0:
        L[:, :] = np.nan
        g[:] = np.nan
        return L, g
    for i in range(n):
        g[i] = np.log(L[i, i])
    return L, g


@numba.njit(cache=True)
def _half_gram(X: np.ndarray, w: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Lower triangle of ``1/2 X' diag(w) X`` for lower-triangular ``X`` and ``w >= 0``."""
    n = X.shape[0]
    Y = np.zeros((n, n))
    for i in range(n):
        s = np.sqrt(0.5 * w[i])
        for j in range(i + 1):
            Y[i, j] = X[i, j] * s
    lapack.lauum_lower(Y)
    return Y


@numba.njit(cache=True)
def chol_grad_kernel(L: np.ndarray, gbar: np.ndarray) -> np.ndarray:  # pragma: no cover
    """``1/2 L^{-T} diag(gbar) L^{-1}`` (full symmetric matrix)."""
    n = L.shape[0]
    X = np.ascontiguousarray(L).copy()
    lapack.trtri_lower(X)
    out = _half_gram(X, np.maximum(gbar, 0.0))
    if np.any(gbar < 0.0):
        out -= _half_gram(X, np.maximum(-gbar, 0.0))
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i]
    return out


class CholLogDiagGrad(Op):
    """``(L, dg) -> dS``."""

    __props__ = ()

    def make_node(self, *inputs: Any) -> Apply:  # (L, gbar)
        return Apply(self, [pt.as_tensor_variable(x) for x in inputs],
                     [pt.matrix(dtype="float64")])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        outputs[0][0] = chol_grad_kernel(inputs[0], np.ascontiguousarray(inputs[1]))


class CholLogDiag(Op):
    """``S -> (L, log diag L)`` with ``S = L L'``."""

    __props__ = ()

    def make_node(self, *inputs: Any) -> Apply:  # (S,)
        return Apply(self, [pt.as_tensor_variable(x) for x in inputs],
                     [pt.matrix(dtype="float64"), pt.vector(dtype="float64")])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        L, g = chol_kernel(inputs[0])
        outputs[0][0] = L
        outputs[1][0] = g

    def pullback(self, inputs: Any, outputs: Any, output_grads: Any) -> list:
        if not isinstance(output_grads[0].type, DisconnectedType):
            raise NotImplementedError("CholLogDiag: only log diag(L) can be differentiated")
        return [CholLogDiagGrad()(outputs[0], output_grads[1])]


_CHOL_LOGDIAG = CholLogDiag()


def chol_logdiag(S: TensorVariable) -> tuple[TensorVariable, TensorVariable]:
    """``(L, log diag L)`` with ``S = L L'``; only ``log diag L`` has a gradient.

    Examples
    --------
    >>> import numpy as np
    >>> L, g = chol_logdiag(pt.as_tensor(np.array([[4.0, 2.0], [2.0, 5.0]])))
    >>> L.eval().tolist(), np.exp(g.eval()).tolist()
    ([[2.0, 0.0], [1.0, 2.0]], [2.0, 2.0])
    """
    L, g = _CHOL_LOGDIAG(S)  # type: ignore[misc]
    return L, g  # type: ignore[return-value]


@register_funcify_default_op_cache_key(CholLogDiag)
def _numba_chol(op: CholLogDiag, node: Apply, **kwargs: Any) -> Any:
    @numba.njit
    def fn(S):  # type: ignore[no-untyped-def]  # pragma: no cover
        return chol_kernel(S)

    return fn, KERNEL_VERSION


@register_funcify_default_op_cache_key(CholLogDiagGrad)
def _numba_chol_grad(op: CholLogDiagGrad, node: Apply, **kwargs: Any) -> Any:
    @numba.njit
    def fn(L, gbar):  # type: ignore[no-untyped-def]  # pragma: no cover
        return chol_grad_kernel(L, np.ascontiguousarray(gbar))

    return fn, KERNEL_VERSION
