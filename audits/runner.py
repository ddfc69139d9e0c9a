"""Running an audit: context, runner lookup, resumable checkpoints, the stored evaluation.

An audit is stored as an :class:`~guardrail.store.Evaluation` of kind ``audit``. While it
runs its status is ``running`` and every finished sample is appended to
``<data_dir>/audits/<audit id>/samples.jsonl`` (one JSON line per sample, written with one
``write`` and ``fsync`` per batch). Running the same suite with the same settings again finds
the running evaluation (by its ``resume_key``) and continues: finished samples - scored or
recorded as failed - are not generated again. A line torn by a crash is dropped (and cut
off the file) when the checkpoint is read.

A suite names its *kind*; the runner of a kind is the entry point of that name in the
``guardrail.audits`` group (:mod:`guardrail.plugins`), a function
``run(suite, ctx) -> Evaluation``, imported only when an audit of that kind runs. The built-in
kinds ``text``, ``image`` and ``safety`` are registered in guardrail's ``pyproject.toml``;
another package adds a kind the same way::

    [project.entry-points."guardrail.audits"]
    video = "my_package.video_audit:run"
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guardrail import plugins
from guardrail.config import Config
from guardrail.errors import ConfigError, SuiteError
from guardrail.progress import bar as progress_bar
from guardrail.store import Evaluation, ReportStore

from .suites import Suite

__all__ = ["AuditContext", "Checkpoint", "finish_audit", "get_runner", "run_audit",
           "run_samples", "start_audit"]


@dataclass
class AuditContext:
    """Everything a runner needs besides the suite.

    ``generator`` is a model id or path (``None``: the configured default); ``guard`` a
    ready :class:`guardrail.Guard` to use instead of loading one (tests, callers that hold a
    loaded model). ``limit`` keeps the first N prompts. ``params`` are extra generation
    parameters. ``smoke`` labels the run a smoke run - it checks that the audit runs end to
    end and tests nothing - in everything that shows it. ``progress``: a progress bar
    (:func:`guardrail.progress.bar`) while samples are generated.
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

    @property
    def audit(self) -> Mapping[str, Any]:
        return self.config.section("audit")

    @property
    def n_samples(self) -> int:
        return int(self.samples if self.samples is not None else self.audit["samples"])

    @property
    def base_seed(self) -> int:
        return int(self.seed if self.seed is not None else self.audit["seed"])


def get_runner(kind: str) -> Callable[[Suite, AuditContext], Evaluation]:
    """The runner for a suite kind: entry point ``kind`` of ``guardrail.audits`` (imported
    now)."""
    try:
        ep = plugins.entry_point(plugins.AUDITS, kind)
    except ConfigError as exc:
        raise SuiteError(f"no audit runner for suite kind {kind!r}: {exc}") from None
    try:
        return ep.load()
    except ModuleNotFoundError as exc:
        if exc.name != ep.module:
            raise
        raise SuiteError(f"the {kind} audit is not available in this installation "
                         f"(module {ep.module} is missing)") from None


def run_audit(suite: Suite, ctx: AuditContext) -> Evaluation:
    """Run ``suite`` with the runner of its kind."""
    return get_runner(suite.kind)(suite, ctx)


# -- checkpoints --------------------------------------------------------------------------
class Checkpoint:
    """Append-only JSONL of finished samples, keyed by ``record["key"]``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "samples.jsonl"

    def load(self) -> dict[str, dict[str, Any]]:
        """Finished samples by key. A torn last line (a crash mid-write) is cut off."""
        if not self.path.exists():
            return {}
        raw = self.path.read_bytes()
        done: dict[str, dict[str, Any]] = {}
        good = 0
        for line in raw.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                break
            done[rec["key"]] = rec
            good += len(line)
        if good < len(raw):  # drop the torn tail so that appends start on a clean line
            with open(self.path, "r+b") as fh:
                fh.truncate(good)
                fh.flush()
                os.fsync(fh.fileno())
        return done

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        data = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
        if not data:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.path, "ab") as fh:
            fh.write(data.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())


# -- lifecycle ----------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def resume_key(parts: Mapping[str, Any]) -> str:
    """A stable digest of everything that makes two runs the same audit."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


@dataclass
class Started:
    evaluation: Evaluation
    checkpoint: Checkpoint
    done: dict[str, dict[str, Any]]
    resumed: bool


