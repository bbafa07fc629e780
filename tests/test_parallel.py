"""The ordered map over chunks in forked workers, and the shared array its workers write into."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest

from mmgpt.errors import DataError
from mmgpt.parallel import map_chunks, shared_array

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers fork only on Linux")


def _squares_and_pid(chunk: list[int]) -> tuple[list[int], int]:
    return [x * x for x in chunk], os.getpid()


@linux_only
def test_results_come_back_in_order_from_other_processes():
    items = list(range(103))
    parallel = map_chunks(_squares_and_pid, items, workers=2, chunk_size=10)
    serial = map_chunks(_squares_and_pid, items, workers=1, chunk_size=10)
    assert [r for r, _ in parallel] == [r for r, _ in serial]
    assert [x for r, _ in parallel for x in r] == [x * x for x in items]
    assert {pid for _, pid in serial} == {os.getpid()}
    assert os.getpid() not in {pid for _, pid in parallel}


def test_the_default_chunks_give_each_worker_about_four():
    chunks = map_chunks(len, range(40), workers=2)
    assert chunks == [5] * 8
    assert map_chunks(len, range(5000), workers=2) == [256] * 19 + [5000 - 19 * 256]
    assert map_chunks(len, [], workers=2) == []


@linux_only
def test_a_closure_over_what_does_not_pickle_runs_in_the_workers():
    lock = threading.Lock()  # a lock cannot be pickled; forked workers inherit it instead

    def under_lock(chunk: list[int]) -> int:
        with lock:
            return sum(chunk)

    assert sum(map_chunks(under_lock, range(100), workers=2)) == sum(range(100))


@linux_only
def test_workers_write_into_a_shared_array_this_process_reads():
    rows = shared_array((64, 3), np.float32)
    assert rows.shape == (64, 3) and not rows.any()

    def fill(chunk: list[int]) -> int:
        for row in chunk:
            rows[row] = row
        return os.getpid()

    pids = map_chunks(fill, range(64), workers=2)
    assert os.getpid() not in pids
    assert np.array_equal(rows[:, 0], np.arange(64, dtype=np.float32))


def _reject_item_13(chunk: list[int]) -> int:
    if 13 in chunk:
        raise DataError("record 13: no image")
    return len(chunk)


@pytest.mark.parametrize("workers", [1, 2])
def test_an_error_in_a_worker_is_raised_with_its_message(workers):
    with pytest.raises(DataError, match="record 13: no image"):
        map_chunks(_reject_item_13, range(40), workers=workers, chunk_size=4)


def _die_on_item_5(chunk: list[int]) -> int:
    if 5 in chunk:
        os._exit(3)  # as the OOM killer would end it: no exception, no clean-up
    return len(chunk)


@linux_only
def test_a_worker_that_dies_is_an_error_not_a_hang():
    with pytest.raises(BrokenProcessPool):
        map_chunks(_die_on_item_5, range(40), workers=2, chunk_size=5)
