"""cnn_core._threads: chunks of a batch on threads with BLAS held to one thread meanwhile."""

from __future__ import annotations

import os
import threading
import time

import pytest
from threadpoolctl import (
    OpenBLASController,
    ThreadpoolController,
    threadpool_limits,
)

from cnn_core import _threads


def blas_threads() -> list[int]:
    """Threads of each BLAS library cnn_core holds to one thread during a chunked job: those loaded
    when the process's first chunked job ran (numpy's; scipy's too if numba had loaded it)."""
    return [lib.num_threads for lib in _threads._blas().lib_controllers]


def release_blas_control() -> None:
    """Let any thread set OpenBLAS's threads again, as in a fresh process (threadpoolctl 3.8 lets
    only the thread that last set them do so until it lets go)."""
    release = getattr(OpenBLASController, "clear_controlling_thread", None)
    if release is not None:
        release(force=True)


@pytest.fixture
def two_blas_threads(monkeypatch):
    """BLAS set to two threads and two cores assumed (whatever this machine has), restored
    afterwards."""
    if not blas_threads():
        pytest.skip("no BLAS library threadpoolctl can control")
    monkeypatch.setattr(_threads, "_CORES", 2)
    limits = threadpool_limits(2, user_api="blas")
    release_blas_control()
    yield
    limits.restore_original_limits()
    release_blas_control()


def two_at_once():
    """A chunk job that returns (thread, BLAS threads inside) once two chunks run side by side."""
    meet = threading.Barrier(2, timeout=10)

    def job(start, stop):
        meet.wait()
        return threading.get_ident(), blas_threads()

    return job


