"""``guardrail audit run --engine ray``: an audit's generations on Ray actors.

The scheduling is :func:`guardrail.scan.ray_engine.map_on_actors` (Ray Data's actor pool:
a fixed number of actors, a killed actor restarted and its batch retried). What runs where:

* **the driver** (this process) reads the suite and the checkpoint, forms the unfinished
  batches exactly as the local engine would (so every batch has the same prompts and seed),
  and is the only writer of the checkpoint (``samples.jsonl``) and the stored evaluation: a
  record is kept once per sample key, so a batch delivered twice (retried after its actor
  died) is not counted twice; at the end it computes the statistics, as in-process.
* **each actor** builds an :class:`~audits.runner.AuditContext` of its own
  (:class:`ActorSpec`: the configuration, generator, device, parameters; a record store
  opened on the configured URL), then the audit's ``build(ctx)`` loads the guard,
  generator and scorers once, and the actor generates and scores whole batches. The guard
  records every generation in the configured record store, as in-process: on a cluster
  that store must be shared (PostgreSQL).

An actor declares ``num_cpus=1`` and ``num_gpus=1`` when the generator's device is CUDA
(:func:`gpus_for`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from guardrail.config import Config
from guardrail.scan import ray_engine

from .context import AuditContext, Process

__all__ = ["ActorSpec", "gpus_for", "map_batches", "probe", "ray_session"]


@contextmanager
def ray_session(address: str | None, workers: int) -> Iterator[None]:
    """Connect to the Ray cluster at ``address`` (``None``: start a local instance) for the
    block, so that every call inside it shares one Ray; stop what this call started.

    Raises :class:`~guardrail.errors.DependencyError` when Ray Data is not installed.
    """
    ray = ray_engine._ray()
    started = ray_engine._connect(ray, address, workers)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def gpus_for(ctx: AuditContext, modality: str) -> float:
    """GPUs each actor declares: 1 when the generator of ``modality`` is to run on CUDA
    (``--device cuda[:N]`` or the configured device), else 0."""
    device = ctx.device or ctx.config.generator(modality).get("device") or ""
    return 1.0 if str(device).startswith("cuda") else 0.0


@dataclass
class ActorSpec:
    """What an actor needs to rebuild the driver's :class:`AuditContext` (picklable)."""

    config: Config
    generator: str | None = None
    device: str | None = None
    samples: int | None = None
    seed: int | None = None
    limit: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    smoke: bool = False
    guard_factory: Callable[[Config, Any], Any] | None = None

    @classmethod
    def of(cls, ctx: AuditContext) -> ActorSpec:
        return cls(config=ctx.config, generator=ctx.generator, device=ctx.device,
                   samples=ctx.samples, seed=ctx.seed, limit=ctx.limit,
                   params=dict(ctx.params), smoke=ctx.smoke, guard_factory=ctx.guard_factory)

    def context(self) -> AuditContext:
        """The actor's context: its own record store, and its guard when a factory is set."""
        from guardrail.store import ReportStore

        store = ReportStore(self.config.store_url)
        guard = self.guard_factory(self.config, store) if self.guard_factory else None
        return AuditContext(config=self.config, store=store, generator=self.generator,
                            samples=self.samples, seed=self.seed, progress=False,
                            device=self.device, guard=guard, limit=self.limit,
                            params=dict(self.params), smoke=self.smoke)


class _BatchFactory:
    """The ``make`` of :func:`map_on_actors`: in the actor, ``build(ctx)`` once; then each
    item (a whole batch of work items) is processed into its records."""

    def __init__(self, spec: ActorSpec, build: Callable[[AuditContext], Process]) -> None:
        self.spec, self.build = spec, build

    def __call__(self) -> Callable[[list[Any]], list[Any]]:
        process = self.build(self.spec.context())
        return lambda batches: [process(list(batch)) for batch in batches]


class _ProbeFactory:
    """The ``make`` of :func:`probe`: ``fn(ctx)`` once in one actor."""

    def __init__(self, spec: ActorSpec, fn: Callable[[AuditContext], Any]) -> None:
        self.spec, self.fn = spec, fn

    def __call__(self) -> Callable[[list[Any]], list[Any]]:
        ctx = self.spec.context()
        return lambda items: [self.fn(ctx) for _ in items]


def map_batches(ctx: AuditContext, build: Callable[[AuditContext], Process],
                batches: Sequence[list[Mapping[str, Any]]],
                on_records: Callable[[list[dict[str, Any]]], None], *, num_gpus: float = 0,
                name: str = "audit") -> None:
    """Process ``batches`` on ``ctx.workers`` actors; ``on_records`` gets each batch's
    records on the driver, in completion order (a retried batch may come twice)."""
    def collect(results: list[Any], n: int) -> None:
        for records in results:
            on_records(list(records))

    ray_engine.map_on_actors(_BatchFactory(ActorSpec.of(ctx), build), list(batches), collect,
                             workers=int(ctx.workers), batch_size=1, num_gpus=num_gpus,
                             address=ctx.address, name=f"guardrail-{name}".replace(" ", "-"))


def probe(ctx: AuditContext, fn: Callable[[AuditContext], Any], *, num_gpus: float = 0) -> Any:
    """``fn(ctx)`` run once in one actor (where the models load) and its result - what the
    driver must know before it can start, such as the loaded generator's identity."""
    out: list[Any] = []
    ray_engine.map_on_actors(_ProbeFactory(ActorSpec.of(ctx), fn), [0],
                             lambda results, n: out.extend(results), workers=1, batch_size=1,
                             num_gpus=num_gpus, address=ctx.address, name="guardrail-probe")
    return out[0]
