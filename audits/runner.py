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

**Engines.** With ``engine="local"`` (the default) the samples are generated in this process.
With ``engine="ray"`` (``guardrail audit run --engine ray``) :func:`run_samples` sends the
unfinished batches - the same batches, so the same seeds, as in-process - to Ray actors
(:mod:`audits.ray_run`): each actor builds its own guard, generator and scorers once, and
only this process writes the checkpoint and the evaluation, keyed by sample.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guardrail import plugins
from guardrail.config import Config
from guardrail.errors import ConfigError, SuiteError
from guardrail.progress import bar as progress_bar
from guardrail.store import Evaluation

from .context import AuditContext, Process
from .suites import Suite

__all__ = ["AuditContext", "Checkpoint", "finish_audit", "get_runner", "run_audit",
           "run_samples", "start_audit"]


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


ENGINES = ("local", "ray")


def run_audit(suite: Suite, ctx: AuditContext) -> Evaluation:
    """Run ``suite`` with the runner of its kind, on ``ctx.engine``.

    On Ray, a missing Ray fails here (:class:`~guardrail.errors.DependencyError`) before
    the audit is started, and a local Ray instance (no ``ctx.address``) is started once for
    the whole audit and stopped after it.
    """
    runner = get_runner(suite.kind)
    if ctx.engine not in ENGINES:
        raise ConfigError(f"unknown audit engine {ctx.engine!r}; choose one of "
                          f"{', '.join(ENGINES)}")
    if ctx.engine == "local":
        return runner(suite, ctx)
    from .ray_run import ray_session

    if ctx.guard is not None and ctx.guard_factory is None:
        raise ConfigError("a ready guard cannot be sent to Ray actors: pass guard_factory "
                          "(a picklable callable building the guard in each actor) or no "
                          "guard at all")
    if int(ctx.workers) < 1:
        raise ConfigError(f"workers must be at least 1, got {ctx.workers}")
    with ray_session(ctx.address, int(ctx.workers)):
        return runner(suite, ctx)


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
                process: Process | None, *, batch_size: int, desc: str = "audit",
                build: Callable[[AuditContext], Process] | None = None,
                num_gpus: float = 0) -> list[dict[str, Any]]:
    """Process the work items that are not finished yet, ``batch_size`` at a time.

    ``process(batch)`` returns one record per item (with the item's ``key``), failures
    included; each batch's records are checkpointed as it finishes, and the running
    evaluation's progress is updated. Returns every record (old and new) in the order of
    ``work``.

    On ``ctx.engine == "ray"`` the batches go to Ray actors instead
    (:func:`audits.ray_run.map_batches`): ``build`` - picklable, a module-level function or a
    :func:`functools.partial` of one - is called once in each actor with an
    :class:`AuditContext` of its own and returns that actor's ``process``; ``num_gpus`` is
    what each actor declares. ``process`` is not used there (it may be ``None``). The
    batches are the ones this process would run, and only this process writes: a record
    whose sample is already finished (a batch retried after its actor died) is dropped.
    """
    on_ray = ctx.engine == "ray"
    if on_ray and build is None:
        raise ConfigError(f"{desc}: this audit cannot run on Ray (its runner gives no "
                          "per-actor builder)")
    if not on_ray and process is None:
        raise ConfigError(f"{desc}: no process function for the local engine")
    done = started.done
    todo = [w for w in work if w["key"] not in done]
    batches = [list(todo[start:start + batch_size]) for start in range(0, len(todo), batch_size)]
    bar = progress_bar(total=len(work), initial=len(work) - len(todo), desc=desc,
                       unit="sample", show=ctx.progress)
    pending = {w["key"] for w in todo}

    def record(records: list[dict[str, Any]]) -> None:
        fresh = [r for r in records if r["key"] in pending and r["key"] not in done]
        if not fresh:
            return
        started.checkpoint.append(fresh)
        for rec in fresh:
            done[rec["key"]] = rec
        bar.update(len(fresh))
        ev = started.evaluation
        started.evaluation = Evaluation(
            **{**_fields(ev), "summary": {**ev.summary, "samples_done": len(done)}})
        ctx.store.save_evaluation(started.evaluation)

    try:
        if on_ray and batches:
            from .ray_run import map_batches

            map_batches(ctx, build, batches, record, num_gpus=num_gpus, name=desc)
        elif not on_ray:
            for batch in batches:
                record(process(batch))
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