def test_chunks_cover_the_range_in_order():
    assert _threads.map_chunks(lambda a, b: (a, b), 7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert _threads.map_chunks(lambda a, b: (a, b), 3, 5) == [(0, 3)]
    assert _threads.map_chunks(lambda a, b: (a, b), 0, 4) == []


def test_chunks_run_side_by_side_on_single_threaded_blas(two_blas_threads):
    ran = _threads.map_chunks(two_at_once(), 4, 2)
    assert len({ident for ident, _ in ran}) == 2
    assert all(inside == [1] * len(inside) for _, inside in ran)
    assert blas_threads() == [2] * len(blas_threads())


def test_one_blas_thread_runs_the_chunks_on_the_calling_thread():
    with threadpool_limits(1, user_api="blas"):
        ran = _threads.map_chunks(lambda a, b: threading.get_ident(), 6, 1)
    assert ran == [threading.get_ident()] * 6


def test_a_failing_chunk_raises_stops_the_rest_and_gives_blas_its_threads_back(two_blas_threads):
    started, second, failing = [], threading.Event(), threading.Event()

    def job(start, stop):
        started.append(start)
        if start == 0:  # the calling thread's first chunk fails while the helper runs chunk 1
            second.wait(10)
            failing.set()
            raise ValueError("chunk 0 failed")
        second.set()
        failing.wait(10)
        time.sleep(0.5)  # chunk 0 has raised by now: nothing after this chunk may start
        return start

    with pytest.raises(ValueError, match="chunk 0 failed"):
        _threads.map_chunks(job, 6, 1)
    assert sorted(started) == [0, 1]
    assert blas_threads() == [2] * len(blas_threads())


def test_a_second_caller_runs_inline_while_a_chunked_job_holds_the_cores(two_blas_threads):
    started, release = threading.Barrier(3, timeout=10), threading.Event()

    def held(start, stop):
        started.wait()
        release.wait(10)

    first = threading.Thread(target=_threads.map_chunks, args=(held, 2, 1))
    first.start()
    started.wait()  # both of the first caller's chunks are running on the pool
    try:
        ran = _threads.map_chunks(lambda a, b: (threading.get_ident(), blas_threads()), 3, 1)
    finally:
        release.set()
        first.join(10)
    count = len(blas_threads())
    assert ran == [(threading.get_ident(), [1] * count)] * 3
    assert blas_threads() == [2] * count


@pytest.mark.skipif(
    not hasattr(OpenBLASController, "clear_controlling_thread"),
    reason="threadpoolctl before 3.8 lets any thread set OpenBLAS's threads",
)
def test_blas_limits_held_by_another_thread_mean_the_chunks_run_inline(two_blas_threads):
    if OpenBLASController not in {type(lib) for lib in ThreadpoolController().lib_controllers}:
        pytest.skip("numpy's BLAS is not OpenBLAS")
    holding, release = threading.Event(), threading.Event()

    def other_thread():
        with threadpool_limits(2, user_api="blas"):  # this thread now controls OpenBLAS
            holding.set()
            release.wait(10)

    other = threading.Thread(target=other_thread)
    other.start()
    holding.wait(10)
    try:
        ran = _threads.map_chunks(lambda a, b: threading.get_ident(), 4, 1)
    finally:
        release.set()
        other.join(10)
    assert ran == [threading.get_ident()] * 4


def test_a_held_block_keeps_blas_on_one_thread_and_the_chunks_on_the_threads_it_had(
    two_blas_threads,
):
    with _threads.blas_held():
        outside = blas_threads()  # between chunked jobs, as a linear layer's product sees it
        ran = _threads.map_chunks(two_at_once(), 4, 2)
        with _threads.blas_held():  # nested: no change
            nested = blas_threads()
        after_nested = blas_threads()
        ran_after_nested = _threads.map_chunks(two_at_once(), 4, 2)
    assert outside == nested == after_nested == [1] * len(outside)
    for chunks in (ran, ran_after_nested):
        assert len({ident for ident, _ in chunks}) == 2
        assert all(inside == [1] * len(inside) for _, inside in chunks)
    assert blas_threads() == [2] * len(blas_threads())
    assert _threads._holder is None


@pytest.mark.parametrize("first_ends_first", [True, False], ids=["first-ends-first", "second"])
def test_a_second_threads_held_block_changes_nothing_while_one_holds(
    two_blas_threads, first_ends_first
):
    """Two training runs on two threads: the second neither takes the first's limit for BLAS's
    own count nor leaves BLAS on one thread, whichever of the two ends first."""
    holding, may_end, ended = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first():
        with _threads.blas_held():
            holding.set()
            may_end.wait(10)
        ended.set()

    def second():
        holding.wait(10)
        with _threads.blas_held():
            seen["inside"] = blas_threads()
            seen["chunks"] = _threads.map_chunks(lambda a, b: threading.get_ident(), 4, 1)
            if first_ends_first:
                may_end.set()
                ended.wait(10)
        may_end.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert ended.is_set() and seen["inside"] == [1] * len(seen["inside"])
    assert len(set(seen["chunks"])) == 1  # inline: the first block has the cores
    assert blas_threads() == [2] * len(blas_threads())
    assert _threads._holder is None
    release_blas_control()
    ran = _threads.map_chunks(two_at_once(), 4, 2)  # chunked jobs run side by side again
    assert len({ident for ident, _ in ran}) == 2


def test_a_held_block_where_blas_has_one_thread_changes_nothing():
    with threadpool_limits(1, user_api="blas"), _threads.blas_held():
        assert _threads._holder is None
        ran = _threads.map_chunks(lambda a, b: threading.get_ident(), 6, 1)
    assert ran == [threading.get_ident()] * 6


def test_a_forked_child_gets_its_own_threads(two_blas_threads):
    _threads.map_chunks(lambda a, b: a, 4, 1)  # the parent's pool exists before the fork
    pid = os.fork()
    if pid == 0:
        try:
            meet = threading.Barrier(2, timeout=10)
            _threads.map_chunks(lambda a, b: meet.wait(), 2, 1)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_core_cache_is_read_from_the_cpu_and_held_to_a_sane_range(monkeypatch):
    size = _threads.core_cache_bytes()
    assert _threads._CACHE_RANGE[0] <= size <= _threads._CACHE_RANGE[1]
    reported = _threads._sysfs_l2() or _threads._sysconf_l2() or _threads._sysctl_l2()
    if reported:
        assert size == min(max(reported, _threads._CACHE_RANGE[0]), _threads._CACHE_RANGE[1])
    assert _threads._cpu_list_count("0-3,8-11") == 8
    assert _threads._cpu_list_count("5\n") == 1


def test_scratch_is_reused_per_thread_and_per_name():
    import numpy as np

    a = _threads.scratch("test", (4, 5), np.float32)
    b = _threads.scratch("test", (2, 3), np.float64)
    assert a.shape == (4, 5) and a.dtype == np.float32 and a.flags.c_contiguous
    assert b.shape == (2, 3) and b.dtype == np.float64 and np.shares_memory(a, b)
    assert not np.shares_memory(a, _threads.scratch("other", (4, 5), np.float32))
    elsewhere = []
    thread = threading.Thread(
        target=lambda: elsewhere.append(_threads.scratch("test", (4, 5), np.float32))
    )
    thread.start()
    thread.join()
    assert not np.shares_memory(a, elsewhere[0])
    huge = 8 * _threads.core_cache_bytes()  # not kept: the next call gets fresh memory
    assert not np.shares_memory(
        _threads.scratch("big", (huge,), np.uint8), _threads.scratch("big", (huge,), np.uint8)
    )