def start_audit(suite: Suite, ctx: AuditContext, *, config: Mapping[str, Any],
                key_parts: Mapping[str, Any], total: int) -> Started:
    """Find the running audit with the same settings (when ``ctx.resume``) or start one;
    record it as ``running`` and return its checkpoint and finished samples."""
    key = resume_key({"suite": suite.digest, **key_parts})
    found: Evaluation | None = None
    if ctx.resume:
        for ev in ctx.store.list_evaluations(kind="audit", limit=500):
            if ev.status == "running" and ev.config.get("resume_key") == key:
                found = ev
                break
    if found is not None:
        ev_id, created = found.evaluation_id, found.created_at
    else:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        ev_id, created = f"audit-{suite.name}-{stamp}-{secrets.token_hex(3)}", _now()
    checkpoint = Checkpoint(ctx.config.data_dir / "audits" / ev_id)
    done = checkpoint.load() if found is not None else {}
    ev = Evaluation(
        evaluation_id=ev_id, kind="audit", name=ctx.name or f"{suite.name} v{suite.version}",
        created_at=created, status="running",
        config={**config, "resume_key": key, "checkpoint": str(checkpoint.path),
                "suite": suite.describe()},
        summary={"status": "running", "samples_done": len(done), "samples_total": total})
    ctx.store.save_evaluation(ev)
    return Started(evaluation=ev, checkpoint=checkpoint, done=done, resumed=found is not None)


def run_samples(ctx: AuditContext, started: Started, work: Sequence[Mapping[str, Any]],
                process: Callable[[list[Mapping[str, Any]]], list[dict[str, Any]]], *,
                batch_size: int, desc: str = "audit") -> list[dict[str, Any]]:
    """Process the work items that are not finished yet, ``batch_size`` at a time.

    ``process(batch)`` returns one record per item (with the item's ``key``), failures
    included; each batch's records are checkpointed before the next batch starts, and the
    running evaluation's progress is updated. Returns every record (old and new) in the
    order of ``work``.
    """
    done = started.done
    todo = [w for w in work if w["key"] not in done]
    bar = progress_bar(total=len(work), initial=len(work) - len(todo), desc=desc,
                       unit="sample", show=ctx.progress)
    try:
        for start in range(0, len(todo), batch_size):
            batch = list(todo[start:start + batch_size])
            records = process(batch)
            started.checkpoint.append(records)
            for rec in records:
                done[rec["key"]] = rec
            bar.update(len(batch))
            ev = started.evaluation
            started.evaluation = Evaluation(
                **{**_fields(ev), "summary": {**ev.summary, "samples_done": len(done)}})
            ctx.store.save_evaluation(started.evaluation)
    finally:
        bar.close()
    return [done[w["key"]] for w in work if w["key"] in done]


def _fields(ev: Evaluation) -> dict[str, Any]:
    return {"evaluation_id": ev.evaluation_id, "kind": ev.kind, "name": ev.name,
            "created_at": ev.created_at, "status": ev.status, "config": ev.config,
            "summary": ev.summary, "rows": ev.rows}


def finish_audit(ctx: AuditContext, started: Started, *, rows: Sequence[Mapping[str, Any]],
                 summary: Mapping[str, Any], status: str = "complete") -> Evaluation:
    """Store the finished audit (rows and summary replace the running record)."""
    ev = started.evaluation
    final = Evaluation(**{**_fields(ev), "status": status, "rows": list(rows),
                          "summary": {**summary, "status": status,
                                      "finished_at": _now()}})
    ctx.store.save_evaluation(final)
    return final


#: the guard slots after generation whose ``block`` policy an audit turns into ``flag``
OUTPUT_SLOTS = ("output_checks", "watermark", "self_check", "provenance")


def audit_config(config: Config) -> Config:
    """``config`` as an audit's guard uses it: with ``[audit] block_as_flag`` (default), a
    ``block`` policy of an output stage acts as ``flag``, so every output is released to be
    scored while the would-be block is still recorded (the report is flagged)."""
    import copy

    if not config.section("audit").get("block_as_flag", True):
        return config
    data = copy.deepcopy(dict(config.data))
    on_fail = data["policy"]["on_fail"]
    for slot in OUTPUT_SLOTS:
        if on_fail.get(slot, "block") == "block":
            on_fail[slot] = "flag"
    if data["policy"].get("unverifiable_text") == "block":
        data["policy"]["unverifiable_text"] = "flag"
    return Config(data=data, source=config.source)

