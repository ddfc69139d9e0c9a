"""The context of an audit run: :class:`AuditContext` (re-exported by :mod:`audits.runner`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guardrail.config import Config
from guardrail.store import ReportStore

__all__ = ["AuditContext", "Process"]

#: a batch of work items -> one record per item (with the item's ``key``)
Process = Callable[[list[Mapping[str, Any]]], list[dict[str, Any]]]


@dataclass
class AuditContext:
    """Everything a runner needs besides the suite.

    ``generator`` is a model id or path (``None``: the configured default); ``guard`` a
    ready :class:`guardrail.Guard` to use instead of loading one (tests, callers that hold a
    loaded model). ``limit`` keeps the first N prompts. ``params`` are extra generation
    parameters. ``smoke`` labels the run a smoke run - it checks that the audit runs end to
    end and tests nothing - in everything that shows it. ``progress``: a progress bar
    (:func:`guardrail.progress.bar`) while samples are generated.

    ``engine`` is ``local`` (in this process) or ``ray`` (``workers`` Ray actors on the
    cluster at ``address``; ``None`` starts a local Ray instance). A ready ``guard`` cannot
    travel to an actor: on Ray, ``guard_factory(config, store)`` - a picklable callable - is
    called in each actor to build its guard instead of loading the configured generator.
    """

    config: Config
    store: ReportStore
    generator: str | None = None
    samples: int | None = None
    seed: int | None = None
    resume: bool = True
    progress: bool = True
    device: str | None = None
    out_dir: Path | None = None
    name: str | None = None
    guard: Any = None
    limit: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    smoke: bool = False
    engine: str = "local"
    workers: int = 2
    address: str | None = None
    guard_factory: Callable[[Config, ReportStore], Any] | None = None

    @property
    def audit(self) -> Mapping[str, Any]:
        return self.config.section("audit")

    @property
    def n_samples(self) -> int:
        return int(self.samples if self.samples is not None else self.audit["samples"])

    @property
    def base_seed(self) -> int:
        return int(self.seed if self.seed is not None else self.audit["seed"])
