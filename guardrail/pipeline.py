"""The guard: an ordered list of stages run on every generation.

Order (fixed)::

    input_policy -> generate -> output_checks -> watermark -> encode -> self_check
                 -> provenance -> record

Every slot appears in every report. A slot with no configured stage is recorded as
``skipped`` ("not configured"); a configured stage that cannot run raises
:class:`StageSkipped` and is recorded as ``skipped`` with its reason - never as passed.

On-fail policies (per slot, from the config or per stage):

* ``block``: a failed check, a stage that could not run, or a stage error withholds the
  output (report status ``blocked``; ``error`` for a stage error, which also raises
  :class:`~guardrail.errors.StageError`).
* ``flag``: the output is released and the report is marked ``flagged``.
* ``continue``: the outcome is recorded (status ``failed``/``skipped``/``error``) and the
  report status is unchanged.

Bad requests (:class:`~guardrail.errors.InputError`), generator failures, encoding and
output errors are fatal whatever the policy: the report is recorded with status
``error`` and the error is raised with ``report_id`` set.

Examples
--------
>>> from guardrail.testing import EchoTextGenerator
>>> from guardrail.store import ReportStore
>>> guard = Guard(EchoTextGenerator(), store=ReportStore("sqlite://"))
>>> result = guard.generate("hello")
>>> result.status, result.artifact.content
('ok', 'echo: hello')
"""

from __future__ import annotations

import enum
import logging
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ._generator import Generated, GenerationHooks, Generator
from ._types import (
    Artifact,
    GenerationMetadata,
    Modality,
    Report,
    StageRecord,
    StageStatus,
    _frozen_mapping,
    _jsonable,
)
from .config import ON_FAIL_POLICIES, Config
from .errors import (
    GenerationError,
    GuardrailError,
    InputError,
    OutputError,
    PromptError,
    StageError,
    StoreError,
)
from .keys import PromptHasher
from .media import (
    DEFAULT_MEDIA_TYPE,
    atomic_write,
    check_output_path,
    encode,
    media_type_for_path,
)
from .store import ReportStore

__all__ = [
    "EncodeStage",
    "Guard",
    "GuardResult",
    "NotApplicable",
    "OnFail",
    "OutputTermCheck",
    "PromptPolicy",
    "SLOTS",
    "Stage",
    "StageContext",
    "StageOutcome",
    "StageSkipped",
]

log = logging.getLogger(__name__)


class OnFail(enum.StrEnum):
    BLOCK = "block"
    FLAG = "flag"
    CONTINUE = "continue"


SLOTS = (
    "input_policy",
    "generate",
    "output_checks",
    "watermark",
    "encode",
    "self_check",
    "provenance",
    "record",
)
#: Slots whose stages are supplied by the user / later capabilities.
CONFIGURABLE_SLOTS = ("input_policy", "output_checks", "watermark", "self_check", "provenance")


def check_policy(value: str | None, what: str) -> None:
    """ValueError unless ``value`` is None or one of the on-fail policies."""
    if value is not None and value not in ON_FAIL_POLICIES:
        raise ValueError(f"{what} must be one of {ON_FAIL_POLICIES}, got {value!r}")


