"""The profiled objective of a small model in plain NumPy/SciPy: no graph, no VM.

The same function as the compiled graph (:mod:`hierlm.objective.profiled`), with the
same arguments ``(theta, reml, n, p, *gram_values)`` and results ``(criterion,
gradient, L1, L_R)``, for models with at most :data:`MAX_SIZE` columns in ``[Z X y]``.
With ``Lambda_bar = diag(Lambda, I)`` over ``[Z X y]`` and ``A`` the Gram matrix::

    Omega_bar = Lambda_bar' A Lambda_bar + diag(1 on Z, 0 on X, y) = L L'

is factored densely: ``L``'s leading ``q1 x q1`` block is block diagonal with the first
term's ``L1`` blocks and its trailing ``m x m`` block is the Schur factor ``L_R`` that the
graph returns (a Cholesky factor is unique), so the criterion is read off ``L`` as lme4
does.  The gradient is the one of :mod:`hierlm.inference.varpar_dense` at
``sigma^2 = r^2 / (n - REML p)`` (where the profiled criterion touches the deviance)::

    d f / d theta_i = tr(D_i M) - w'D_i w / sigma^2 = 2 sum(Lambda_i o (M Lambda))
                      - 2 sum(Lambda_i o (w (Lambda'w)')) / sigma^2,

``M = sigma^2 Z'QZ`` (``Q = P`` for REML, ``V^-1`` for ML) and ``w = sigma^2 Z'P y``,
both from ``A - Y'Y`` with ``Y = L_Z^-1 Lambda' A_Z.``.

Why: PyTensor's Python VM runs a graph node by node, 1.6-2.4 ms per evaluation of
sleepstudy or penicillin against 0.04-0.06 ms with Numba, whose compiling or loading
(about a second per process for a cached structure) the VM is there to avoid. These few
dense LAPACK calls take 0.06-0.2 ms (dyestuff, sleepstudy, penicillin; load 6-8, one
BLAS thread; 0.12-0.31 ms before the model's constant arrays were kept between calls),
with nothing to compile or load. Whole REML fits in one process, same conditions (the
fit's own steps included): sleepstudy 57 ms on the VM, 16 ms here, 8.6 ms on Numba;
penicillin 127 / 35 / 14 ms; dyestuff 38 / 12 / 12 ms. So :class:`NumpyFirst` runs this
until it has spent :data:`BUDGET_S` seconds in the process (about Numba's loading cost),
then the structure's Numba function, as :class:`hierlm.objective.profiled.TieredCall`
does for the VM. ``python -m benchmarks.peers`` (24 reference fits, warm-up then 5 fits
each, hierlm alone, load 5): median 38.6 ms with the VM first, 30.8 ms with this;
structures first seen 2-4x faster (sleepstudy 75-100 -> 24-34 ms, penicillin 99-112 ->
43-45 ms). Later, with the design built faster, the result's tables computed on first
read and L-BFGS-B driven without SciPy's wrappers (same numbers, bit for bit), the same
benchmark at load 10 went from 33.2-33.5 to 20.0-20.8 ms median wall time and from
12.9-13.2 to 8.4-8.6 ms CPU time (at load 8, with the Gram blocks and the residual
estimates' sparse steps made cheaper too: 25.5 -> 16.0 ms wall, 12.7 -> 8.1 ms CPU;
the old and new code run one after the other); the evaluations here are then a quarter to a third
of a fit's time for sleepstudy, penicillin and pastes (9-33 per fit; 8% for dyestuff),
with building the design, the Gram blocks and the residual-based estimates
(:mod:`hierlm.estimate.stable_pls`) the rest.
lme-python takes 1.6-4 ms per fit (1.8 ms CPU).  Setting ``Lambda`` through
precomputed flat positions (instead of index pairs built per call) is the same
arithmetic.

Later again, with the same numbers bit for bit (criterion, theta, beta, sigma on all
24 fits; only the face-check descents' evaluation counts fall, 509 -> 481 in all, see
:mod:`hierlm.estimate.optimize`): the objective's constant arguments built once per
objective, the record's tables and parameters built on first read, the Gram blocks'
and the conditional sampler's sparse matrices built once and without SciPy's triplet
conversion, and the design's text grouping columns and selected frames copied less.
``python -m benchmarks.peers --programs hierlm,lme_python --repeats 7``, old and new
code alternately three times each (2 cores, load 4.5-5.5): hierlm's median CPU time
9.95 / 10.29 / 10.01 -> 8.86 / 8.40 / 8.28 ms, wall 14.4 / 14.5 / 13.0 -> 12.8 /
11.8 / 8.3 ms; lme-python 1.8-2.2 ms CPU in the same runs.  A sampling profile of 12
of those fits then puts 30% of a fit's CPU time in the evaluations here (20% in this
function's own NumPy calls, about 40 of them on ``N x N`` arrays, ``N`` = 30-110:
call overhead more than arithmetic), 10% in the rest of the optimizer, 29% in building
the design (pandas' selection, copies and Index construction), 8% in the Gram blocks,
12% in the residual-based estimates and under 3% in the record.  Matching lme-python
(a compiled fit loop) needs that floor gone: an evaluation compiled once for every
structure and loaded without Numba's start-up (or fewer, fused array calls), and a
design built from NumPy columns with the pandas objects made only when read.

Later still, fewer array calls per evaluation (about 25): LAPACK's ``dpotrf`` through
SciPy instead of NumPy's ``cholesky`` (whose wrapper costs more than the factorization
at these sizes), ``Lambda_bar' A`` computed once and used both for ``Omega`` and for
the gradient, the two triangular solves (``Z``, then the Schur step of ``X``) done as
one solve with the leading ``(q + p)`` block of ``L`` (block forward substitution gives
the same ``W``: ``A - W'W`` is REML's ``M``), and the gradient's sums over ``Lambda``'s
entries one product with a constant ``k x q^2`` matrix.  SciPy's and NumPy's LAPACK are
different OpenBLAS builds, so the last bits move: on the 24 fits of
``python -m benchmarks.peers`` every criterion is unchanged to 1e-10 and the
evaluations fall 481 -> 472 in all (one fit 31 -> 22, one 33 -> 30).  One evaluation,
one BLAS thread, 2 busy cores: sleepstudy 94 -> 67 us, penicillin 121 -> 96 us,
dyestuff 56 -> 54 us.  Then ``Lambda_bar' A`` taken as the transpose of ``A Lambda_bar``
(Fortran order) and the solve done with the whole factor (no slice copied), and the
kept constants found by an explicit identity check: penicillin 96 -> about 45 us
(instrumented, one BLAS thread); the 24 peers fits' criteria move by at most 6e-14,
theta by 6e-13, with the same 426 evaluations.

Whole fits after these changes, the dense Gram blocks and residual-based estimates of
small models (:mod:`hierlm.objective.gram_dense`, :mod:`hierlm.estimate.stable_dense`)
and the face checks' looser stop (:mod:`hierlm.estimate.checked_descent`):
``nice python -m benchmarks.peers --programs hierlm,lme_python``, the code before and
after run alternately three times each (2 cores shared, load 3.2-3.6): hierlm's median
CPU time 7.21 / 8.20 / 7.37 -> 4.63 / 5.37 / 4.77 ms, wall 7.42 / 11.47 / 11.04 ->
4.65 / 5.79 / 5.28 ms; lme-python 1.46-1.77 ms CPU in the same runs (per case 0.21-0.23
of hierlm's CPU time before, 0.32-0.33 after).  A deterministic profile (cProfile, which
weighs Python-heavy code more) of 10 rounds of the 24 fits then puts 42% of a fit in
building the design (pandas), 21% in the evaluations here and 4% in their callers'
wrappers, 14% in the optimizer's own steps, 6% in the Gram blocks, 3% in the
residual-based estimates and 2% in the record.  In a fit (the design and Gram blocks
apart), the evaluations are about half the CPU time: median 19 per fit at 40-60 us.

Beside this per-structure move, the time spent here is also summed over every
structure (:func:`process_warm`): once a process has spent :data:`PROCESS_BUDGET_S`
here, fits load their compiled evaluation and descent loop on a background thread
(:mod:`hierlm.estimate.psi_call`, :mod:`hierlm.estimate.descent_loop`), which takes
the Python around each evaluation away as well.  That budget was 0.05 s (about 50
fits) while each structure loaded a function and a loop of its own (about 0.6 s of CPU
per structure); the loop of :mod:`hierlm.estimate.kernel_loop` serves every
unstructured structure and loads once per process (about 0.4 s of CPU, Numba's import
included), so 0.01 s (about 10-15 small fits; a first fit and its ``summary()`` spend
about 2 ms) starts it sooner.  ``python -m benchmarks.peers`` (one pass over the 24
cases, 2 cores, load about 1.8, four runs each): the loop loaded by the end of 15 and
15 of the cases' fits with 0.05 s, 21-23 with 0.01 s; hierlm's median 1.98 / 2.32 ->
1.50-1.90 ms against lme-python's 1.99 / 2.09 and 1.73-1.86 ms in the same runs.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
from scipy.linalg.lapack import dpotrf, dtrtrs

from hierlm.covariance.term_layout import TermLayout
from hierlm.objective.gram import GramBlocks

#: Largest ``q + p + 1`` (columns of ``[Z X y]``) evaluated densely here.
MAX_SIZE = 120
#: Seconds of NumPy evaluation of one structure, per process, after which
#: :class:`NumpyFirst` moves it to Numba.
BUDGET_S = 1.0
#: Seconds of NumPy evaluation summed over every structure, per process, after which
#: :func:`process_warm` holds: callers may then load their compiled functions on a
#: background thread (:mod:`hierlm.estimate.psi_call`).
PROCESS_BUDGET_S = 0.01
_LOCK = threading.Lock()
_PROCESS_SPENT = [0.0]


def process_warm() -> bool:
    """Whether this process has spent :data:`PROCESS_BUDGET_S` seconds evaluating small
    models here, summed over their structures (a loop of fits, a notebook session);
    never where the environment sets ``HIERLM_BACKGROUND_LOADS=0``.

    Examples
    --------
    >>> isinstance(process_warm(), bool)
    True
    """
    return _PROCESS_SPENT[0] > PROCESS_BUDGET_S and os.environ.get(
        "HIERLM_BACKGROUND_LOADS") != "0"


def suits(gram: GramBlocks) -> bool:
    """Whether a model is small enough for the dense NumPy evaluation.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective.gram import compute_gram
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> suits(compute_gram(d))
    True
    """
    return gram.A11.shape[0] * gram.A11.shape[1] + gram.m <= MAX_SIZE


@functools.cache
def _tril(p1: int) -> tuple[np.ndarray, np.ndarray]:
    return TermLayout(p1).template_index()


def _lambda_entries(l1: int, p1: int, lam_row: np.ndarray, lam_col: np.ndarray,
                    lam_theta: np.ndarray, qr: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row, column (over ``Z``'s columns) and theta index of each entry of ``Lambda``:
    the first term's ``l1`` blocks of its ``p1 x p1`` template, then the rest's."""
    a, b = _tril(p1)
    base = (np.arange(l1) * p1)[:, None]
    keep = lam_row < qr
    q1 = l1 * p1
    rows = np.concatenate([(base + a).ravel(), q1 + lam_row[keep]])
    cols = np.concatenate([(base + b).ravel(), q1 + lam_col[keep]])
    tidx = np.concatenate([np.tile(np.arange(len(a)), l1), lam_theta[keep]])
    return rows, cols, tidx


