"""The blocked Cholesky factor of Omega(theta), as a PyTensor graph.

With ``Lambda = diag(Lambda_1, Lambda_R)`` (``Lambda_R`` is the identity on the ``X``
and ``y`` rows)::

    Omega(theta) = [ Lambda_1'A11 Lambda_1 + I     Lambda_1'A_1R Lambda_R          ]
                   [ Lambda_R'A_R1 Lambda_1        Lambda_R'A_RR Lambda_R + D_Z    ]

where ``D_Z`` is 1 on the random-effect rows of the rest and 0 on ``X`` and ``y``.
Block 1 is block diagonal, ``M_k = T1'A11_k T1 + I`` for each level ``k``, and is
factored level by level (``M_k = L_k L_k'``, :mod:`hierlm.objective.first_block`).
Eliminating it leaves the Schur complement::

    S = Lambda_R'(A_RR - A_R1 W A_R1')Lambda_R + D_Z,    W_k = T1 M_k^{-1} T1',

which is factored densely, ``S = L_R L_R'``.  The lower-right entries of ``L_R``
are lme4's ``L_XX``, ``l_yX`` and ``r_yy``, and
``log|L_theta|^2 = sum_k log|M_k| + 2 sum_{Z rows} log diag(L_R)``.  The sparse
product ``A_R1 W A_R1'`` and the dense factor are custom Ops with hand-derived
gradients (:mod:`hierlm.objective.schur_update`, :mod:`hierlm.objective.chol_logdiag`).

Those Ops are differentiable once.  ``blocked_cholesky(..., smooth=True)`` builds the
same factor from PyTensor's own batched products, inverse and Cholesky (with the
dense ``A_R1`` product), which can be differentiated any number of times: the
inference stage takes Hessians and Jacobians of it (:mod:`hierlm.inference.deviance`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytensor.tensor as pt
from pytensor.tensor.variable import TensorVariable

from hierlm.covariance.term_layout import TermLayout
from hierlm.objective.chol_logdiag import chol_logdiag
from hierlm.objective.first_block import first_block
from hierlm.objective.schur_update import schur_update


@dataclass(frozen=True)
class GramVars:
    """Symbolic counterparts of :class:`hierlm.objective.gram.GramBlocks`."""

    A11: TensorVariable
    nz_val: TensorVariable
    nz_level: TensorVariable
    nz_row: TensorVariable
    level_ptr: TensorVariable
    row_order: TensorVariable
    row_ptr: TensorVariable
    A_R1_dense: TensorVariable
    A_RR: TensorVariable
    lam_row: TensorVariable
    lam_col: TensorVariable
    lam_theta: TensorVariable
    q_rest: TensorVariable
    beta_offset: TensorVariable


@dataclass(frozen=True)
class Structure:
    """What the graph's shape depends on: two models with equal structures share a graph.

    Attributes
    ----------
    p1 : int
        Coefficients per level of the first term.
    dense_r1 : bool
        Use the dense ``A_R1`` product instead of the sparse update.
    rest_diagonal : bool
        ``Lambda_R`` is diagonal (all other terms are scalar), so it scales elementwise.
    """

    p1: int
    dense_r1: bool
    rest_diagonal: bool


@dataclass(frozen=True)
class FactorVars:
    """Symbolic pieces of the blocked Cholesky factor."""

    logdet_M: TensorVariable  # sum_k log|M_k|
    L1: TensorVariable  # (l1, p1, p1): Cholesky factors of M_k
    S: TensorVariable  # (m, m): the Schur complement
    L_R: TensorVariable  # (m, m): its Cholesky factor
    logd_R: TensorVariable  # (m,): log diag(L_R), the only part of L_R with a gradient


def _first_block(theta: TensorVariable, A11: TensorVariable, p1: int) -> tuple:
    """The factors of ``M_k = T1'A11_k T1 + I``, ``sum_k log|M_k|`` and ``W_k``."""
    rows, cols = TermLayout(p1).template_index()
    T = pt.zeros((p1, p1))[rows, cols].set(theta[: len(rows)])
    return first_block(T, A11)