class StageSkipped(Exception):
    """Raised by a stage that cannot run here (missing key, unsupported input, ...)."""

    def __init__(self, reason: str, *, policy: str | None = None, **details: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        check_policy(policy, "policy")
        self.policy = policy  # overrides the slot's on-fail policy for this case
        self.details = details


class NotApplicable(StageSkipped):
    """Raised by a stage with nothing to do for this call because of an earlier stage's
    outcome (e.g. a self-check when no mark was embedded). Recorded as ``skipped``; the
    policy is *not* applied again - the earlier stage's record already carries it."""


@dataclass(frozen=True)
class StageOutcome:
    """What a stage returns: passed or not, why, details, and maybe a new artifact."""

    passed: bool = True
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    artifact: Artifact | None = None
    policy: str | None = None  # overrides the slot's on-fail policy for this outcome

    def __post_init__(self) -> None:
        check_policy(self.policy, "policy")
        object.__setattr__(self, "details", _frozen_mapping(self.details))


@dataclass
class StageContext:
    """Per-call state handed to every stage (stages read it; only the guard changes it).

    ``evidence`` carries results between stages (e.g. the watermark id that the
    provenance stage names); ``artifact`` is ``None`` before generation.
    """

    report_id: str
    prompt: str
    modality: Modality
    config: Config
    media_type: str
    output_path: Path | None = None
    artifact: Artifact | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    #: the records of the stages that ran before the current one (set by the guard)
    records: tuple[StageRecord, ...] = ()


class Stage:
    """Base class of a stage. Subclasses set ``slot`` and implement :meth:`run`.

    Parameters
    ----------
    on_fail : {"block", "flag", "continue"}, optional
        Overrides the slot's policy from the config.
    modalities : iterable of Modality, optional
        The modalities this stage applies to (default: all).
    """

    slot: str = "output_checks"
    name: str = ""

    def __init__(self, *, on_fail: str | None = None,
                 modalities: Iterable[Modality | str] | None = None) -> None:
        check_policy(on_fail, "on_fail")
        if self.slot not in CONFIGURABLE_SLOTS:
            raise ValueError(f"stage slot must be one of {CONFIGURABLE_SLOTS}, got {self.slot!r}")
        self.on_fail = on_fail
        self.modalities = (
            frozenset(Modality.parse(m) for m in modalities) if modalities is not None
            else frozenset(Modality))
        if not self.name:
            self.name = type(self).__name__

    def applies_to(self, modality: Modality) -> bool:
        return modality in self.modalities

    def before_generate(self, ctx: StageContext) -> GenerationHooks | None:
        """Optional: hooks for the generator (e.g. a text watermarking config)."""
        return None

    def run(self, ctx: StageContext) -> StageOutcome:  # pragma: no cover - abstract
        raise NotImplementedError


# -- built-in stages ----------------------------------------------------------------------
class PromptPolicy(Stage):
    """Input policy: prompt length limits (errors) and an operator block list (policy)."""

    slot = "input_policy"
    name = "prompt_policy"

    def __init__(self, *, min_chars: int = 1, max_chars: int = 2000,
                 blocked_terms: Sequence[str] = (), on_fail: str | None = None) -> None:
        super().__init__(on_fail=on_fail)
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.blocked_terms = tuple(t.lower() for t in blocked_terms if t.strip())

    @classmethod
    def from_config(cls, config: Config) -> PromptPolicy:
        pol = config.policy
        return cls(min_chars=pol["min_prompt_chars"], max_chars=pol["max_prompt_chars"],
                   blocked_terms=pol["blocked_terms"])

    def run(self, ctx: StageContext) -> StageOutcome:
        text = ctx.prompt
        if not text.strip():
            raise PromptError("the prompt is empty")
        n = len(text)
        if n < self.min_chars:
            raise PromptError(f"the prompt has {n} characters; the minimum is {self.min_chars}")
        if n > self.max_chars:
            raise PromptError(
                f"the prompt has {n} characters; the limit is {self.max_chars} "
                "(policy.max_prompt_chars)")
        low = text.lower()
        hits = [t for t in self.blocked_terms if t in low]
        if hits:
            return StageOutcome(passed=False, reason=f"prompt contains {len(hits)} blocked term(s)",
                                details={"matches": len(hits)})
        return StageOutcome(details={"chars": n})


class OutputTermCheck(Stage):
    """Output check for text: the operator block list applied to generated text."""

    slot = "output_checks"
    name = "output_terms"

    def __init__(self, *, blocked_terms: Sequence[str], on_fail: str | None = None) -> None:
        super().__init__(on_fail=on_fail, modalities=[Modality.TEXT])
        self.blocked_terms = tuple(t.lower() for t in blocked_terms if t.strip())

    def run(self, ctx: StageContext) -> StageOutcome:
        if not self.blocked_terms:
            raise StageSkipped("no blocked terms configured (policy.blocked_terms)")
        low = str(ctx.artifact.content).lower() if ctx.artifact else ""
        hits = [t for t in self.blocked_terms if t in low]
        if hits:
            return StageOutcome(passed=False, reason=f"output contains {len(hits)} blocked term(s)",
                                details={"matches": len(hits)})
        return StageOutcome()


class EncodeStage:
    """Encodes the artifact to file bytes of the requested media type (always runs)."""

    name = "encode"

    def run(self, ctx: StageContext) -> StageOutcome:
        assert ctx.artifact is not None  # guaranteed by the guard's order
        data = encode(ctx.artifact, ctx.media_type)
        art = ctx.artifact.evolve(data=data, media_type=ctx.media_type)
        return StageOutcome(artifact=art, details={"media_type": ctx.media_type, "bytes": len(data)})


# -- results ------------------------------------------------------------------------------
@dataclass(frozen=True)
class GuardResult:
    """The outcome of one guarded generation.

    ``artifact`` is ``None`` when the output was blocked; ``output`` is the written file
    (``None`` when no output path was given or the output was withheld).
    """

    report: Report
    artifact: Artifact | None
    output: Path | None = None

    @property
    def status(self) -> str:
        return self.report.status

    @property
    def report_id(self) -> str:
        return self.report.report_id

    @property
    def released(self) -> bool:
        return self.artifact is not None and self.report.status in ("ok", "flagged")


@dataclass
class _Call:
    """Mutable bookkeeping for one prompt while it goes through the guard."""

    ctx: StageContext
    records: list[StageRecord] = field(default_factory=list)
    status: str = "ok"
    error: GuardrailError | None = None
    stop: bool = False
    generated: Generated | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, status: StageStatus, ms: float, reason: str | None = None,
            details: Mapping[str, Any] | None = None) -> None:
        self.records.append(StageRecord(stage=stage, status=status, duration_ms=ms,
                                        reason=reason, details=details or {}))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


