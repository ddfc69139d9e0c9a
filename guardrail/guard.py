"""The guard: runs every generation through the protective stages and records a report.

Order (fixed)::

    input_policy -> generate -> output_checks -> watermark -> encode -> self_check
                 -> provenance -> record

``Guard(generator)`` is protected by default: without ``stages=`` it runs the stages that
the configuration asks for (:func:`~guardrail.factory.default_stages`: detectors, watermark
and self-check, C2PA signing), as ``guardrail generate`` does; ``extra_stages=`` adds a
caller's own stages to them, and ``stages=`` replaces them (``stages=[]``: none).

Every slot appears in every report. A slot with no stage is recorded as ``skipped`` ("not
configured"); a stage that cannot run is recorded as ``skipped`` with its reason - never as
passed - and its slot's on-fail policy applies: ``block`` withholds the output (status
``blocked``; a stage *error* under ``block`` raises :class:`~guardrail.errors.StageError`),
``flag`` releases it flagged, ``continue`` only records it. Bad requests, generator failures,
encoding and output errors are recorded with status ``error`` and raised with ``report_id``.
An output is released with its report so that it never exists without it (partial files,
report ``pending``, rename, finalise: :mod:`guardrail._release`).

Examples
--------
A generator that cannot carry a watermark (this fake has no tokenizer) is withheld by
default, and the report says why; ``stages=[]`` runs without the protective stages:

>>> import tempfile
>>> from guardrail import Config, ReportStore
>>> from guardrail.testing import EchoTextGenerator
>>> config = Config.load(overrides={"paths": {"data_dir": tempfile.mkdtemp()}})
>>> result = Guard(EchoTextGenerator(), store=ReportStore("sqlite://"), config=config).generate("hi")
>>> result.status, result.artifact
('blocked', None)
>>> print(result.report.stage("watermark").reason)  # doctest: +ELLIPSIS
watermark_unavailable: could not run: watermark unavailable: ...
>>> bare = Guard(EchoTextGenerator(), store=ReportStore("sqlite://"), config=config, stages=[])
>>> result = bare.generate("hi")
>>> result.status, result.artifact.content, result.report.stage("watermark").reason
('ok', 'echo: hi', 'not configured for text')
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._generator import Generated, GenerationHooks, Generator
from ._release import (
    Release,
    check_output,
    now,
    record_failure,
    report_extra,
    save_and_release,
    sweep_once,
)
from ._types import (
    Artifact,
    GenerationMetadata,
    Modality,
    Report,
    StageRecord,
    StageStatus,
    _frozen_mapping,
)
from .config import Config
from .errors import GenerationError, GuardrailError, InputError, OutputError, StageError, StoreError
from .factory import default_stages, generator_from_config
from .keys import PromptHasher
from .media import DEFAULT_MEDIA_TYPE, media_type_for_path
from .stages import (
    CONFIGURABLE_SLOTS,
    EncodeStage,
    NotApplicable,
    OnFail,
    OutputTermCheck,
    PromptPolicy,
    Stage,
    StageContext,
    StageSkipped,
)
from .store import ReportStore

__all__ = ["Guard", "GuardResult", "guard_from_config", "record_failure"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuardResult:
    """The outcome of one guarded generation.

    ``artifact`` is ``None`` when the output was blocked; ``output`` is the written file
    (``None`` when no output path was given or the output was withheld). ``files`` are the
    files that travel with a released output, by suffix (``.c2pa``: the manifest of a text
    signed in sidecar mode), written next to ``output`` with that suffix.
    """

    report: Report
    artifact: Artifact | None
    output: Path | None = None
    files: Mapping[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", _frozen_mapping(self.files))

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
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    #: slots whose stages cannot run here, stopping the call before generation (preflight)
    unavailable: set[str] = field(default_factory=set)

    def add(self, stage: str, status: StageStatus, ms: float, reason: str | None = None,
            details: Mapping[str, Any] | None = None) -> None:
        self.records.append(StageRecord(stage=stage, status=status, duration_ms=ms,
                                        reason=reason, details=details or {}))


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


class Guard:
    """Runs every generation through the protective stages and records a report.

    Parameters
    ----------
    generator : Generator
        Any object implementing :class:`guardrail.Generator`.
    store : ReportStore, optional
        Where reports go. Default: the store named by ``config`` (SQLite by default).
    config : Config, optional
        Policies, limits, paths, keys. Default: :meth:`Config.load`.
    stages : sequence of Stage, optional
        The stages after generation (output checks, watermark, self-check, provenance).
        Default (``None``): the protective stages the configuration asks for,
        :func:`~guardrail.factory.default_stages`; a sequence (even empty) replaces them.
    extra_stages : sequence of Stage, optional
        Stages added to ``stages`` (to the defaults when ``stages`` is not given). Stages
        run in slot order, and in the given order within a slot.
    input_policy : Stage, optional
        Replaces the default :class:`~guardrail.stages.PromptPolicy` built from the config.
    prompt_hasher : PromptHasher, optional
        Default: keyed with ``<keys_dir>/prompt-hash.key`` (created 0600 if missing).

    The configured block list (``[policy] blocked_terms``) is always checked on text
    outputs (:class:`~guardrail.stages.OutputTermCheck`), whatever ``stages`` says. A
    generator that names the ``params`` keys it accepts in a ``parameters`` attribute has
    any other key refused (:class:`~guardrail.errors.InputError`) before it generates.
    """

    def __init__(self, generator: Generator, *, store: ReportStore | None = None,
                 config: Config | None = None, stages: Sequence[Stage] | None = None,
                 extra_stages: Sequence[Stage] = (), input_policy: Stage | None = None,
                 prompt_hasher: PromptHasher | None = None) -> None:
        if not isinstance(generator, Generator):
            raise TypeError("generator must implement guardrail.Generator "
                            "(modality, info and generate())")
        self.generator = generator
        self.modality = Modality.parse(generator.modality)
        self.config = config or Config.load()
        self._owns_store = store is None
        self.store = store if store is not None else ReportStore(self.config.store_url)
        self.prompt_hasher = prompt_hasher or PromptHasher.from_keys_dir(self.config.keys_dir)
        terms = self.config.policy["blocked_terms"]
        checks = [OutputTermCheck(blocked_terms=terms)] if terms else []
        if stages is None:
            stages = default_stages(self.config, generator)
        self.stages: dict[str, list[Stage]] = {slot: [] for slot in CONFIGURABLE_SLOTS}
        self.stages["input_policy"].append(input_policy or PromptPolicy.from_config(self.config))
        for stage in [*checks, *stages, *extra_stages]:
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
    def generate(self, prompt: str, *, output: str | os.PathLike[str] | None = None,
                 seed: int | None = None,
                 params: Mapping[str, Any] | None = None) -> GuardResult:
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

    def generate_batch(self, prompts: Sequence[str], *,
                       outputs: Sequence[str | os.PathLike[str] | None] | None = None,
                       seed: int | None = None, params: Mapping[str, Any] | None = None,
                       raise_errors: bool = True) -> list[GuardResult]:
        """Generate many outputs with one generator call; one report per prompt.

        With ``raise_errors=False`` a failed prompt does not stop the batch: its result has
        status ``error`` (its report says why) and the others go on.
        """
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not a single string")
        if outputs is not None and len(outputs) != len(prompts):
            raise ValueError("outputs must have one entry per prompt")
        calls = [self._new_call(p, outputs[i] if outputs else None) for i, p in enumerate(prompts)]
        bad_params = self._check_params(params or {})
        for call in calls:
            if bad_params is not None and not call.stop:
                self._fail(call, "input_policy", 0.0, bad_params)
            if not call.stop:  # a bad output path already stopped it at input_policy
                self._run_slot(call, "input_policy")
        results = self._finish(calls, seed=seed, params=params or {})
        if raise_errors:
            for call in calls:
                if call.error is not None:
                    raise call.error
        return results

    def preflight(self, prompt: str, *, output: str | os.PathLike[str] | None = None,
                  params: Mapping[str, Any] | None = None) -> GuardResult | None:
        """Check a request without generating: the output path (a file is created and
        removed there), the generation parameters (against the generator's
        ``parameters``, when it names them), the input policy, and the stages that cannot
        run here (:attr:`unavailable`) under a ``block`` policy - the request would be
        withheld after generating.

        Returns ``None`` if the request would go ahead (nothing is recorded). If the request
        is stopped, its report is recorded and returned (status ``blocked``; an unavailable
        stage is recorded as ``skipped`` with its reason, as :meth:`generate` would), or the
        error is raised (status ``error``). Use it to reject bad requests before loading a
        model or spending time on generation.
        """
        call = self._new_call(prompt, output)
        bad_params = self._check_params(params or {})
        if bad_params is not None and not call.stop:
            self._fail(call, "input_policy", 0.0, bad_params)
        if not call.stop:
            self._run_slot(call, "input_policy")
        if not call.stop:
            blocking = {slot for slot, stage in self._unavailable_stages()
                        if self._policy(stage, slot) is OnFail.BLOCK}
            if blocking:
                call.status, call.stop, call.unavailable = "blocked", True, blocking
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
                sweep_once(Path(output).expanduser().absolute().parent)
                ctx.output_path = check_output(output)
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

    def _run_slot(self, call: _Call, slot: str) -> None:
        if call.stop and slot in call.unavailable:  # preflight: record why it cannot run
            for stage in [s for s in self.stages[slot] if s.applies_to(self.modality)
                          and s.unavailable]:
                call.add(slot, StageStatus.SKIPPED, 0.0,
                         f"{stage.name}: could not run: {stage.unavailable}",
                         {"name": stage.name, "policy": self._policy(stage, slot).value})
            return
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

    def _policy(self, stage: Stage, slot: str) -> OnFail:
        return OnFail(stage.on_fail or self.config.on_fail(slot))

    def _unavailable_stages(self) -> list[tuple[str, Stage]]:
        return [(slot, stage) for slot in CONFIGURABLE_SLOTS for stage in self.stages[slot]
                if stage.applies_to(self.modality) and stage.unavailable]

    @property
    def unavailable(self) -> dict[str, str]:
        """The stages that cannot run here, by slot, with the reason (a missing key file or
        package, a generator that cannot carry the watermark). They are recorded as
        ``skipped`` and their policy applies; :meth:`preflight` stops a request that one
        of them would block."""
        out: dict[str, str] = {}
        for slot, stage in self._unavailable_stages():
            out.setdefault(slot, f"{stage.name}: {stage.unavailable}")
        return out

    def _check_params(self, params: Mapping[str, Any]) -> InputError | None:
        """An :class:`InputError` naming the valid keys when ``params`` has a key that the
        generator does not accept (for a generator that names them in ``parameters``)."""
        known = getattr(self.generator, "parameters", None)
        if known is None or not params:
            return None
        unknown = sorted(str(k) for k in params if k not in known)
        if not unknown:
            return None
        return InputError(
            f"unknown generation parameter(s) for {self.generator.info.model_id!r}: "
            f"{', '.join(unknown)}; valid: {', '.join(sorted(known)) or 'none'}")

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
                self._apply_policy(call, policy, on_block="blocked")
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
                call.error = StageError(f"stage {stage.name!r} failed and its policy is block: {exc}")
            self._apply_policy(call, policy, on_block="error")
            return
        ms = _ms(t0)
        details.update(outcome.details)
        if outcome.artifact is not None:
            call.ctx.artifact = outcome.artifact
        call.files.update(outcome.files)
        if outcome.passed:
            call.add(slot, StageStatus.OK, ms, outcome.reason, details)
            return
        reason = f"{stage.name}: {outcome.reason or 'check failed'}"
        policy = self._override(policy, outcome.policy, details)
        status = {OnFail.BLOCK: StageStatus.BLOCKED, OnFail.FLAG: StageStatus.FLAGGED,
                  OnFail.CONTINUE: StageStatus.FAILED}[policy]
        call.add(slot, status, ms, reason, details)
        self._apply_policy(call, policy, on_block="blocked")

    @staticmethod
    def _override(policy: OnFail, value: str | None, details: dict[str, Any]) -> OnFail:
        """The policy a stage's outcome names for itself, else the slot's (recorded)."""
        if value is None:
            return policy
        details["policy"] = value
        return OnFail(value)

    @staticmethod
    def _apply_policy(call: _Call, policy: OnFail, *, on_block: str) -> None:
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
        except GuardrailError as exc:  # a bad request stays one (an invalid parameter value)
            error = exc if isinstance(exc, (GenerationError, InputError)) else GenerationError(
                str(exc))
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
        """Record the call's report and release its output: written to partial files,
        recorded ``pending``, renamed into place, finalised (:mod:`guardrail._release`),
        so that no output ever exists without its report."""
        ctx = call.ctx
        art = ctx.artifact
        released = call.status in ("ok", "flagged") and art is not None and art.data is not None
        release: Release | None = None
        t0 = time.perf_counter()
        record_status, record_reason = StageStatus.OK, None
        if released and ctx.output_path is not None:
            try:
                release = Release.write(ctx.output_path, art.data, call.files)
            except OutputError as exc:
                record_status, record_reason = StageStatus.ERROR, str(exc)
                call.status, call.error, released = "error", exc, False
        info = self.generator.info
        md = art.metadata if art is not None else GenerationMetadata(
            model_id=info.model_id, model_revision=info.revision,
            prompt_hash=self.prompt_hasher(ctx.prompt), device=info.device,
            timings_ms=call.timings)
        stages = [*call.records, StageRecord(
            stage="record", status=record_status, duration_ms=_ms(t0), reason=record_reason,
            details={"store": self.store.engine.dialect.name})]
        report = Report(
            report_id=ctx.report_id, created_at=now(), modality=self.modality,
            status=call.status, metadata=md, stages=tuple(stages),
            content_hash=art.content_hash if art is not None and art.data is not None else None,
            media_type=art.media_type if art is not None else None,
            output=str(release.output) if release else None,
            prompt=ctx.prompt if self.config.store_prompts else None,
            error=str(call.error) if call.error else None,
            extra=report_extra(ctx, art if released else None))
        try:
            report, output_error = save_and_release(self.store, report, release)
        except StoreError as exc:
            if call.error is not None:
                exc.__cause__ = call.error
            raise
        if output_error is not None:
            call.status, call.error, released, release = "error", output_error, False, None
        if call.error is not None:
            call.error.report_id = report.report_id
        return GuardResult(report=report, artifact=art if released else None,
                           output=release.output if release else None,
                           files=call.files if released else {})


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


def guard_from_config(config: Config, modality: Modality | str, *, model: str | None = None,
                      device: str | None = None, store: ReportStore | None = None,
                      stages: Sequence[Stage] | None = None, extra_stages: Sequence[Stage] = (),
                      progress: bool = True) -> Guard:
    """A :class:`Guard` around the configured generator for ``modality`` (what
    ``guardrail generate`` runs); ``model`` and ``device`` override the configuration,
    ``stages`` and ``extra_stages`` are passed to the guard."""
    generator = generator_from_config(config, modality, model=model, device=device,
                                      progress=progress)
    return Guard(generator, store=store, config=config, stages=stages,
                 extra_stages=extra_stages)