def _first_block_smooth(theta: TensorVariable, A11: TensorVariable, p1: int) -> tuple:
    """:func:`_first_block` from PyTensor's own Ops (any order of derivatives)."""
    rows, cols = TermLayout(p1).template_index()
    if p1 == 1:  # scalar blocks: elementwise
        t = theta[0]
        M = A11 * t**2 + 1.0
        return pt.sqrt(M), pt.log(M).sum(), t**2 / M
    if p1 == 2:  # 2 x 2 blocks in closed form: elementwise graphs compile fast
        t0, t1, t2 = theta[0], theta[1], theta[2]
        a, b, c = A11[:, 0, 0], A11[:, 0, 1], A11[:, 1, 1]
        m00 = t0 * (a * t0 + b * t1) + t1 * (b * t0 + c * t1) + 1.0
        m01 = t2 * (t0 * b + t1 * c)
        m11 = t2**2 * c + 1.0
        det = m00 * m11 - m01**2
        i00, i01, i11 = m11 / det, -m01 / det, m00 / det
        u = t1 * i00 + t2 * i01
        w00, w01, w11 = t0**2 * i00, t0 * u, t1 * u + t2 * (t1 * i01 + t2 * i11)
        W = pt.stack([pt.stack([w00, w01], axis=1), pt.stack([w01, w11], axis=1)], axis=1)
        l00 = pt.sqrt(m00)
        L1 = pt.stack([pt.stack([l00, 0.0 * l00], axis=1),
                       pt.stack([m01 / l00, pt.sqrt(det) / l00], axis=1)], axis=1)
        return L1, pt.log(det).sum(), W
    T = pt.zeros((p1, p1))[rows, cols].set(theta[: len(rows)])
    M = pt.matmul(pt.matmul(T.T[None, :, :], A11), T[None, :, :])  # type: ignore[arg-type]
    M = M + pt.eye(p1)[None, :, :]
    L1 = pt.linalg.cholesky(M)
    logdet = 2.0 * pt.log(pt.diagonal(L1, axis1=1, axis2=2)).sum()
    W = pt.matmul(pt.matmul(T[None, :, :], pt.linalg.inv(M)),  # type: ignore[arg-type]
                  T.T[None, :, :])
    return L1, logdet, W


def blocked_cholesky(theta: TensorVariable, g: GramVars, s: Structure,
                     smooth: bool = False) -> FactorVars:
    """Build the graph of the blocked Cholesky factor of ``Omega(theta)``.

    Parameters
    ----------
    theta : TensorVariable
        Vector of covariance parameters in lme4's packing (first term first).
    g : GramVars
        Symbolic Gram blocks.
    s : Structure
        Structural constants of the model.
    smooth : bool
        Build from PyTensor's own Ops, differentiable to any order (needs the dense
        ``A_R1`` in ``g.A_R1_dense`` whatever ``s.dense_r1`` says); the default uses
        hierlm's fused Ops, which are faster but differentiable once.

    Returns
    -------
    FactorVars
    """
    p1 = s.p1
    L1, logdet_M, W = (_first_block_smooth if smooth else _first_block)(theta, g.A11, p1)
    m = g.A_RR.shape[0]
    if s.dense_r1 or smooth:
        A3 = g.A_R1_dense.reshape((m, -1, p1))
        B = (A3[:, :, :, None] * W[None, :, :, :]).sum(axis=2)
        U = pt.dot(B.reshape((m, -1)), g.A_R1_dense.T)
    else:
        U = schur_update(W, g.nz_val, g.nz_row, g.nz_level, g.level_ptr, g.row_order,
                         g.row_ptr)
    theta_ext = pt.concatenate([theta, pt.ones((1,))])
    dz = pt.lt(pt.arange(m), g.q_rest).astype("float64")
    if s.rest_diagonal:
        lam = pt.zeros((m,))[g.lam_row].set(theta_ext[g.lam_theta])
        S = (g.A_RR - U) * (lam[:, None] * lam[None, :]) + pt.diag(dz)
    else:
        Lam = pt.zeros((m, m))[g.lam_row, g.lam_col].set(theta_ext[g.lam_theta])
        S = pt.dot(pt.dot(Lam.T, g.A_RR - U), Lam) + pt.diag(dz)
    if smooth:
        L_R = pt.linalg.cholesky(S)
        logd_R = pt.log(pt.diagonal(L_R))
    else:
        L_R, logd_R = chol_logdiag(S)
    return FactorVars(logdet_M=logdet_M, L1=L1, S=S, L_R=L_R, logd_R=logd_R)


