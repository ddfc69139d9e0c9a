"""CPU-bound work off the event loop: bounded pools with a bounded queue and a time limit
per request.

* :class:`WorkPool`: threads, for store queries and guarded generation (and for
  verification when ``[serve] verify_pool = 0``);
* :class:`ProcessPool`: processes (``spawn``), for verification and content matching, so
  that their pure-Python parts never hold the interpreter the event loop runs in;
* :class:`InThread`: verification in a :class:`WorkPool` behind the same interface.

At most ``size + max_queue`` jobs are admitted to a pool at once; one more is refused at
once with 503 and ``Retry-After``. A job that runs past the time limit is answered with
503; it still finishes (neither a thread nor one process of an executor can be stopped
from outside) and only then frees its place, so the bound holds. A pool process that dies
(killed, out of memory, a crash in native code) fails the jobs it and its siblings held
with 503 ``worker-lost``; the pool is then rebuilt, and a job submitted to a pool found
broken is sent to the rebuilt one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from . import processes
from .problems import Problem

__all__ = ["InThread", "ProcessPool", "WorkPool"]

log = logging.getLogger(__name__)

#: longest wait for the verify pool's processes to set themselves up at start
_WARM_TIMEOUT_S = 600.0

T = TypeVar("T")


class WorkPool:
    """A bounded executor for one worker process.

    Parameters
    ----------
    threads
        Jobs that run at once.
    max_queue
        Jobs that may wait for a thread.
    timeout
        Seconds a request waits for its job.
    on_change
        Called with ``(admitted, running)`` whenever they change (metrics).
    """

    def __init__(self, threads: int, max_queue: int, timeout: float,
                 on_change: Callable[[int, int], None] | None = None) -> None:
        self.threads = threads
        self.capacity = threads + max_queue
        self.timeout = timeout
        self.admitted = 0
        self.running = 0
        self._on_change = on_change or (lambda _a, _r: None)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="guardrail-serve")

    def _changed(self) -> None:
        self._on_change(self.admitted, self.running)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the pool and return its result.

        Raises
        ------
        Problem
            503 ``queue-full`` when the pool and its queue are full; 503 ``timeout`` when
            the job did not finish within the time limit.
        """
        _admit(self.admitted, self.capacity)
        loop = asyncio.get_running_loop()
        self.admitted += 1
        self._changed()

        def job() -> T:
            loop.call_soon_threadsafe(self._started)
            return fn(*args)

        future = loop.run_in_executor(self._pool, job)
        future.add_done_callback(self._done)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            raise _timeout(self.timeout) from None

    def _started(self) -> None:
        self.running += 1
        self._changed()

    def _done(self, _future: Any) -> None:
        self.admitted -= 1
        self.running = max(0, self.running - 1)
        self._changed()

    def shutdown(self) -> None:
        """Finish the jobs in flight, then stop the threads."""
        self._pool.shutdown(wait=True, cancel_futures=False)


def _admit(admitted: int, capacity: int) -> None:
    if admitted >= capacity:
        raise Problem(503, "queue-full", "the service is busy; retry shortly",
                      headers={"Retry-After": "1"})


def _timeout(seconds: float) -> Problem:
    return Problem(503, "timeout", f"the request took longer than {seconds:g} s",
                   headers={"Retry-After": "5"})


