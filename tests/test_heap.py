"""The allocator settings of a fit: freed large temporaries are reused (no page faults)."""

from __future__ import annotations

import gc
import resource

import numpy as np
import pytest

from hierlm import heap
from hierlm.heap import AGE_MIN_OBJECTS, _glibc, gc_paused, large_temporaries_reused

ROWS = 1448  # 1448 x 1448 doubles: 16 MiB, 4,096 pages


def _faults_of_rounds(rounds: int) -> int:
    """Minor page faults while allocating, filling and freeing three such arrays per
    round (after one warm-up round)."""
    def one_round() -> None:
        arrays = [np.empty((ROWS, ROWS)) for _ in range(3)]
        for a in arrays:
            a.fill(1.0)
        del arrays

    one_round()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        one_round()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(_glibc() is None, reason="glibc's allocator only")
def test_freed_temporaries_are_reused_inside_and_released_after() -> None:
    pages = 5 * 3 * ROWS * ROWS * 8 // 4096
    default = _faults_of_rounds(5)  # glibc's own settings: partly mapped afresh
    with large_temporaries_reused(ROWS) as raised:
        assert raised
        inside = _faults_of_rounds(5)
    after = _faults_of_rounds(5)  # glibc's defaults set back: faulted in again
    assert inside < 0.01 * pages
    assert default > 10 * max(inside, 1)
    assert after > 10 * max(inside, 1)


def test_small_blocks_change_nothing() -> None:
    with large_temporaries_reused(10) as raised:
        assert not raised


def test_a_paused_block_leaves_its_objects_in_the_oldest_generation() -> None:
    # the block's survivors are aged at once: the next automatic passes (young and
    # middle) do not walk them again
    gc.collect()
    with gc_paused():
        kept = [[i] for i in range(3 * AGE_MIN_OBJECTS)]
    assert gc.isenabled()
    more = [[i] for i in range(2 * gc.get_threshold()[0])]   # an automatic young pass
    young = {id(o) for g in (0, 1) for o in gc.get_objects(generation=g)}
    assert sum(id(o) in young for o in kept) == 0
    assert len(more) > 0


def test_a_paused_block_keeps_the_collector_off_when_it_was_off() -> None:
    gc.disable()
    try:
        with gc_paused():
            kept = [[i] for i in range(3 * AGE_MIN_OBJECTS)]
        assert not gc.isenabled()
        assert gc.get_count()[0] >= len(kept)   # nothing collected meanwhile
    finally:
        gc.enable()


def test_once_set_changes_nothing_until_a_fit_has_set_the_thresholds(monkeypatch) -> None:
    # glibc adapts its thresholds itself until they are set: the post-fit tables leave
    # that alone, and reuse their temporaries only where a fit has switched it off
    monkeypatch.setattr(heap, "_SET", [False])
    with large_temporaries_reused(ROWS, once_set=True) as raised:
        assert not raised
    assert heap._SET == [False]
    monkeypatch.setattr(heap, "_SET", [True])
    with large_temporaries_reused(ROWS, once_set=True) as raised:
        assert raised == (_glibc() is not None)
