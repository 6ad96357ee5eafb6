"""Blocks on threads and forked workers: order, fallbacks (no fork, a worker that dies)."""

from __future__ import annotations

import os
import threading

import pytest

from hierlm.inference import parallel
from hierlm.inference.parallel import available_cores, map_blocks

needs_fork = pytest.mark.skipif(not parallel.fork_available(), reason="no fork here")


@needs_fork
def test_results_in_order_from_workers():
    parent = os.getpid()
    got = []
    used = map_blocks(lambda x: (x * x, os.getpid()), range(12), 2, got.append,
                      processes=True)
    assert used == 2
    assert [v for v, _ in got] == [x * x for x in range(12)]
    assert all(pid != parent for _, pid in got)  # computed in the workers


def test_serial_without_fork(monkeypatch):
    monkeypatch.setattr(parallel, "fork_available", lambda: False)
    parent = os.getpid()
    got = []
    assert map_blocks(lambda x: (x + 1, os.getpid()), range(5), 4, got.append,
                      processes=True) == 1
    assert got == [(x + 1, parent) for x in range(5)]


@needs_fork
def test_a_dead_worker_leaves_the_rest_to_this_process():
    parent = os.getpid()

    def task(x):
        if x == 3 and os.getpid() != parent:
            os._exit(1)  # the worker dies mid-task
        return x * 10

    got = []
    assert map_blocks(task, range(8), 2, got.append, processes=True) == 1
    assert got == [x * 10 for x in range(8)]


def test_results_in_order_from_threads():
    main = threading.get_ident()
    got = []
    assert map_blocks(lambda x: (x - 1, threading.get_ident()), range(9), 3, got.append) == 3
    assert [v for v, _ in got] == [x - 1 for x in range(9)]
    assert all(t != main for _, t in got)


def test_inputs_read_lazily_and_empty():
    got = []
    assert map_blocks(lambda x: x, iter([]), 2, got.append, processes=True) >= 1
    assert got == []
    assert available_cores() >= 1
    assert available_cores() <= (os.cpu_count() or 1)
