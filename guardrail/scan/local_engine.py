"""``--engine local``: the per-file work on a pool of worker processes, no Ray needed.

Each worker process builds one :class:`~guardrail.scan.worker.ScanContext` in its
initializer (configuration, limits, record store; detectors and the text model on first
need) and verifies chunks of files. The workers split the cores: each caps its native
thread pools (ONNX Runtime, OpenCV, torch, OpenMP, BLAS) at ``max(1, cores // workers)``
threads, the OpenMP and BLAS ones through the environment it is started with. At most
``2 x workers`` chunks are in flight (bounded memory: the listing is consumed as results
come back). A worker that dies (a
native crash, the out-of-memory killer, kill -9) breaks the pool: the pool is rebuilt and
the files of the chunks in flight are retried one at a time, alone in the new pool; a file
that kills its worker when alone gets an error row.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..config import Config
from .rows import error_row
from .worker import ScanContext, scan_many, thread_env, threads_per_worker

__all__ = ["run_local"]

log = logging.getLogger(__name__)

_CTX: ScanContext | None = None

#: called with the rows of a chunk and the number of files it covered
OnRows = Callable[[list[dict[str, Any]], int], None]


def _init(config: Config, done: Mapping[str, str], threads: int | None = None) -> None:
    global _CTX
    _CTX = ScanContext(config, done=done, threads=threads)


def _task(paths: list[str]) -> list[dict[str, Any]]:
    assert _CTX is not None, "worker not initialised"
    return scan_many(paths, _CTX)


def _chunks(paths: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(paths), size):
        yield list(paths[i:i + size])


def run_local(paths: Sequence[str], config: Config, on_rows: OnRows, *,
              done: Mapping[str, str] | None = None, workers: int = 1,
              chunk: int = 4,
              task: Callable[[list[str]], list[dict[str, Any]]] = _task,
              threads: int | None = None) -> None:
    """Scan ``paths`` on ``workers`` processes (0: in this process), handing each chunk's
    rows to ``on_rows`` as it completes (in completion order). ``task`` (a picklable
    function run in a worker after its initializer) scans a chunk. ``threads``: native
    threads per worker (default :func:`~.worker.threads_per_worker`)."""
    done = dict(done or {})
    if workers <= 0:
        ctx = ScanContext(config, done=done)
        try:
            for part in _chunks(paths, chunk):
                on_rows(scan_many(part, ctx), len(part))
        finally:
            ctx.close()
        return
    fresh = list(_chunks(paths, chunk))
    fresh.reverse()  # pop() from the end keeps the listing's order
    suspects: list[str] = []  # files in flight when a worker died: retried one at a time
    mp = multiprocessing.get_context("spawn")
    threads = threads or threads_per_worker(workers)
    with thread_env(threads):  # the workers start with it: before they import numpy
        while fresh or suspects:
            pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp, initializer=_init,
                                       initargs=(config, done, threads))
            try:
                _drain(pool, fresh, suspects, on_rows, task, workers)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)


def _drain(pool: ProcessPoolExecutor, fresh: list[list[str]], suspects: list[str],
           on_rows: OnRows, task: Callable[[list[str]], list[dict[str, Any]]],
           workers: int) -> None:
    """Run chunks on ``pool`` until done or until a worker dies (the pool is then broken:
    the files in flight become suspects, and return)."""
    inflight: dict[Future[Any], list[str]] = {}
    while fresh or suspects or inflight:
        if suspects and not inflight:
            # alone in the pool: a worker that dies now died of this very file
            path = suspects.pop()
            try:
                rows = pool.submit(task, [path]).result()
            except BrokenProcessPool:
                log.warning("a worker process died verifying %s", path)
                on_rows([error_row(path, "the worker process died while verifying this "
                                   "file")], 1)
                return
            on_rows(rows, 1)
            continue
        while fresh and not suspects and len(inflight) < 2 * workers:
            part = fresh.pop()
            inflight[pool.submit(task, part)] = part
        finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
        broken = False
        for fut in finished:
            part = inflight.pop(fut)
            try:
                on_rows(fut.result(), len(part))
            except BrokenProcessPool:
                broken = True
                suspects.extend(reversed(part))
        if broken:
            for part in inflight.values():
                suspects.extend(reversed(part))
            log.warning("a worker process died; retrying %d file(s) one at a time",
                        len(suspects))
            return
