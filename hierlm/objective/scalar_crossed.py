"""The profiled objective of a large model whose random-effect terms are all scalar, fused.

For the structure of crossed random intercepts (``p1 = 1``, a diagonal ``Lambda_R``,
the sparse update of :mod:`hierlm.objective.schur_update`) this computes what the
compiled graph of :mod:`hierlm.objective.profiled` computes, with the same arguments
``(theta, reml, n, p, *gram_values)`` and results ``(criterion, gradient, L1, L_R)``,
in a few passes instead of one array per graph node.  With ``t = theta_1``,
``M_k = a_k t^2 + 1`` (``a_k = A11_k``), ``w_k = t^2 / M_k``, ``lam`` the diagonal of
``Lambda_R`` and ``X = A_RR - U``::

    U = A_R1 diag(w) A_R1',     S = X o (lam lam') + D_Z = L L',
    f = sum_k log M_k + sum_i gbar_i log L_ii + const,

``gbar_i = 2`` on the random-effect rows of the rest, ``2 reml`` on ``X``'s and
``2 (n - reml p)`` on ``y``'s (the last row, ``log r^2``), as in
:func:`hierlm.objective.cholesky.profiled_objective`.  The gradient is reverse mode by
hand.  ``Sbar = df/dS = 1/2 L^{-T} diag(gbar) L^{-1}`` (one ``dtrtri``, one
``dlauum``; :mod:`hierlm.objective.chol_logdiag`), and then::

    df/dtheta_j = 2 sum_{l in term j} sum_i Sbar_li X_li lam_i            (j > 1)
    df/dt       = sum_k 2 a_k t / M_k - sum_ij Sbar_ij lam_i lam_j dU_ij,

with ``dU = dU/dt = A_R1 diag(2 t / M_k^2) A_R1'``.  The graph gets the last sum from
the reverse pass of the pair loop (``dW_k = a_k' Ubar a_k``, a second walk over every
level pair); here ``dU`` is accumulated in the forward pair loop itself, next to ``U``
(both loops read the same pair indices and values), so the reverse pass is one sweep
over the lower triangles of ``Sbar``, ``X`` and ``dU`` that also gives the ``h``
sums.  Every ``m x m`` pass reads and writes lower triangles only, and the pair loop
builds ``S`` row by row while the row is in cache.  The two row passes split the rows
into ranges of equal work and run them on ``numba.config.NUMBA_NUM_THREADS`` threads
(the kernels release the GIL; rows of ``U`` are independent).

Dense work per evaluation is ``m^3`` flops (``potrf``, ``trtri``, ``lauum``, split over
two threads by :mod:`hierlm.objective.dense_parallel`), the pair loop
``sum_k nnz_k^2 / 2`` pairs, and three to four sweeps of ``m^2 / 2`` entries.

Measured (2-core machine shared with other work; CPU time of one evaluation with one
thread, ``NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1``): InstEval (``m = 1,145``, 4.1
million pairs) 85 -> 68 ms against the graph (load 6); the simulated 1M-row MovieLens
design (``m = 3,708``, 452 million pairs) 2.15 -> 1.63 s: pair loop 0.47 s (U alone
took 0.62 s, its reverse pass another 0.59 s), ``potrf`` 0.38 s, ``trtri`` 0.38 s,
``lauum`` 0.32 s, copies and sweeps 0.08 s.  Whole fits of that design (6 evaluations,
same path and optimum): load 2.8, 14.4 -> 11.3 s; load 4.5, 23.7 s with one thread
and 15.5 s with two.  With the Gram blocks and the pair loop's unit values faster too,
at load 3.3 (one core held by another process): 15.1 -> 11.2 s (CPU 14.6 -> 11.1 s);
InstEval REML fits at load 2.9, CPU 0.89 -> 0.80 s (12 evaluations either way).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np

from hierlm.objective import dense_parallel
from hierlm.objective.cholesky import Structure
from hierlm.objective.threads import run_tasks

#: Work (pairs plus entries) of one row pass above which it runs on several threads.
THREADED_WORK = 1e6


def suits(s: Structure) -> bool:
    """Whether a structure's objective can be evaluated here: a scalar first term, the
    sparse update and a diagonal ``Lambda_R``.

    Examples
    --------
    >>> suits(Structure(p1=1, dense_r1=False, rest_diagonal=True))
    True
    >>> suits(Structure(p1=2, dense_r1=False, rest_diagonal=True))
    False
    """
    return s.p1 == 1 and not s.dense_r1 and s.rest_diagonal


def _split(cum: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Contiguous row ranges of about equal work (``cum``: cumulative work by row)."""
    m = len(cum) - 1
    cuts = np.searchsorted(cum, cum[-1] * np.arange(1, parts) / parts)
    edges = [0, *sorted({int(min(max(c, 0), m)) for c in cuts}), m]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _ranges(work: np.ndarray, threads: int) -> list[tuple[int, int]]:
    if threads <= 1 or work[-1] < THREADED_WORK:
        return [(0, len(work) - 1)]
    return _split(work, threads)


def _half_inverse(L: np.ndarray, gbar: np.ndarray, threads: int) -> np.ndarray:
    """Lower triangle of ``1/2 L^{-T} diag(gbar) L^{-1}`` (``gbar >= 0``): the inverse of
    ``L``, its rows scaled by ``sqrt(gbar / 2)``, then ``Y'Y``."""
    from hierlm.objective.jit import scalar_crossed as jit

    Y = jit.lower_copy(L)
    dense_parallel.trtri(Y, threads)  # L's diagonal is positive: info is 0
    jit.scale_rows(Y, np.sqrt(0.5 * gbar))
    dense_parallel.lauum(Y, threads)
    return Y


