"""One BLAS thread inside ``one_blas_thread()``, nested or not, and the count restored."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from hierlm.inference.blas import one_blas_thread


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_limit_nests_and_restores_the_callers_setting() -> None:
    np.ones((2, 2)) @ np.ones((2, 2))  # BLAS loaded
    with threadpool_limits(limits=2, user_api="blas"):
        before = _blas_threads()
        assert before and all(n == 2 for n in before)
        with one_blas_thread():
            assert all(n == 1 for n in _blas_threads())
            with one_blas_thread():
                assert all(n == 1 for n in _blas_threads())
            assert all(n == 1 for n in _blas_threads())  # the inner exit keeps the limit
        assert _blas_threads() == before
