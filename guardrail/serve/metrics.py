"""Prometheus metrics of one worker process (prometheus-client).

With several uvicorn workers, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder before
starting: ``/metrics`` then sums every worker's samples (prometheus-client's
multiprocess mode); without it each scrape sees the worker that answered.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The service's metrics in a registry of its own (one per application)."""

    def __init__(self) -> None:
        self._work: dict[str, tuple[int, int]] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("guardrail_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("guardrail_http_request_duration_seconds",
                                 "Time to answer a request", ["method", "route"],
                                 buckets=_BUCKETS, registry=r)
        self.verdicts = Counter("guardrail_verify_verdicts", "Verdicts of /v1/verify",
                                ["label"], registry=r)
        self.matches = Counter("guardrail_softbinding_queries", "Soft-binding queries",
                               ["endpoint", "found"], registry=r)
        self.generations = Counter("guardrail_generations", "Guarded generations",
                                   ["modality", "status"], registry=r)
        self.queue_depth = Gauge("guardrail_work_queue_depth",
                                 "Admitted CPU-bound jobs waiting for a thread or a pool process",
                                 registry=r, multiprocess_mode="livesum")
        self.in_progress = Gauge("guardrail_work_in_progress",
                                 "CPU-bound jobs running", registry=r,
                                 multiprocess_mode="livesum")
        self.rejected = Counter("guardrail_rejected_requests",
                                "Requests refused before any work",
                                ["reason"], registry=r)

    def work_changed(self, admitted: int, running: int, pool: str = "threads") -> None:
        """Record one pool's ``(admitted, running)``; the gauges sum the pools."""
        self._work[pool] = (admitted, running)
        self.queue_depth.set(sum(max(0, a - r) for a, r in self._work.values()))
        self.in_progress.set(sum(r for _a, r in self._work.values()))

    def render(self) -> bytes:
        """The exposition text (all workers' samples in multiprocess mode)."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