class Guard:
    """Runs every generation through the configured stages and records a report.

    Parameters
    ----------
    generator : Generator
        Any object implementing :class:`guardrail.Generator`.
    store : ReportStore, optional
        Where reports go. Default: the store named by ``config`` (SQLite by default).
    config : Config, optional
        Policies, limits, paths. Default: :meth:`Config.load`.
    stages : sequence of Stage, optional
        Extra stages (output checks, watermark, self-check, provenance); they run in
        slot order, and in the given order within a slot.
    input_policy : Stage, optional
        Replaces the default :class:`PromptPolicy` built from the config.
    prompt_hasher : PromptHasher, optional
        Default: keyed with ``<keys_dir>/prompt-hash.key`` (created 0600 if missing).

    Examples
    --------
    >>> from guardrail import Guard, load_generator          # doctest: +SKIP
    >>> guard = Guard(load_generator("text"))                  # doctest: +SKIP
    >>> res = guard.generate("Write a haiku", output="haiku.txt")  # doctest: +SKIP
    >>> res.status, res.report_id                              # doctest: +SKIP
    """

    def __init__(
        self,
        generator: Generator,
        *,
        store: ReportStore | None = None,
        config: Config | None = None,
        stages: Sequence[Stage] = (),
        input_policy: Stage | None = None,
        prompt_hasher: PromptHasher | None = None,
    ) -> None:
        if not isinstance(generator, Generator):
            raise TypeError("generator must implement guardrail.Generator "
                            "(modality, info and generate())")
        self.generator = generator
        self.modality = Modality.parse(generator.modality)
        self.config = config or Config.load()
        self._owns_store = store is None
        self.store = store if store is not None else ReportStore(self.config.store_url)
        self.prompt_hasher = prompt_hasher or PromptHasher.from_keys_dir(self.config.keys_dir)
        default_checks: list[Stage] = []
        terms = self.config.policy["blocked_terms"]
        if terms:
            default_checks.append(OutputTermCheck(blocked_terms=terms))
        self.stages: dict[str, list[Stage]] = {slot: [] for slot in CONFIGURABLE_SLOTS}
        self.stages["input_policy"].append(input_policy or PromptPolicy.from_config(self.config))
        for stage in [*default_checks, *stages]:
            if stage.slot not in self.stages:
                raise ValueError(f"stage {stage.name!r} has unknown slot {stage.slot!r}")
            self.stages[stage.slot].append(stage)
        self._encoder = EncodeStage()

    # -- context manager ------------------------------------------------------------------
    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- public API -----------------------------------------------------------------------
    def generate(
        self,
        prompt: str,
        *,
        output: str | os.PathLike[str] | None = None,
        seed: int | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> GuardResult:
        """Generate one output through every stage and record its report.

        Returns a :class:`GuardResult` (status ``ok``, ``flagged`` or ``blocked``).

        Raises
        ------
        InputError, GenerationError, OutputError, StageError, StoreError
            After recording a report with status ``error`` (``report_id`` is set on the
            exception).
        """
        return self.generate_batch([prompt], outputs=[output] if output is not None else None,
                                   seed=seed, params=params)[0]

    def generate_batch(
        self,
        prompts: Sequence[str],
        *,
        outputs: Sequence[str | os.PathLike[str] | None] | None = None,
        seed: int | None = None,
        params: Mapping[str, Any] | None = None,
        raise_errors: bool = True,
    ) -> list[GuardResult]:
        """Generate many outputs with one generator call; one report per prompt.

        With ``raise_errors=False`` a failed prompt does not stop the batch: its result has
        status ``error`` (its report says why) and the others go on.
        """
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not a single string")
        if outputs is not None and len(outputs) != len(prompts):
            raise ValueError("outputs must have one entry per prompt")
        calls = [self._new_call(p, outputs[i] if outputs else None) for i, p in enumerate(prompts)]
        for call in calls:
            if not call.stop:  # a bad output path already stopped it at input_policy
                self._run_slot(call, "input_policy")
        results = self._finish(calls, seed=seed, params=params or {})
        if raise_errors:
            for call in calls:
                if call.error is not None:
                    raise call.error
        return results

    def preflight(self, prompt: str, *,
                  output: str | os.PathLike[str] | None = None) -> GuardResult | None:
        """Check a request (output path, input policy) without generating.

        Returns ``None`` if the request would go ahead (nothing is recorded). If the request
        is stopped, its report is recorded and returned (status ``blocked``), or the error is
        raised (status ``error``). Use it to reject bad requests before loading a model.
        """
        call = self._new_call(prompt, output)
        if not call.stop:
            self._run_slot(call, "input_policy")
        if not call.stop:
            return None
        result = self._finish([call], seed=None, params={})[0]
        if call.error is not None:
            raise call.error
        return result

    def _finish(self, calls: list[_Call], *, seed: int | None,
                params: Mapping[str, Any]) -> list[GuardResult]:
        live = [c for c in calls if not c.stop]
        if live:
            self._generate(live, seed=seed, params=params)
        live_ids = {id(c) for c in live}
        for call in calls:
            if id(call) not in live_ids:
                call.add("generate", StageStatus.SKIPPED, 0.0,
                         "not run: the request was stopped earlier")
        for call in calls:
            for slot in ("output_checks", "watermark"):
                self._run_slot(call, slot)
            self._run_encode(call)
            for slot in ("self_check", "provenance"):
                self._run_slot(call, slot)
        return [self._record(call) for call in calls]

    # -- steps ----------------------------------------------------------------------------
    def _new_call(self, prompt: str, output: str | os.PathLike[str] | None) -> _Call:
        if not isinstance(prompt, str):
            prompt = "" if prompt is None else str(prompt)
        ctx = StageContext(report_id=uuid.uuid4().hex, prompt=prompt, modality=self.modality,
                           config=self.config, media_type=DEFAULT_MEDIA_TYPE[self.modality])
        call = _Call(ctx=ctx)
        if output is not None:
            try:
                ctx.output_path = check_output_path(output)
                ctx.media_type = media_type_for_path(output, self.modality)
            except GuardrailError as exc:
                ctx.output_path = Path(output).expanduser().absolute()
                self._fail(call, "input_policy", 0.0, exc)
        return call

    def _fail(self, call: _Call, stage: str, ms: float, exc: GuardrailError) -> None:
        call.add(stage, StageStatus.ERROR, ms, str(exc))
        call.status = "error"
        call.error = exc
        call.stop = True

    def _policy(self, stage: Stage | None, slot: str) -> OnFail:
        value = (stage.on_fail if stage is not None else None) or self.config.on_fail(slot)
        return OnFail(value)

    def _run_slot(self, call: _Call, slot: str) -> None:
        if call.stop:
            call.add(slot, StageStatus.SKIPPED, 0.0, "not run: the request was stopped earlier")
            return
        stages = [s for s in self.stages[slot] if s.applies_to(self.modality)]
        if not stages:
            call.add(slot, StageStatus.SKIPPED, 0.0, f"not configured for {self.modality.value}")
            return
        for stage in stages:
            if call.stop:
                break
            self._run_stage(call, slot, stage)

    def _run_stage(self, call: _Call, slot: str, stage: Stage) -> None:
        policy = self._policy(stage, slot)
        details = {"name": stage.name, "policy": policy.value}
        call.ctx.records = tuple(call.records)
        t0 = time.perf_counter()
        try:
            outcome = stage.run(call.ctx)
        except StageSkipped as skip:
            ms = _ms(t0)
            reason = f"{stage.name}: could not run: {skip.reason}"
            policy = self._override(policy, skip.policy, details)
            call.add(slot, StageStatus.SKIPPED, ms, reason, {**details, **skip.details})
            if not isinstance(skip, NotApplicable):
                self._apply_policy(call, policy, reason, on_block="blocked")
            return
        except InputError as exc:
            self._fail(call, slot, _ms(t0), exc)
            return
        except Exception as exc:  # noqa: BLE001
            ms = _ms(t0)
            reason = f"{stage.name}: {type(exc).__name__}: {exc}"
            log.warning("stage %s raised: %s", stage.name, reason)
            call.add(slot, StageStatus.ERROR, ms, reason, details)
            if policy is OnFail.BLOCK:
                call.status = "error"
                call.stop = True
                call.error = StageError(f"stage {stage.name!r} failed and its policy is block: {exc}")
            elif policy is OnFail.FLAG and call.status == "ok":
                call.status = "flagged"
            return
        ms = _ms(t0)
        details.update(outcome.details)
        if outcome.artifact is not None:
            call.ctx.artifact = outcome.artifact
        if outcome.passed:
            call.add(slot, StageStatus.OK, ms, outcome.reason, details)
            return
        reason = f"{stage.name}: {outcome.reason or 'check failed'}"
        policy = self._override(policy, outcome.policy, details)
        status = {OnFail.BLOCK: StageStatus.BLOCKED, OnFail.FLAG: StageStatus.FLAGGED,
                  OnFail.CONTINUE: StageStatus.FAILED}[policy]
        call.add(slot, status, ms, reason, details)
        self._apply_policy(call, policy, reason, on_block="blocked")

    @staticmethod
    def _override(policy: OnFail, value: str | None, details: dict[str, Any]) -> OnFail:
        """The policy a stage's outcome names for itself, else the slot's (recorded)."""
        if value is None:
            return policy
        details["policy"] = value
        return OnFail(value)

    @staticmethod
    def _apply_policy(call: _Call, policy: OnFail, reason: str, *, on_block: str) -> None:
        if policy is OnFail.BLOCK:
            call.status = on_block
            call.stop = True
        elif policy is OnFail.FLAG and call.status == "ok":
            call.status = "flagged"

    def _generate(self, calls: list[_Call], *, seed: int | None, params: Mapping[str, Any]) -> None:
        hooks = self._collect_hooks(calls[0])
        prompts = [c.ctx.prompt for c in calls]
        t0 = time.perf_counter()
        error: GuardrailError | None = None
        outs: list[Generated] = []
        try:
            outs = list(self.generator.generate(prompts, seed=seed, params=params, hooks=hooks))
            if len(outs) != len(prompts):
                error = GenerationError(
                    f"generator {self.generator.info.model_id!r} returned {len(outs)} outputs "
                    f"for {len(prompts)} prompts")
        except GuardrailError as exc:
            error = exc if isinstance(exc, GenerationError) else GenerationError(str(exc))
        except Exception as exc:  # noqa: BLE001
            error = GenerationError(
                f"generator {self.generator.info.model_id!r} raised {type(exc).__name__}: {exc}")
        ms = _ms(t0)
        per_item = ms / len(calls)
        for i, call in enumerate(calls):
            call.timings["generate"] = per_item
            if error is not None:
                self._fail(call, "generate", per_item, error)
                continue
            gen = outs[i]
            problem = _empty_reason(gen, self.modality)
            if problem:
                self._fail(call, "generate", per_item, GenerationError(
                    f"generator {self.generator.info.model_id!r} {problem} for prompt {i}"))
                continue
            call.generated = gen
            call.ctx.artifact = self._artifact(call, gen, seed)
            call.add("generate", StageStatus.OK, per_item, None,
                     {"model_id": self.generator.info.model_id, "batch_size": len(calls)})

    def _collect_hooks(self, call: _Call) -> GenerationHooks | None:
        merged = GenerationHooks()
        found = False
        for slot in CONFIGURABLE_SLOTS:
            for stage in self.stages[slot]:
                if not stage.applies_to(self.modality):
                    continue
                hooks = stage.before_generate(call.ctx)
                if hooks is None:
                    continue
                found = True
                merged = GenerationHooks(
                    watermarking_config=hooks.watermarking_config or merged.watermarking_config,
                    logits_processors=(*merged.logits_processors, *hooks.logits_processors))
        return merged if found else None

    def _artifact(self, call: _Call, gen: Generated, seed: int | None) -> Artifact:
        info = self.generator.info
        md = GenerationMetadata(
            model_id=info.model_id, model_revision=info.revision,
            prompt_hash=self.prompt_hasher(call.ctx.prompt),
            parameters=gen.parameters, seed=gen.parameters.get("seed", seed),
            device=info.device, timings_ms={"generate": round(call.timings["generate"], 3)})
        content = gen.content
        if self.modality is not Modality.TEXT:
            content = np.asarray(content)
        return Artifact(modality=self.modality, content=content, metadata=md,
                        sample_rate=gen.sample_rate)

    def _run_encode(self, call: _Call) -> None:
        if call.stop:
            call.add("encode", StageStatus.SKIPPED, 0.0, "not run: the request was stopped earlier")
            return
        t0 = time.perf_counter()
        try:
            outcome = self._encoder.run(call.ctx)
        except GuardrailError as exc:
            self._fail(call, "encode", _ms(t0), exc)
            return
        call.ctx.artifact = outcome.artifact
        call.add("encode", StageStatus.OK, _ms(t0), None, outcome.details)

    def _record(self, call: _Call) -> GuardResult:
        ctx = call.ctx
        art = ctx.artifact
        released = call.status in ("ok", "flagged") and art is not None and art.data is not None
        written: Path | None = None
        t0 = time.perf_counter()
        record_status, record_reason = StageStatus.OK, None
        if released and ctx.output_path is not None:
            try:
                written = atomic_write(ctx.output_path, art.data)
                sidecar = (ctx.evidence.get("provenance") or {}).get("sidecar_c2pa_base64")
                if sidecar:  # text signed in sidecar mode: <output>.c2pa travels with it
                    import base64

                    from .provenance.text import write_sidecar

                    write_sidecar(written, base64.b64decode(sidecar))
            except OutputError as exc:
                record_status, record_reason = StageStatus.ERROR, str(exc)
                call.status, call.error, released = "error", exc, False
        if art is not None:
            md = art.metadata
        else:
            md = GenerationMetadata(model_id=self.generator.info.model_id,
                                    model_revision=self.generator.info.revision,
                                    prompt_hash=self.prompt_hasher(ctx.prompt),
                                    device=self.generator.info.device, timings_ms=call.timings)
        stages = [*call.records, StageRecord(
            stage="record", status=record_status, duration_ms=_ms(t0), reason=record_reason,
            details={"store": self.store.engine.dialect.name})]
        report = Report(
            report_id=ctx.report_id,
            created_at=_now(),
            modality=self.modality,
            status=call.status,
            metadata=md,
            stages=tuple(stages),
            content_hash=art.content_hash if art is not None and art.data is not None else None,
            media_type=art.media_type if art is not None else None,
            output=str(written) if written else None,
            prompt=ctx.prompt if self.config.store_prompts else None,
            error=str(call.error) if call.error else None,
            extra=_extra(ctx, art if released else None),
        )
        try:
            self.store.save(report)
        except StoreError as exc:
            if written is not None:
                written.unlink(missing_ok=True)  # never release an output that was not recorded
            if call.error is not None:
                exc.__cause__ = call.error
            raise
        if call.error is not None:
            call.error.report_id = report.report_id
        return GuardResult(report=report, artifact=art if released else None, output=written)


def _empty_reason(gen: Generated, modality: Modality) -> str | None:
    if not isinstance(gen, Generated):
        return "returned nothing" if gen is None else f"returned {type(gen).__name__}, not Generated"
    content = gen.content
    if content is None:
        return "returned nothing"
    if modality is Modality.TEXT:
        if not isinstance(content, str):
            return f"returned {type(content).__name__} instead of text"
        return "returned empty text" if not content.strip() else None
    arr = np.asarray(content)
    if arr.size == 0:
        return "returned an empty array"
    if modality is Modality.AUDIO and not gen.sample_rate:
        return "returned audio without a sample rate"
    if not np.all(np.isfinite(arr.astype(np.float64, copy=False))):
        return "returned non-finite values"
    return None


def _extra(ctx: StageContext, art: Artifact | None) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if ctx.evidence:
        extra["evidence"] = _jsonable(ctx.evidence)
    if art is not None:
        from .fingerprint import fingerprint

        try:
            extra["fingerprint"] = fingerprint(art)
        except Exception as exc:  # noqa: BLE001 - a fingerprint is an aid, never a blocker
            log.warning("cannot fingerprint the output: %s", exc)
    return extra


def record_failure(
    store: ReportStore,
    config: Config,
    *,
    error: GuardrailError,
    stage: str,
    prompt: str,
    modality: Modality | None,
    model_id: str,
    requested_modality: str | None = None,
    passed: Sequence[str] = (),
    prompt_hasher: PromptHasher | None = None,
) -> Report:
    """Record a request that failed before a guard could run it (unknown modality, a model
    that cannot be loaded). Every slot is in the report: ``stage`` as ``error``, the slots
    named in ``passed`` as ``ok`` (they ran and passed), the rest ``skipped``. Sets
    ``error.report_id``.
    """
    hasher = prompt_hasher or PromptHasher.from_keys_dir(config.keys_dir)
    records = []
    for slot in SLOTS:
        if slot == stage:
            records.append(StageRecord(stage=slot, status=StageStatus.ERROR, reason=str(error)))
        elif slot in passed:
            records.append(StageRecord(stage=slot, status=StageStatus.OK))
        else:
            records.append(StageRecord(stage=slot, status=StageStatus.SKIPPED,
                                       reason=f"not run: the request failed at {stage}"))
    report = Report(
        report_id=uuid.uuid4().hex,
        created_at=_now(),
        modality=modality,
        status="error",
        metadata=GenerationMetadata(model_id=model_id, prompt_hash=hasher(prompt or "")),
        stages=tuple(records),
        prompt=prompt if config.store_prompts else None,
        error=str(error),
        extra={"requested_modality": requested_modality} if requested_modality else {},
    )
    store.save(report)
    error.report_id = report.report_id
    return report