_LAST: list[tuple[int, tuple[np.ndarray, ...], tuple[Any, ...]]] = []


def _constants(A11: np.ndarray, nz_val: np.ndarray, nz_level: np.ndarray, nz_row: np.ndarray,
               A_RR: np.ndarray, lam_row: np.ndarray, lam_col: np.ndarray,
               lam_theta: np.ndarray, qr: int) -> tuple[Any, ...]:
    """The dense Gram matrix and the index arrays of ``Lambda`` and ``L1``, which depend on
    the model only: kept for the last model evaluated (an optimizer calls with the same
    arrays tens of times; identity, not equality, decides)."""
    inputs = (A11, nz_val, nz_level, nz_row, A_RR, lam_row, lam_col, lam_theta)
    last = _LAST[0] if _LAST else None  # one read: another thread may replace it
    # the entry holds its inputs, so identity of each (not their ids) decides
    if last is not None and last[0] == qr:
        kept = last[1]  # an explicit chain: a generator over the pairs cost 2-5 us a call
        if (kept[0] is A11 and kept[1] is nz_val and kept[2] is nz_level
                and kept[3] is nz_row and kept[4] is A_RR and kept[5] is lam_row
                and kept[6] is lam_col and kept[7] is lam_theta):
            return last[2]
    l1, p1 = A11.shape[0], A11.shape[1]
    q1, m = l1 * p1, A_RR.shape[0]
    N = q1 + m
    A = np.zeros((N, N))
    blk = np.arange(l1)[:, None, None] * p1
    i1, j1 = blk + np.arange(p1)[None, :, None], blk + np.arange(p1)[None, None, :]
    A[i1, j1] = A11
    AR1 = np.zeros((m, q1))
    AR1[np.repeat(nz_row, p1), (nz_level[:, None] * p1 + np.arange(p1)).ravel()] = nz_val.ravel()
    A[q1:, :q1] = AR1
    A[:q1, q1:] = AR1.T
    A[q1:, q1:] = A_RR
    rows, cols, tidx = _lambda_entries(l1, p1, lam_row, lam_col, lam_theta, qr)
    q = q1 + qr
    # flat positions in an N x N array: Lambda's entries, the unit tail of its diagonal
    # ([X y]), and the diagonal of the random-effect block (Omega's + I)
    flat = rows * N + cols
    tail = np.arange(q, N) * (N + 1)
    head = np.arange(q) * (N + 1)
    # Lambda with its unit tail set (copied per call, then theta's entries written);
    # Omega's added identity on Z; the criterion's log-diagonal weights (Z, then X);
    # the gradient's summation over Lambda's entries as one k x q^2 matrix (times 2)
    lam0 = np.zeros((N, N))
    lam0.reshape(-1)[tail] = 1.0
    eye_z = np.zeros((N, N))
    eye_z.reshape(-1)[head] = 1.0
    w_z = np.zeros(N)
    w_z[:q] = 2.0
    w_x = np.zeros(N)
    w_x[q:N - 1] = 2.0
    k = int(tidx.max()) + 1 if tidx.size else 0
    sum_theta = np.zeros((k, q * q))
    np.add.at(sum_theta, (tidx, rows * q + cols), 2.0)
    out = (A, rows, cols, tidx, i1, j1, flat, tail, head, lam0, eye_z, w_z, w_x, sum_theta,
           np.ascontiguousarray(A[:q, :q]), A[:q, -1].copy())
    for arr in out:
        arr.setflags(write=False)
    _LAST[:] = [(qr, inputs, out)]
    return out


