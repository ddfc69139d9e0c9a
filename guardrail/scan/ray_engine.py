"""``--engine ray``: map a callable over items on Ray actors, with Ray Data.

:func:`map_on_actors` is generic: ``make`` (a picklable factory) is called once in each
actor to build the callable - so every actor loads its models, keys and settings once -
and the callable maps a batch of items to a list of results. The pipeline is
``from_items -> map_batches(actor class, concurrency=workers) -> iter_batches`` on the
driver, which streams (Ray Data's backpressure bounds what is in flight) and hands each
batch's results to ``on_results`` - where the caller writes its checkpoint (the scan's
part files). Actors declare ``num_cpus`` / ``num_gpus``; an actor that dies (kill -9, a
node lost) is restarted and its batch retried (Ray Data gives its actor pools
``max_restarts=-1`` and ``max_task_retries=-1``), so a result can arrive twice but none is
lost: the caller dedupes (the scan keeps one row per path at the merge).

With no ``address`` a local Ray instance is started (and stopped at the end); with one
(``ray://host:10001``, ``auto``, ``host:6379``) the cluster's workers must be able to
read the items' paths (shared storage or URLs) and import guardrail.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..config import Config
from ..errors import DependencyError

__all__ = ["ScanFn", "map_on_actors", "run_ray"]

log = logging.getLogger(__name__)

#: called with the results of a batch and the number of items it covered
OnResults = Callable[[list[Any], int], None]


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise DependencyError("ray[data]", "ray",
                              purpose="--engine ray; or use --engine local") from None
    return ray


class _Actor:
    """The callable class of ``map_batches``: builds the callable once, maps batches."""

    def __init__(self, make: Callable[[], Callable[[list[Any]], list[Any]]]) -> None:
        self.fn = make()

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, list[Any]]:
        items = [pickle.loads(b) for b in batch["item"]]
        results = self.fn(items)
        from ray import cloudpickle  # results may hold what plain pickle cannot (mappingproxy)

        return {"result": [cloudpickle.dumps(results)], "n": [len(items)]}


def _connect(ray: Any, address: str | None, workers: int) -> bool:
    """Connect (or start a local instance); True when this call started Ray."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=max(os.cpu_count() or 1, workers), include_dashboard=False,
                 **kwargs)
    return True


def map_on_actors(make: Callable[[], Callable[[list[Any]], list[Any]]], items: Sequence[Any],
                  on_results: OnResults, *, workers: int = 1, batch_size: int = 4,
                  num_cpus: float = 1, num_gpus: float = 0, address: str | None = None,
                  name: str = "guardrail") -> None:
    """Map ``make()`` over ``items`` in batches on ``workers`` Ray actors.

    Parameters
    ----------
    make
        A picklable factory called once per actor; its result maps a list of items to a
        list of results (any picklable values).
    items
        Picklable items, in order; results come back in completion order.
    on_results
        Called on the driver with each batch's results and its number of items.
    workers
        Actors (the actor pool's fixed size).
    batch_size
        Items per ``map_batches`` call (a killed actor's batch is retried whole).
    num_cpus, num_gpus
        Resources each actor declares (``num_gpus=1`` on GPU nodes for GPU models).
    address
        A Ray cluster's address; ``None`` starts a local instance for the call.
    name
        Shown in Ray's logs and dashboard.
    """
    ray = _ray()
    if not items:
        return
    started = _connect(ray, address, workers)
    try:
        from ray.data import ActorPoolStrategy

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        blocks = max(1, min(len(items) // batch_size or 1, 4 * workers * 16))
        ds = ray.data.from_items([{"item": ray.cloudpickle.dumps(x)} for x in items],
                                 override_num_blocks=blocks)
        ds = ds.map_batches(_Actor, fn_constructor_kwargs={"make": make},
                            batch_size=batch_size, batch_format="pandas",
                            compute=ActorPoolStrategy(size=workers), num_cpus=num_cpus,
                            num_gpus=num_gpus or None)
        ds.set_name(name)
        for batch in ds.iter_batches(batch_size=None, batch_format="pandas"):
            for blob, n in zip(batch["result"], batch["n"], strict=True):
                on_results(pickle.loads(blob), int(n))
    finally:
        if started:
            ray.shutdown()


class ScanFn:
    """The scan's factory for :func:`map_on_actors`: builds one
    :class:`~guardrail.scan.worker.ScanContext` per actor and scans batches of paths.
    ``threads`` caps the actor's native thread pools (``None``: as the libraries size
    them)."""

    def __init__(self, config: Config, done: Mapping[str, str],
                 threads: int | None = None) -> None:
        self.config = config
        self.done = dict(done)
        self.threads = threads

    def __call__(self) -> Callable[[list[Any]], list[Any]]:
        from .worker import ScanContext, scan_many

        ctx = ScanContext(self.config, done=self.done, threads=self.threads)
        return lambda paths: scan_many(list(paths), ctx)


def run_ray(paths: Sequence[str], config: Config, on_rows: OnResults, *,
            done: Mapping[str, str] | None = None, workers: int = 1, chunk: int = 4,
            address: str | None = None, num_cpus: float = 1, num_gpus: float = 0,
            threads: int | None = None) -> None:
    """Scan ``paths`` on ``workers`` Ray actors (see :func:`map_on_actors`); each actor
    caps its native thread pools at ``threads`` (default: the CPUs it declares,
    ``num_cpus``, at least 1)."""
    threads = threads or max(1, int(num_cpus))
    map_on_actors(ScanFn(config, done or {}, threads), list(paths), on_rows, workers=workers,
                  batch_size=chunk, num_cpus=num_cpus, num_gpus=num_gpus, address=address,
                  name="guardrail-scan")
