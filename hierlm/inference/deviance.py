"""The unprofiled deviance in psi = (theta, sigma), its Hessian, and vcov(beta)'s Jacobian.

lmerTest's parameterization of the variance parameters is ``psi = (theta, sigma)``.
With the blocked factor of ``Omega(theta)`` (:mod:`hierlm.objective.cholesky`;
``L_XX`` its fixed-effect block, ``r`` its last diagonal entry)::

    ML:    d(psi) = log|L_theta|^2 + n log(2 pi sigma^2) + r^2(theta) / sigma^2
    REML:  d(psi) = log|L_theta|^2 + 2 log|L_XX| + (n - p) log(2 pi sigma^2) + r^2 / sigma^2
    C(psi) = sigma^2 (L_XX L_XX')^{-1}                       (vcov of beta-hat)

At the optimum ``A = 2 H^{-1}`` (``H`` the Hessian of ``d``) is the asymptotic
covariance of psi-hat; lmerTest takes the Moore-Penrose inverse over eigenvalues
above 1e-8.  One compiled graph per structure (first term's size and whether the
other terms are scalar) returns ``d``, its gradient, the Hessian-vector product
``H v`` (reverse over reverse), ``C`` and the gradient of ``<W, C>`` for a weight
matrix ``W`` (one reverse pass), all by PyTensor's autodiff.  ``len(psi)`` calls with
unit ``v`` give ``H``; ``p (p + 1) / 2`` calls with symmetric unit ``W`` give the
Jacobian of ``C`` (both in one loop of calls, microseconds each).  The graph is
built by :func:`hierlm.objective.cholesky.blocked_cholesky` with ``smooth=True``,
whose Ops can be differentiated twice.

That graph is the path for models with more than
:data:`hierlm.inference.varpar_dense.DENSE_MAX_Q` random effects in two or more terms
whose later terms are too large for the blockwise path
(:func:`hierlm.inference.varpar_dense.schur_applies`; one term at any size goes level
by level, :mod:`hierlm.inference.varpar_levels`:
``(1 + x1 | g)``, ``q = 4892``, n = 10,000, p = 20: the graph's first call 66 s, the
levels 0.24 s, equal to 4e-15).  Below that,
:func:`varpar_info` evaluates the same quantities in closed form with dense LAPACK
(:mod:`hierlm.inference.varpar_dense`; equal to the graph's to about 1e-13): the graph
took 136 VM calls, 10-35 s in every fresh process, for a 16-coefficient model.

A model with a structured covariance has the variance parameters ``(psi, sigma)`` of its
structures instead (:mod:`hierlm.inference.varpar_structured`: the chain rule, with the
second-order term).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytensor
import pytensor.tensor as pt
import scipy.sparse as sp

from hierlm.covariance.design import DesignCovariance
from hierlm.heap import large_temporaries_reused
from hierlm.inference.blas import one_blas_thread
from hierlm.inference.varpar_dense import DENSE_MAX_Q, dense_varpar, schur_applies
from hierlm.inference.varpar_structured import to_psi
from hierlm.objective.cholesky import GramVars, Structure, blocked_cholesky
from hierlm.objective.gram import GramBlocks
from hierlm.objective.graph_cache import compile_graph
from hierlm.objective.profiled import ProfiledObjective, choose_backend, symbolic_gram

_LOCK = threading.Lock()
#: Eigenvalues of H at most this are left out of its inverse (lmerTest's ``tol``).
HESSIAN_TOL = 1e-8


def _build(p1: int, rest_diagonal: bool) -> tuple[list[Any], list[Any], dict[str, Any]]:
    psi = pt.vector("psi")
    v = pt.vector("v")
    wt = pt.matrix("wt")
    reml = pt.scalar("reml")
    n = pt.scalar("n")
    p = pt.lscalar("p")
    g = symbolic_gram()
    theta, sigma = psi[:-1], psi[-1]
    s = Structure(p1=p1, dense_r1=True, rest_diagonal=rest_diagonal)
    f = blocked_cholesky(theta, g, s, smooth=True)
    logd = f.logd_R
    m = logd.shape[0]
    idx = pt.arange(m)
    qr = g.q_rest
    logdet_Z = f.logdet_M + 2.0 * pt.switch(pt.lt(idx, qr), logd, 0.0).sum()
    in_x = pt.and_(pt.ge(idx, qr), pt.lt(idx, m - 1))
    logdet_X = 2.0 * pt.switch(in_x, logd, 0.0).sum()
    r2 = f.L_R[-1, -1] ** 2
    s2 = sigma**2
    d = (logdet_Z + reml * logdet_X + (n - reml * p) * pt.log(2.0 * np.pi * s2) + r2 / s2)
    L_XX = f.L_R[qr:qr + p, qr:qr + p]
    Li = pt.linalg.solve_triangular(L_XX, pt.eye(p), lower=True)
    C = s2 * pt.dot(Li.T, Li)
    grad: Any = pytensor.grad(d, psi)
    Hv = pytensor.grad((grad * v).sum(), psi)
    dC = pytensor.grad((wt * C).sum(), psi)
    return [psi, v, wt, reml, n, p, *g.__dict__.values()], [d, grad, Hv, C, dC], {}


@functools.cache
def _compiled(p1: int, rest_diagonal: bool, backend: str) -> Callable:
    with _LOCK:
        graph = compile_graph("inference", (p1, rest_diagonal),
                              lambda: _build(p1, rest_diagonal), backend)
    return graph.vm_fn if backend == "vm" else graph.python_fn


def _dense_r1(gram: GramBlocks) -> np.ndarray:
    """``A_R1`` as a dense ``(m, l1 p1)`` array (the smooth graph's Schur update)."""
    if gram.dense_r1:
        return gram.A_R1_dense
    p1 = gram.A11.shape[1]
    rows = np.repeat(gram.nz_row, p1)
    cols = (gram.nz_level[:, None] * p1 + np.arange(p1)[None, :]).ravel()
    return np.asarray(sp.coo_matrix((gram.nz_val.ravel(), (rows, cols)),
                                    shape=(gram.m, gram.A11.shape[0] * p1)).toarray())


def _inputs(gram: GramBlocks) -> list[np.ndarray]:
    vals = []
    dense = _dense_r1(gram)
    for name in GramVars.__dataclass_fields__:
        if name == "q_rest":
            vals.append(np.asarray(gram.q_rest, dtype=np.int64))
        elif name == "A_R1_dense":
            vals.append(np.ascontiguousarray(dense))
        else:
            vals.append(getattr(gram, name))
    return vals


@dataclass(frozen=True, eq=False)
class VarparInfo:
    """The deviance's curvature and vcov(beta)'s sensitivity at one psi.

    Attributes
    ----------
    psi : ndarray
        ``(theta, sigma)``.
    deviance : float
        ``d(psi)`` (REML or ML as fitted).
    gradient : ndarray
        ``dd/dpsi``.
    hessian : ndarray, shape (k, k)
        ``H``.
    vcov_varpar : ndarray, shape (k, k)
        ``A = 2 H^+`` (pseudo-inverse over eigenvalues above :data:`HESSIAN_TOL`).
    vcov_beta : ndarray, shape (p, p)
        ``C(psi)``.
    jacobian : ndarray, shape (k, p, p)
        ``dC/dpsi_j``.
    reml : bool
    """

    psi: np.ndarray
    deviance: float
    gradient: np.ndarray
    hessian: np.ndarray
    vcov_varpar: np.ndarray
    vcov_beta: np.ndarray
    jacobian: np.ndarray
    reml: bool


def varpar_info(objective: ProfiledObjective, theta: np.ndarray, sigma: float,
                reml: bool) -> VarparInfo:
    """Deviance, gradient, Hessian and vcov(beta) with its Jacobian at ``(theta, sigma)``.

    Parameters
    ----------
    objective : ProfiledObjective
        The model's compiled objective (its design and Gram blocks are used).
    theta : ndarray
        Covariance parameters.
    sigma : float
        Residual standard deviation.
    reml : bool
        REML deviance (True) or ML deviance (False).

    Returns
    -------
    VarparInfo

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> info = varpar_info(res.model.objective, res.theta, res.sigma, reml=True)
    >>> round(info.deviance, 4), info.hessian.shape, info.jacobian.shape
    (1743.6283, (4, 4), (4, 2, 2))
    """
    design = objective.design  # one term: level by level whatever q (varpar_levels)
    if (design.q <= DENSE_MAX_Q or (len(design.terms) == 1 and objective.gram.q_rest == 0)
            or schur_applies(design, objective.gram)):
        # temporaries of q x q (two terms) or q_1 x q_r (blockwise): kept in the heap
        # where a fit has already set the allocator's thresholds (hierlm.heap)
        with one_blas_thread(), large_temporaries_reused(design.q, once_set=True):
            dev, grad, H, C, J = dense_varpar(objective.design, objective.gram, theta, sigma,
                                              reml)
        psi = np.append(np.asarray(theta, dtype=float), float(sigma))
        info = _info(psi, dev, grad, H, C, J, reml)
    else:
        info = graph_varpar_info(objective, theta, sigma, reml)
    if DesignCovariance.of(objective.design).structured:
        # the variance parameters are the structures' (psi, sigma)
        psi_s, grad, H, J = to_psi(objective.design, np.asarray(theta, dtype=float),
                                   info.gradient, info.hessian, info.jacobian)
        info = _info(np.append(psi_s, float(sigma)), info.deviance, grad, H, info.vcov_beta,
                     J, reml)
    return info


def graph_varpar_info(objective: ProfiledObjective, theta: np.ndarray, sigma: float,
                      reml: bool) -> VarparInfo:
    """:func:`varpar_info` by the second-order graph, whatever the model's size.

    Examples
    --------
    >>> import hierlm
    >>> res = hierlm.fit("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> info = graph_varpar_info(res.model.objective, res.theta, res.sigma, reml=True)
    >>> round(info.deviance, 4)
    1743.6283
    """
    gram = objective.gram
    # A handful of calls: on PyTensor's Python VM for small designs (compiling machine
    # code, minutes for a new structure, would not pay for itself); with Numba where one
    # evaluation is large, as the profiled objective is linked.
    fn = _compiled(objective.structure.p1, objective.structure.rest_diagonal,
                   choose_backend(gram))
    psi = np.ascontiguousarray(np.append(np.asarray(theta, dtype=float), float(sigma)))
    k = psi.size
    rest = [np.asarray(float(reml)), np.asarray(float(gram.n)), np.asarray(gram.p, dtype=np.int64),
            *_inputs(gram)]
    pairs = [(a, b) for a in range(gram.p) for b in range(a, gram.p)]
    H = np.zeros((k, k))
    J = np.zeros((k, gram.p, gram.p))
    dev, grad, C = 0.0, np.zeros(k), np.zeros((gram.p, gram.p))
    # call j: column j of H (v = e_j) and dC_ab/dpsi for the j-th pair (a, b)
    for j in range(max(k, len(pairs))):
        v = np.zeros(k)
        wt = np.zeros((gram.p, gram.p))
        if j < k:
            v[j] = 1.0
        if j < len(pairs):
            a, b = pairs[j]
            wt[a, b] = 1.0
            wt[b, a] = 1.0
        dev, grad, Hv, C, dC = fn(psi, v, wt, *rest)
        if j < k:
            H[:, j] = Hv
        if j < len(pairs):
            a, b = pairs[j]
            J[:, a, b] = J[:, b, a] = dC if a == b else 0.5 * dC
    return _info(psi, float(dev), np.asarray(grad), H, np.asarray(C), J, reml)


def _info(psi: np.ndarray, dev: float, grad: np.ndarray, H: np.ndarray, C: np.ndarray,
          J: np.ndarray, reml: bool) -> VarparInfo:
    H = 0.5 * (H + H.T)
    w, U = np.linalg.eigh(H)
    pos = w > HESSIAN_TOL
    A = 2.0 * (U[:, pos] / w[pos]) @ U[:, pos].T
    return VarparInfo(psi=psi, deviance=float(dev), gradient=grad, hessian=H,
                      vcov_varpar=A, vcov_beta=C, jacobian=J, reml=reml)
