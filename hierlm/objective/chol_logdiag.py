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

import numpy as np
import pytensor.tensor as pt
import scipy.linalg.lapack
from pytensor.gradient import DisconnectedType
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.tensor.variable import TensorVariable


def chol_values(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(L, log diag L)`` of ``S = L L'`` in NumPy; NaN when ``S`` is not positive
    definite (the Numba kernel is :mod:`hierlm.objective.jit.chol_logdiag`).

    Examples
    --------
    >>> L, g = chol_values(np.array([[4.0, 2.0], [2.0, 5.0]]))
    >>> L.tolist(), np.exp(g).tolist()
    ([[2.0, 0.0], [1.0, 2.0]], [2.0, 2.0])
    """
    try:
        L = np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        return np.full(S.shape, np.nan), np.full(S.shape[0], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        return L, np.log(np.diagonal(L))


def chol_grad_values(L: np.ndarray, gbar: np.ndarray) -> np.ndarray:
    """``1/2 L^{-T} diag(gbar) L^{-1}`` (full symmetric matrix), in NumPy.

    Examples
    --------
    >>> chol_grad_values(np.array([[2.0, 0.0], [1.0, 2.0]]), np.array([1.0, 1.0])).tolist()
    [[0.15625, -0.0625], [-0.0625, 0.125]]
    """
    if L.shape[0] == 0:
        return np.zeros((0, 0))
    X, info = scipy.linalg.lapack.dtrtri(L, lower=1)
    if info != 0:
        return np.full(L.shape, np.nan)
    out = 0.5 * (X.T * gbar) @ X
    return 0.5 * (out + out.T)


class CholLogDiagGrad(Op):
    """``(L, dg) -> dS``."""

    __props__ = ()

    def make_node(self, *inputs: Any) -> Apply:  # (L, gbar)
        return Apply(self, [pt.as_tensor_variable(x) for x in inputs],
                     [pt.matrix(dtype="float64")])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        outputs[0][0] = chol_grad_values(inputs[0], inputs[1])


class CholLogDiag(Op):
    """``S -> (L, log diag L)`` with ``S = L L'``."""

    __props__ = ()

    def make_node(self, *inputs: Any) -> Apply:  # (S,)
        return Apply(self, [pt.as_tensor_variable(x) for x in inputs],
                     [pt.matrix(dtype="float64"), pt.vector(dtype="float64")])

    def perform(self, node: Apply, inputs: Any, outputs: Any) -> None:
        L, g = chol_values(inputs[0])
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