class InThread:
    """Verification and content matching in the worker's thread pool
    (``verify_pool = 0``)."""

    size = 0
    ready = True
    #: the jobs are counted by the thread pool
    admitted = capacity = rebuilds = 0

    def __init__(self, pool: WorkPool, resources: Any) -> None:
        self._pool = pool
        self._resources = resources

    async def start(self) -> None:
        """Nothing to start."""

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``resources.<method>(*args, **kwargs)`` in a thread."""
        fn = getattr(self._resources, method)
        return await self._pool.run(lambda: fn(*args, **kwargs))

    def pids(self) -> list[int]:
        return []

    def shutdown(self) -> None:
        """The thread pool is shut down by its owner."""


class ProcessPool:
    """A bounded pool of ``spawn``-ed processes for one worker (see the module docstring).

    Processes start on the first job, or at :meth:`start` when ``warm``; they are started
    from the thread of the event loop, the one whose end the kernel reports to them.

    Parameters
    ----------
    size
        Processes (jobs that run at once).
    max_queue
        Jobs that may wait for a process.
    timeout
        Seconds a request waits for its job.
    initargs
        ``(config, settings, store_url)`` for :func:`.processes.initialize`.
    warm
        Start the processes and let them load their models at :meth:`start`.
    cores
        CPU cores the pool may use (default ``size``): a job may use all of them while it
        runs alone, an equal share while other jobs run (torch's threads).
    on_change
        Called with ``(admitted, running)`` whenever they change (metrics).
    """

    def __init__(self, size: int, max_queue: int, timeout: float, initargs: tuple[Any, ...],
                 *, warm: bool = False, cores: int | None = None,
                 on_change: Callable[[int, int], None] | None = None) -> None:
        self.size = size
        self.cores = max(1, cores or size)
        self.capacity = size + max_queue
        self.timeout = timeout
        self.admitted = 0
        self.rebuilds = 0
        self.warm = warm
        self.ready = not warm
        self._initargs = (*initargs, os.getpid())
        self._on_change = on_change or (lambda _a, _r: None)
        self._executor = self._new_executor()

    def _new_executor(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=self.size, mp_context=multiprocessing.get_context("spawn"),
            initializer=processes.initialize, initargs=self._initargs)

    def _changed(self) -> None:
        self._on_change(self.admitted, min(self.admitted, self.size))

    def _submit(self, fn: Callable[..., Any], *args: Any) -> tuple[Any, Any]:
        """Submit to the current executor, rebuilding it once if it is found broken."""
        executor = self._executor
        try:
            return executor, executor.submit(fn, *args)
        except BrokenProcessPool:
            self._rebuild(executor)
            executor = self._executor
            return executor, executor.submit(fn, *args)

    def _rebuild(self, broken: concurrent.futures.ProcessPoolExecutor) -> None:
        if self._executor is not broken:
            return  # rebuilt already by another request
        self.rebuilds += 1
        log.error("a verify pool process stopped unexpectedly; starting a new pool")
        broken.shutdown(wait=False, cancel_futures=True)
        self._executor = self._new_executor()

    async def start(self) -> None:
        """With ``warm``: start every process and wait until each has set itself up."""
        if not self.warm:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _WARM_TIMEOUT_S
        try:
            seen: set[int] = set()
            # a process takes jobs only once it is set up: rounds of short jobs until every
            # process has answered one
            while len(seen) < self.size and loop.time() < deadline:
                futures = [asyncio.wrap_future(self._submit(processes.ping, 0.05)[1])
                           for _ in range(self.size)]
                seen.update(await asyncio.gather(*futures))
        except BrokenProcessPool:
            log.error("the verify pool's processes failed to start; they are started again "
                      "on the next request")
            self._rebuild(self._executor)
        finally:
            self.ready = True

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``Resources.<method>(*args, **kwargs)`` in a pool process.

        Raises
        ------
        Problem
            As :meth:`run`.
        UnsupportedMediaError, GuardrailError, RuntimeError
            What the method raised there (class and message).
        """
        busy = min(self.admitted + 1, self.size)  # this job's process included
        threads = max(1, self.cores // busy)
        status, value = await self.run(processes.call, method, args, kwargs, threads)
        if status != "ok":
            processes.raise_error(*value)
        return value

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a pool process (``fn`` and its arguments are pickled).

        Raises
        ------
        Problem
            503 ``queue-full``, ``timeout`` or ``worker-lost`` (the process died).
        """
        _admit(self.admitted, self.capacity)
        self.admitted += 1
        self._changed()
        try:
            executor, cf = self._submit(fn, *args)
        except BaseException:
            self.admitted -= 1
            self._changed()
            raise
        future = asyncio.wrap_future(cf)
        future.add_done_callback(self._done)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except TimeoutError:
            raise _timeout(self.timeout) from None
        except BrokenProcessPool:
            self._rebuild(executor)
            raise Problem(503, "worker-lost", "the verification process stopped "
                          "unexpectedly; retry", headers={"Retry-After": "1"}) from None

    def _done(self, _future: Any) -> None:
        self.admitted -= 1
        self._changed()

    def pids(self) -> list[int]:
        """Process ids of the current pool's processes."""
        procs = getattr(self._executor, "_processes", None) or {}
        return [p.pid for p in list(procs.values()) if p.pid is not None]

    def shutdown(self) -> None:
        """Finish the jobs in flight, then stop the processes."""
        self._executor.shutdown(wait=True, cancel_futures=False)
