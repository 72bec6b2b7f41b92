"""Run a batch in chunks on threads, each calling single-threaded BLAS; the CPU facts that size the
chunks, and each thread's reusable scratch memory.

The convolutions split a batch into chunks that fit a core's cache and run the chunks on as many
threads as BLAS would use by itself; meanwhile BLAS is held to one thread (threadpoolctl), so
that the chunk threads and BLAS's own workers do not fight over the cores. A job runs on the
calling thread instead, with BLAS left as it is, when it is a single chunk, when a BLAS library
uses one thread (OPENBLAS_NUM_THREADS=1, threadpoolctl's limits, or another thread's chunked job
under way), or when BLAS's thread count cannot be set (a library threadpoolctl does not know, or
another thread holding OpenBLAS's limits). A training run holds BLAS to one thread throughout
(`blas_held`), its chunked jobs keeping the threads BLAS had.

With OpenBLAS's usual pthreads build the thread count is process-wide: numpy called from another
thread during a chunked job runs single-threaded until the job returns.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

T = TypeVar("T")

_controller = None  # threadpoolctl's ThreadpoolController, made on first use (about 5 ms)
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
_helpers: ThreadPoolExecutor | None = None
_setup = threading.Lock()
_parallel = threading.Lock()  # one chunked job at a time sets BLAS's limits and restores them
_holder: int | None = None  # the thread whose `blas_held` block holds BLAS to one thread


def _blas():
    """threadpoolctl's controller of the BLAS libraries loaded when it was first asked for: numpy's,
    and scipy's if numba had loaded it by then (numba's linear algebra; the kit's kernels use none)."""
    global _controller
    with _setup:
        if _controller is None:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController().select(user_api="blas")
        return _controller


def _blas_threads(blas) -> int:
    """The fewest threads any of `blas`'s libraries uses now, so that a limit on any is respected;
    1 when none is known."""
    counts = [lib.num_threads for lib in blas.lib_controllers]
    return min((count for count in counts if count), default=1)


def _pool() -> ThreadPoolExecutor:
    """The helper threads: one fewer than the cores (the calling thread works too)."""
    global _helpers
    with _setup:
        if _helpers is None:
            _helpers = ThreadPoolExecutor(_CORES - 1 or 1, thread_name_prefix="cnn_core")
        return _helpers


def _forget_after_fork() -> None:
    """A forked child has none of its parent's threads, and maybe a lock one of them held."""
    global _controller, _helpers, _setup, _parallel
    _controller, _helpers, _setup, _parallel = None, None, threading.Lock(), threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


# --------------------------------------------------------------------------- the CPU's caches

_DEFAULT_CACHE = 1 << 20  # where the CPU does not say: a common L2 size of current x86 cores
_CACHE_RANGE = (1 << 18, 1 << 22)  # what a reported size is held to: 256 KiB .. 4 MiB


@functools.cache
def core_cache_bytes() -> int:
    """Bytes of the largest cache one core has to itself: its L2, divided among the logical CPUs
    that share it (hyperthreads, or a cluster of small cores), read from what the CPU reports
    (Linux's sysfs, else sysconf, else macOS's sysctl); 1 MiB where nothing says, and held to
    256 KiB .. 4 MiB. Read once a process."""
    size = _sysfs_l2() or _sysconf_l2() or _sysctl_l2() or _DEFAULT_CACHE
    return min(max(size, _CACHE_RANGE[0]), _CACHE_RANGE[1])


def _cpu_list_count(text: str) -> int:
    """How many CPUs a list such as '0-3,8-11' names."""
    count = 0
    for part in text.strip().split(","):
        if part:
            first, _, last = part.partition("-")
            count += int(last or first) - int(first) + 1
    return max(count, 1)


def _sysfs_l2() -> int | None:
    """The L2 share of the CPU this process may run on first, from Linux's sysfs."""
    cpu = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    for index in sorted(Path(f"/sys/devices/system/cpu/cpu{cpu}/cache").glob("index*")):
        try:
            if (index / "level").read_text().strip() != "2":
                continue
            if (index / "type").read_text().strip() not in ("Unified", "Data"):
                continue
            text = (index / "size").read_text().strip().upper()
            scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            size = int(text.rstrip("KMG")) * scale
            sharing = _cpu_list_count((index / "shared_cpu_list").read_text())
            return size // sharing
        except (OSError, ValueError):
            return None
    return None


