"""Cholesky factor, triangular inverse and ``U U'`` of a dense matrix on two threads.

LAPACK's ``dpotrf``, ``dtrtri`` and ``dlauum`` (:mod:`hierlm.objective.jit.lapack`) run
on one thread inside a fit (:meth:`hierlm.Model.fit` limits OpenBLAS to one: its own
threads, which synchronize at every block, ran ``dpotrf`` of ``m = 3,708`` in 1.18 s
with two threads against 0.43 s with one on this 2-core machine while other processes
ran).  Here each is split once into a 2 x 2 block recursion whose two halves of work
are independent calls of single-threaded BLAS (:mod:`hierlm.objective.jit.dense_blocks`,
which release the GIL), run on two threads with a handful of joins per call.  In the
Fortran view ``F`` of a C-ordered array (upper triangles), with ``F = [F11 F12; 0 F22]``:

* ``S = F'F``: ``F11 = chol(S11)``; ``F12 = F11^{-T} S12`` (the columns of ``S12`` in two
  halves); ``S22 -= F12'F12`` (``syrk`` of both halves on one thread, their ``gemm``
  on the other); ``F22 = chol(S22)``.  Both factorizations recurse once more.
* ``F^{-1}``: ``F11^{-1}`` and ``F22^{-1}`` at once, then
  ``F12 <- -F11^{-1} F12 F22^{-1}`` by two ``trmm``, each split in halves.
* ``F F'``: ``F11 F11' + F12 F12'`` on one thread, ``F12 F22'`` (on a copy of ``F12``)
  and ``F22 F22'`` on the other: ``m^3 / 6`` flops each.

The flops are LAPACK's; the results agree with the single calls to rounding.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from hierlm.objective.threads import run_tasks

#: Blocks smaller than this are not split.
MIN_SPLIT = 384


def _jit() -> Any:
    from hierlm.objective.jit import dense_blocks  # Numba: loaded on first use

    return dense_blocks


def potrf(a: np.ndarray, threads: int, i0: int = 0, n: int | None = None,
          depth: int = 2) -> int:
    """``a <- L`` (lower triangle of the C-ordered ``a``, ``S = L L'``; the upper triangle
    is left as it was); LAPACK's info (nonzero: not positive definite).

    Examples
    --------
    >>> S = np.array([[4.0, 2.0], [2.0, 5.0]])
    >>> potrf(S, threads=2), np.tril(S).tolist()
    (0, [[2.0, 0.0], [1.0, 2.0]])
    """
    jit = _jit()
    n = a.shape[0] if n is None else n
    if threads < 2 or depth == 0 or n < MIN_SPLIT:
        return int(jit.potrf(a, i0, n))
    c = n // 2
    n2 = n - c
    h = n2 // 2
    j0, j1 = i0 + c, i0 + c + h
    info = potrf(a, threads, i0, c, depth - 1)
    if info:
        return info
    run_tasks([partial(jit.trsm_left_upper_t, a, i0, c, j0, h),
               partial(jit.trsm_left_upper_t, a, i0, c, j1, n2 - h)])

    def diagonal_blocks() -> None:
        jit.syrk_t(a, i0, c, j0, h, -1.0)
        jit.syrk_t(a, i0, c, j1, n2 - h, -1.0)

    run_tasks([diagonal_blocks, partial(jit.gemm_t, a, i0, c, j0, h, j1, n2 - h, -1.0)])
    info = potrf(a, threads, j0, n2, depth - 1)
    return info + c if info else 0


def trtri(a: np.ndarray, threads: int) -> int:
    """``a <- a^{-1}`` for the lower triangle of the C-ordered ``a``; LAPACK's info.

    Examples
    --------
    >>> L = np.array([[2.0, 0.0], [1.0, 4.0]])
    >>> trtri(L, threads=2), L.tolist()
    (0, [[0.5, 0.0], [-0.125, 0.25]])
    """
    jit = _jit()
    n = a.shape[0]
    if threads < 2 or n < MIN_SPLIT:
        return int(jit.trtri(a, 0, n))
    c = n // 2
    n2 = n - c
    infos = run_tasks([partial(jit.trtri, a, 0, c), partial(jit.trtri, a, c, n2)])
    if any(infos):
        return next(i for i in infos if i)
    h2, h1 = n2 // 2, c // 2
    run_tasks([partial(jit.trmm_left, a, 0, c, c, h2),
               partial(jit.trmm_left, a, 0, c, c + h2, n2 - h2)])
    # F12 rows [0, h1) and [h1, c): B starts at F[r0, c] = a[c, r0]
    run_tasks([partial(jit.trmm_right, a, 0, h1, c, n2, False, -1.0, a[c:, :], n),
               partial(jit.trmm_right, a, h1, c - h1, c, n2, False, -1.0, a[c:, h1:], n)])
    return 0


def lauum(a: np.ndarray, threads: int) -> int:
    """Lower triangle of ``a <- a'a`` for the lower-triangular C-ordered ``a``; info.

    Examples
    --------
    >>> Y = np.array([[2.0, 0.0], [1.0, 3.0]])
    >>> lauum(Y, threads=2), np.tril(Y).tolist()
    (0, [[5.0, 0.0], [3.0, 9.0]])
    """
    jit = _jit()
    n = a.shape[0]
    if threads < 2 or n < MIN_SPLIT:
        return int(jit.lauum(a, 0, n))
    c = n // 2
    n2 = n - c
    T = np.empty((n2, c))  # F12 as a Fortran c x n2 matrix

    def first() -> int:
        info = jit.lauum(a, 0, c)
        jit.syrk_n_into(a, 0, c, a[c:, :], n, n2)
        return int(info)

    def second() -> int:
        jit.copy_block(a, 0, c, c, n2, T, False)
        jit.trmm_right(a, 0, c, c, n2, True, 1.0, T, c)
        return int(jit.lauum(a, c, n2))

    infos = run_tasks([first, second])
    jit.copy_block(a, 0, c, c, n2, T, True)
    return next((i for i in infos if i), 0)