def evaluate(theta: np.ndarray, reml: Any, n: Any, p: Any, A11: np.ndarray,
             nz_val: np.ndarray, nz_level: np.ndarray, nz_row: np.ndarray,
             level_ptr: np.ndarray, row_order: np.ndarray, row_ptr: np.ndarray,
             A_R1_dense: np.ndarray, A_RR: np.ndarray, lam_row: np.ndarray,
             lam_col: np.ndarray, lam_theta: np.ndarray, q_rest: Any,
             beta_offset: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """Criterion, gradient, ``L1`` and ``L_R`` at ``theta`` (the compiled graph's results).

    The arguments are those of the graph: ``theta``, ``reml``, ``n``, ``p`` and the Gram
    blocks in the order of :class:`hierlm.objective.cholesky.GramVars`.  Where ``S`` is
    not positive definite the criterion, gradient and ``L_R`` are NaN, as the graph's.

    Examples
    --------
    >>> import numpy as np, pandas as pd, hierlm
    >>> from hierlm.objective.gram import compute_gram
    >>> from hierlm.objective.profiled import compiled_for, gram_values, structure_of
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"y": rng.normal(size=400), "g": rng.integers(0, 40, 400),
    ...                    "h": rng.integers(0, 9, 400)})
    >>> d = hierlm.build_design("y ~ 1 + (1 | g) + (1 | h)", df)
    >>> g = compute_gram(d)
    >>> args = [np.array([0.5, 0.8]), np.asarray(1.0), np.asarray(400.0), np.asarray(1.0),
    ...         *gram_values(g)]
    >>> f, grad, _, _ = evaluate(*args)
    >>> f0, grad0, _, _ = compiled_for(structure_of(d, g), "numba")(*args)
    >>> bool(np.isclose(f, f0, rtol=1e-13)), bool(np.allclose(grad, grad0, rtol=1e-10))
    (True, True)
    """
    from hierlm.objective.jit import scalar_crossed as jit  # Numba: loaded on first use

    theta = np.asarray(theta, dtype=np.float64)
    reml_f, n_f, p_f, q = float(reml), float(n), float(p), int(q_rest)
    K = theta.shape[0]
    m = A_RR.shape[0]
    a11 = np.ascontiguousarray(A11[:, 0, 0])
    v = np.ascontiguousarray(nz_val[:, 0])
    w, dw, d, logdet_M, dlogdet_M = jit.level_weights(float(theta[0]), a11)
    theta_ext = np.concatenate([theta, [1.0]])
    lam = np.zeros(m)
    lam[lam_row] = theta_ext[lam_theta]
    import numba  # loaded with the kernels above: `import hierlm` does not load Numba

    threads = max(1, int(getattr(numba.config, "NUMBA_NUM_THREADS", 1)))

    X = np.empty((m, m))
    S = np.empty((m, m))
    dU = np.empty((m, m))
    work = jit.row_work(nz_level, level_ptr, row_order, row_ptr)
    rows32 = nz_row.astype(np.int32) if m < 2**31 else nz_row
    unit = jit.unit_levels(v, rows32, level_ptr, q)
    run_tasks([partial(jit.forward_rows, a, b, w, dw, v, unit, rows32, nz_level, level_ptr,
                       row_order, row_ptr, A_RR, lam, q, X, S, dU)
               for a, b in _ranges(work, threads)])
    logd = jit.finish_factor(S, dense_parallel.potrf(S, threads))  # S is now L_R
    L1 = d.reshape(-1, 1, 1)
    idx = np.arange(m)
    logdet_Z = logdet_M + 2.0 * logd[:q].sum()
    logdet_X = 2.0 * logd[q:m - 1].sum()
    nr = n_f - reml_f * p_f
    r2 = math.exp(2.0 * logd[-1]) if np.isfinite(logd[-1]) else math.nan
    obj = logdet_Z + reml_f * logdet_X + nr * (1.0 + math.log(2.0 * math.pi * r2 / nr)
                                               if r2 > 0 else math.nan)
    if not np.isfinite(obj):
        return math.nan, np.full(K, np.nan), L1, S

    gbar = np.where(idx < q, 2.0, 2.0 * reml_f)
    gbar[-1] = 2.0 * nr
    if np.all(gbar >= 0.0):
        Sbar = _half_inverse(S, gbar, threads)
    else:  # not a criterion hierlm optimizes (reml outside [0, 1]), kept exact anyway
        Sbar = (_half_inverse(S, np.maximum(gbar, 0.0), threads)
                - _half_inverse(S, np.maximum(-gbar, 0.0), threads))
    rows = np.arange(1, m + 1, dtype=np.float64)
    ranges = _ranges(np.concatenate([[0.0], np.cumsum(rows)]), threads)
    hs = [np.zeros(m) for _ in ranges]
    accs = run_tasks([partial(jit.backward_rows, a, b, Sbar, X, dU, lam, h)
                 for (a, b), h in zip(ranges, hs, strict=True)])
    h = np.sum(hs, axis=0)
    grad = np.zeros(K)
    grad[0] = dlogdet_M - sum(accs)
    free = lam_theta < K
    np.add.at(grad, lam_theta[free], 2.0 * h[lam_row[free]])
    return obj, grad, L1, S