def _sysconf_l2() -> int | None:
    try:
        size = os.sysconf("SC_LEVEL2_CACHE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return size if size > 0 else None


def _sysctl_l2() -> int | None:
    """macOS: the performance cores' L2 divided among the cores sharing it."""
    if sys.platform != "darwin":
        return None
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c"))

        def read(name: str) -> int:
            value, size = ctypes.c_int64(0), ctypes.c_size_t(8)
            if libc.sysctlbyname(name.encode(), ctypes.byref(value), ctypes.byref(size), None, 0):
                return 0
            return value.value

        size = read("hw.perflevel0.l2cachesize") or read("hw.l2cachesize")
        return size // max(1, read("hw.perflevel0.cpusperl2")) if size else None
    except (OSError, AttributeError):
        return None


# --------------------------------------------------------------------------- scratch memory

_local = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised C-contiguous array of `shape` and `dtype`, private to the calling thread and
    handed out again by the next call with the same `name` on this thread: a chunk's temporaries
    then reuse memory that is already mapped and likely in cache, instead of fresh pages the
    allocator may have handed back to the system. Buffers beyond four times the core's cache
    are not kept. Whatever the caller returns must not be such an array, or a view of one."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    try:
        buffers = _local.buffers
    except AttributeError:
        buffers = _local.buffers = {}
    buffer = buffers.get(name)
    if buffer is None or buffer.nbytes < nbytes:
        buffer = np.empty(max(nbytes, 1), np.uint8)
        if nbytes <= 4 * core_cache_bytes():
            buffers[name] = buffer
    return buffer[:nbytes].view(dtype).reshape(shape)


def chunk_threads() -> int:
    """Threads a chunked job of many chunks would use now: BLAS's thread count (the fewest of its
    libraries'), at most one a core."""
    return max(1, min(_blas_threads(_blas()), _CORES))


@contextlib.contextmanager
def blas_held() -> Iterator[None]:
    """Within: BLAS on one thread, and the chunked jobs of this thread on as many threads as BLAS
    had (`chunk_threads`), for a block of many small steps such as a training run. BLAS's own
    workers, which it wakes for the products outside the chunked jobs (linear layers) and which
    then spin for a while, no longer take the cores the chunk threads need; on a busy machine that
    contention made training several times slower.

    One block holds BLAS at a time: a nested block, a block on another thread while one holds,
    a block where BLAS has one thread already, or one whose limit some BLAS library does not take,
    changes nothing. The limit is set and restored between chunked jobs, never during one, so a
    block never takes another job's temporary limit for BLAS's own."""
    global _holder
    with _parallel:
        threads = chunk_threads()
        limiter = None
        if _holder is None and threads > 1:
            blas = _blas()
            limiter = blas.limit(limits=1, user_api="blas")
            if all(lib.num_threads == 1 for lib in blas.lib_controllers):
                _holder, _local.held = threading.get_ident(), threads
            else:
                limiter.restore_original_limits()
                limiter = None
    try:
        yield
    finally:
        if limiter is not None:
            with _parallel:
                _holder = _local.held = None
                limiter.restore_original_limits()


def map_chunks(job: Callable[[int, int], T], n: int, per: int) -> list[T]:
    """[job(start, stop) for each chunk [start, stop) of range(n), `per` items a chunk], in order.

    Chunks may run concurrently, so `job` must write only to parts of shared arrays that no other
    chunk touches. Once a chunk has raised, the threads take no new chunk; the exception is raised
    here after the chunks under way have finished.
    """
    bounds = [(start, min(n, start + per)) for start in range(0, n, per)]
    held = getattr(_local, "held", None)
    if len(bounds) > 1 and held is not None:  # BLAS is on one thread already
        workers = min(len(bounds), held)
        if workers > 1 and _parallel.acquire(blocking=False):  # else another job has the cores
            try:
                return _share(job, bounds, workers)
            finally:
                _parallel.release()
    if len(bounds) > 1 and held is None:
        blas = _blas()
        workers = min(len(bounds), _blas_threads(blas), _CORES)
        if workers > 1:
            with _parallel, blas.limit(limits=1, user_api="blas"):
                if _blas_threads(blas) == 1:
                    return _share(job, bounds, workers)
    return [job(start, stop) for start, stop in bounds]


def _share(job: Callable[[int, int], T], bounds: list[tuple[int, int]], workers: int) -> list[T]:
    """Run the chunks on the calling thread and `workers - 1` pool threads, each taking the next
    chunk not yet taken: a thread wakes once a job, not once a chunk."""
    results: list = [None] * len(bounds)
    taken = itertools.count()  # next() on it is atomic under the GIL
    failed = threading.Event()  # set when a chunk raises: take no new chunk

    def drain() -> None:
        while not failed.is_set() and (i := next(taken)) < len(bounds):
            try:
                results[i] = job(*bounds[i])
            except BaseException:
                failed.set()
                raise

    helpers = [_pool().submit(drain) for _ in range(workers - 1)]
    try:
        drain()
    finally:
        done = [helper.exception() for helper in helpers]  # waits for each
    for error in done:
        if error is not None:
            raise error
    return results
