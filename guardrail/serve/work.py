"""CPU-bound work off the event loop: a bounded thread pool with a bounded queue and a
time limit per request.

Verification, content matching and generation run in the pool, so the event loop keeps
answering (``/healthz`` during a heavy verify). At most ``threads + max_queue`` jobs are
admitted at once; one more is refused at once with 503 and ``Retry-After``. A job that
runs past the time limit is answered with 503; its thread finishes the job (a thread
cannot be stopped from outside) and only then frees its place, so the bound holds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, TypeVar

from .problems import Problem

__all__ = ["WorkPool"]

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
        if self.admitted >= self.capacity:
            raise Problem(503, "queue-full", "the service is busy; retry shortly",
                          headers={"Retry-After": "1"})
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
            raise Problem(503, "timeout", f"the request took longer than {self.timeout:g} s",
                          headers={"Retry-After": "5"}) from None

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
