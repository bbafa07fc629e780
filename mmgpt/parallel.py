"""An ordered map over chunks of a list in forked worker processes, for CPU-bound Python loops (drawing and
preprocessing images) that would otherwise leave all but one of the machine's cores idle."""

from __future__ import annotations

import math
import mmap
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import numpy as np

Item = TypeVar("Item")
Result = TypeVar("Result")

#: The function the forked workers apply; set by `_start_worker`, inherited from the parent, never pickled.
_worker_fn: Callable[[list[Any]], Any] | None = None


def available_cpus() -> int:
    """The number of CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def shared_array(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A zeroed array of `shape` and `dtype` in anonymous shared memory: what the forked workers of `map_chunks`
    write into it, this process sees. Anonymous, so not bounded by the size of /dev/shm (64 MB in a default
    Docker container); freed with the last array viewing it."""
    count = int(np.prod(shape))
    buffer = mmap.mmap(-1, max(count * np.dtype(dtype).itemsize, 1))
    return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)


def _start_worker(fn: Callable[[list[Any]], Any]) -> None:
    global _worker_fn
    _worker_fn = fn
    if "torch" in sys.modules:  # one thread each: the workers already fill the cores
        sys.modules["torch"].set_num_threads(1)


def _run_chunk(chunk: list[Any]) -> Any:
    assert _worker_fn is not None
    return _worker_fn(chunk)


def map_chunks(
    fn: Callable[[list[Item]], Result],
    items: Sequence[Item],
    *,
    workers: int | None = None,
    chunk_size: int | None = None,
    progress: bool = False,
    desc: str = "",
    unit: str = "item",
) -> list[Result]:
    """`[fn(chunk) for chunk in items split into chunks of chunk_size]`, in that order, computed by `workers`
    forked processes (default: `available_cpus()`), with a progress bar counting items when `progress`. The
    default `chunk_size` gives each worker about four chunks, at most 256 items each.

    `fn` runs in the workers, which see the parent's memory as it was at the call, so it may be a closure or
    partial over objects that do not pickle; the chunks and results are pickled. An exception raised by `fn` is
    raised here, and a worker that dies (killed, out of memory) raises `BrokenProcessPool` instead of hanging.
    Runs in this process when one worker or one chunk is enough, or off Linux, where forking a process that
    holds threads is not safe. A deterministic `fn` gives the same results for any number of workers.
    """
    from mmgpt.progress import progress_bar

    workers = max(1, available_cpus() if workers is None else workers)
    if chunk_size is None:
        chunk_size = max(1, min(256, math.ceil(len(items) / (4 * workers))))
    chunks = [list(items[i : i + chunk_size]) for i in range(0, len(items), chunk_size)]
    workers = min(workers, len(chunks))
    bar = progress_bar(total=len(items), desc=desc, unit=unit, disable=not progress)
    results: list[Result] = []
    try:
        if workers <= 1 or not sys.platform.startswith("linux"):
            for chunk in chunks:
                results.append(fn(chunk))
                bar.update(len(chunk))
            return results
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, context, initializer=_start_worker, initargs=(fn,)) as pool:
            for chunk, result in zip(chunks, pool.map(_run_chunk, chunks), strict=True):
                results.append(result)
                bar.update(len(chunk))
        return results
    finally:
        bar.close()