def profiled_numpy(theta: np.ndarray, reml: Any, n: Any, p: Any, A11: np.ndarray,
                   nz_val: np.ndarray, nz_level: np.ndarray, nz_row: np.ndarray,
                   level_ptr: Any, row_order: Any, row_ptr: Any, A_R1_dense: Any,
                   A_RR: np.ndarray, lam_row: np.ndarray, lam_col: np.ndarray,
                   lam_theta: np.ndarray, q_rest: Any, beta_offset: Any
                   ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Criterion, gradient, ``L1`` and ``L_R``: the compiled objective's results.

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective.gram import compute_gram
    >>> from hierlm.objective.profiled import gram_values
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> g = compute_gram(d)
    >>> f, grad, L1, L_R = profiled_numpy(np.array([0.96673, 0.01516, 0.23090]), 1.0,
    ...                                   180.0, 2.0, *gram_values(g))
    >>> round(f, 3), L1.shape, L_R.shape
    (1743.628, (18, 2, 2), (3, 3))
    """
    theta = np.asarray(theta, dtype=float)
    reml_f, n_f, p_i = float(reml), float(n), int(p)
    qr = int(q_rest)
    (A, _, _, tidx, i1, j1, flat, _, _, lam0, eye_z, w_z, w_x, sum_theta, A_zz,
     a_zy) = _constants(A11, nz_val, nz_level, nz_row, A_RR, lam_row, lam_col, lam_theta, qr)
    q1 = A11.shape[0] * A11.shape[1]
    q = q1 + qr
    lam = lam0.copy()
    lam.reshape(-1)[flat] = theta[tidx]
    # Lambda_bar' A as the transpose of A Lambda_bar (A is symmetric): Fortran-ordered,
    # so LAPACK's solve below takes it without a copy; its leading q + p rows are W's
    T = (A @ lam).T
    omega = T @ lam
    omega += eye_z
    L, info = dpotrf(omega, lower=1, clean=1, overwrite_a=1)
    if info != 0 or not np.isfinite(L[-1, -1]):
        k = theta.size
        return (np.inf, np.full(k, np.nan), np.zeros((A11.shape[0], A11.shape[1],
                                                        A11.shape[1])),
                np.full((A_RR.shape[0], A_RR.shape[0]), np.nan))
    L1 = L[i1, j1]
    L_R = L[q1:, q1:].copy()
    r2 = float(L[-1, -1]) ** 2
    nr = n_f - reml_f * p_i
    logd = np.log(L.diagonal())
    f = float(logd @ (w_z + reml_f * w_x) if reml_f else logd @ w_z) + nr * (
        1.0 + math.log(2.0 * math.pi * r2 / nr))
    # gradient: with W = L_[ZX]^-1 (Lambda_bar' A)_[ZX] (one triangular solve),
    # sigma^2 [Z X y]'P[Z X y] = A - W'W (REML's M) and, over Z, ML's M = A - W_Z'W_Z
    # (the Schur step of P is the solve's X block)
    qp = q + p_i
    # forward substitution with the whole (Fortran-ordered) L: rows :qp of the solution
    # use rows :qp of L only, and no slice is copied
    W, info = dtrtrs(L, T, lower=1)
    if info != 0:  # r = 0 exactly: the leading block alone
        W = dtrtrs(L[:qp, :qp], T[:qp], lower=1)[0]
    W = W[:qp]
    Wz = W[:, :q] if reml_f else W[:q, :q]
    Mt = A_zz - Wz.T @ Wz
    w = a_zy - W[:, :q].T @ W[:, -1]
    lam_q = lam[:q, :q]
    G = Mt @ lam_q
    G -= np.multiply.outer(w, (lam_q.T @ w) * (nr / r2))
    grad = sum_theta @ G.reshape(-1)
    return f, grad, L1, L_R


def dense_lambda(theta: np.ndarray, gram: GramBlocks) -> np.ndarray:
    """``Lambda_theta`` as a dense ``q x q`` array over ``Z``'s columns (the leading block
    of the ``Lambda_bar`` that :func:`profiled_numpy` builds).

    Examples
    --------
    >>> import hierlm
    >>> from hierlm.objective.gram import compute_gram
    >>> d = hierlm.build_design("Reaction ~ Days + (Days | Subject)", hierlm.load_sleepstudy())
    >>> dense_lambda(np.array([1.0, 0.5, 2.0]), compute_gram(d))[:2, :2].tolist()
    [[1.0, 0.0], [0.5, 2.0]]
    """
    g = gram
    l1, p1, qr = g.A11.shape[0], g.A11.shape[1], int(g.q_rest)
    theta = np.asarray(theta, dtype=float)
    q1 = l1 * p1
    q = q1 + qr
    out = np.zeros((q, q))
    # the first term's template written into its l1 diagonal blocks through one strided
    # view of them (the same entries as the index arrays of _lambda_entries: 4 against
    # 16 us a call, median of 3,000, sleepstudy)
    a, b = _tril(p1)
    T = np.zeros((p1, p1))
    T[a, b] = theta[:len(a)]
    np.ndarray((l1, p1, p1), buffer=out, strides=((q + 1) * p1 * 8, q * 8, 8))[...] = T
    if qr:  # the other terms' entries (``Lambda_bar``'s unit tail left out)
        keep = g.lam_row < qr
        out[q1 + g.lam_row[keep], q1 + g.lam_col[keep]] = theta[g.lam_theta[keep]]
    return out


class NumpyFirst:
    """:func:`profiled_numpy` until it has run :data:`BUDGET_S` seconds, then ``load()``'s
    function (the structure's Numba link), loaded once.

    Attributes
    ----------
    link : str
        ``"numpy"`` or ``"numba"``: what the next call runs.
    """

    def __init__(self, load: Callable[[], Callable]) -> None:
        self._load = load
        self._fast: Callable | None = None
        self.spent = 0.0

    @property
    def link(self) -> str:
        return "numpy" if self._fast is None else "numba"

    def __call__(self, *args: Any) -> Any:
        fast = self._fast
        if fast is not None:
            return fast(*args)
        t0 = time.perf_counter()
        out = profiled_numpy(*args)
        dt = time.perf_counter() - t0
        self.spent += dt  # approximate under threads: only a trigger
        _PROCESS_SPENT[0] += dt
        if self.spent > BUDGET_S:
            with _LOCK:
                if self._fast is None:
                    self._fast = self._load()
        return out


_TIERS: dict[Hashable, NumpyFirst] = {}


def numpy_first(key: Hashable, load: Callable[[], Callable]) -> NumpyFirst:
    """The :class:`NumpyFirst` of a structure ``key``, shared in the process.

    Examples
    --------
    >>> numpy_first("doc", lambda: profiled_numpy) is numpy_first("doc", lambda: None)
    True
    """
    got = _TIERS.get(key)  # (a dict read needs no lock; a new tier is made under it)
    if got is not None:
        return got
    with _LOCK:
        return _TIERS.setdefault(key, NumpyFirst(load))