def profiled_objective(f: FactorVars, n: TensorVariable, p: TensorVariable,
                       q_rest: TensorVariable, reml: TensorVariable) -> TensorVariable:
    """lme4's ML deviance (``reml = 0``) or REML criterion (``reml = 1``).

    ``log|L|^2 + reml * log|L_XX|^2 + nr (1 + log(2 pi r^2 / nr))`` with
    ``nr = n - reml * p`` and ``r = r_yy``.
    """
    logd = f.logd_R
    m = logd.shape[0]
    idx = pt.arange(m)
    logdet_Z = f.logdet_M + 2.0 * pt.switch(pt.lt(idx, q_rest), logd, 0.0).sum()
    in_x = pt.and_(pt.ge(idx, q_rest), pt.lt(idx, m - 1))
    logdet_X = 2.0 * pt.switch(in_x, logd, 0.0).sum()
    r2 = pt.exp(2.0 * logd[-1])
    nr = n - reml * p
    return logdet_Z + reml * logdet_X + nr * (1.0 + pt.log(2.0 * 3.141592653589793 * r2 / nr))


def unprofiled_deviance(f: FactorVars, g: GramVars, beta: TensorVariable,
                        sigma: TensorVariable, n: TensorVariable) -> TensorVariable:
    """``-2 log p(y | beta, theta, sigma)``, the random effects integrated out.

    With ``c = [a - beta; 1]`` on the ``X`` and ``y`` rows (``a = g.beta_offset``, the
    shift the Gram blocks were centred by), the Schur complement of the columns
    ``[Z, y - X beta]`` is ``S_b = C'S C``; the last diagonal entry of its factor
    is the penalized residual ``r(beta)``, so::

        -2 log p = log|L_theta|^2 + n log(2 pi sigma^2) + r(beta)^2 / sigma^2,

    which equals ``-2 log N(y; X beta, sigma^2 (I + Z Lambda Lambda'Z'))``.  Only the
    diagonal of the factor is read, so the gradient is the cheap one of
    :mod:`hierlm.objective.chol_logdiag`.
    """
    qr = g.q_rest
    c = pt.concatenate([g.beta_offset - beta, pt.ones((1,))])
    S = f.S
    # S c and c'S c as elementwise sums: a matrix-vector product would be a BLAS call,
    # whose pointer lookup the Numba backend compiles in every process (~0.1 s)
    side = (S[:qr, qr:] * c[None, :]).sum(axis=1)
    corner = (S[qr:, qr:] * (c[:, None] * c[None, :])).sum()
    S_b = pt.concatenate([pt.concatenate([S[:qr, :qr], side[:, None]], axis=1),
                          pt.concatenate([side, corner[None]])[None, :]], axis=0)
    _, logd = chol_logdiag(S_b)
    logdet = f.logdet_M + 2.0 * logd[:-1].sum()
    r2 = pt.exp(2.0 * logd[-1])
    return logdet + n * pt.log(2.0 * 3.141592653589793 * sigma**2) + r2 / sigma**2
