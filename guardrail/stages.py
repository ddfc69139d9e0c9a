"""The stage contract: what a guard stage is, what it sees and what it returns.

A stage sits in one slot of the guard's fixed order::

    input_policy -> generate -> output_checks -> watermark -> encode -> self_check
                 -> provenance -> record

and implements :meth:`Stage.run`, which reads the per-call :class:`StageContext` and returns
a :class:`StageOutcome` (passed or not, why, details, maybe a new artifact and files that
travel with the output), or raises :class:`StageSkipped` when it cannot run here.

Stages hand results to later stages through the context's typed :class:`Evidence`: the
watermark stage records the mark it embedded (:class:`WatermarkEvidence`), which the
self-check verifies and the provenance stage names in the manifest; the detector stage
records its scores; the provenance stage records what it signed
(:class:`ProvenanceEvidence`). The evidence is stored in the report as
``report.extra["evidence"]``.

Examples
--------
>>> from guardrail.stages import Stage, StageOutcome
>>> class NoDigits(Stage):
...     slot = "output_checks"
...     def run(self, ctx):
...         ok = not any(ch.isdigit() for ch in str(ctx.artifact.content))
...         return StageOutcome(passed=ok, reason=None if ok else "digits in output")
>>> NoDigits(on_fail="flag").name
'NoDigits'
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._generator import GenerationHooks
from ._types import (
    Artifact,
    DetectorResult,
    Modality,
    ProvenanceState,
    StageRecord,
    _frozen_mapping,
)
from .config import ON_FAIL_POLICIES, Config
from .errors import PromptError
from .media import encode

__all__ = [
    "CONFIGURABLE_SLOTS",
    "SLOTS",
    "EncodeStage",
    "Evidence",
    "NotApplicable",
    "OnFail",
    "OutputTermCheck",
    "PromptPolicy",
    "ProvenanceEvidence",
    "Stage",
    "StageContext",
    "StageOutcome",
    "StageSkipped",
    "WatermarkEvidence",
    "check_policy",
]


class OnFail(enum.StrEnum):
    """What a slot does when its check fails or cannot run."""

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
#: Slots that take stages (the others are run by the guard itself).
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


# -- evidence -----------------------------------------------------------------------------
@dataclass(frozen=True)
class WatermarkEvidence:
    """The watermark embedded in this output (never the key).

    Parameters
    ----------
    scheme, version : str
        The scheme's registry name and version.
    fpr : float
        The false-positive rate its detection is decided at.
    key_id : str or None
        Public id of the key (a hash), to find the key that detects it.
    payload : str or None
        The watermark id embedded (hex); ``None`` for a text mark applied while decoding,
        which carries no id.
    settings : mapping
        Further parameters that detection needs (a text scheme's tokenizer, context width...).
    """

    scheme: str
    version: str
    fpr: float
    key_id: str | None = None
    payload: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", _frozen_mapping(self.settings))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the report: the settings at the top level."""
        return {"scheme": self.scheme, "version": self.version, "key_id": self.key_id,
                "fpr": self.fpr, **self.settings, "payload": self.payload}


@dataclass(frozen=True)
class ProvenanceEvidence:
    """The Content Credentials the output was signed with, as verified right after signing.

    Parameters
    ----------
    state : ProvenanceState
        The verification of the signed bytes (``TRUSTED`` or ``VALID_UNTRUSTED``).
    media_type : str
        The signed media type.
    signer : str or None
        Subject of the signing certificate.
    manifest : str or None
        Label of the active manifest.
    manifest_summary : mapping
        The verified manifest, summarised.
    ai_generated : bool or None
        Whether the manifest declares the content AI-generated.
    failures : tuple of str
        Verification failure codes (none when trusted).
    bytes_added : int
        Size of the credentials (for a text sidecar: the sidecar's size).
    sign_ms, verify_ms : float
        Durations of signing and of the verification.
    text_mode : str or None
        For text: ``embedded`` or ``sidecar``.
    """

    state: ProvenanceState
    media_type: str
    signer: str | None = None
    manifest: str | None = None
    manifest_summary: Mapping[str, Any] = field(default_factory=dict)
    ai_generated: bool | None = None
    failures: tuple[str, ...] = ()
    bytes_added: int = 0
    sign_ms: float = 0.0
    verify_ms: float = 0.0
    text_mode: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "manifest_summary", _frozen_mapping(self.manifest_summary))
        object.__setattr__(self, "failures", tuple(self.failures))

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the report (``text_mode`` only for text)."""
        out: dict[str, Any] = {"media_type": self.media_type, "signer": self.signer}
        if self.text_mode is not None:
            out["text_mode"] = self.text_mode
        out.update(sign_ms=self.sign_ms, verify_ms=self.verify_ms, state=self.state.value,
                   failures=list(self.failures), manifest=self.manifest,
                   ai_generated=self.ai_generated, bytes_added=self.bytes_added,
                   manifest_summary=dict(self.manifest_summary))
        return out


@dataclass
class Evidence:
    """What the stages of one call found, handed from stage to stage and stored in the
    report (``report.extra["evidence"]``).

    Parameters
    ----------
    detectors : tuple of DetectorResult
        Synthetic-media detector scores of the output (the detector stage).
    watermark : WatermarkEvidence or None
        The mark embedded (the watermark stage); ``None``: no mark was embedded.
    provenance : ProvenanceEvidence or None
        The credentials the output was signed with (the provenance stage).
    extra : dict
        Evidence of other stages, by name; stored next to the fields above, which take
        precedence over an entry of the same name.
    """

    detectors: tuple[DetectorResult, ...] = ()
    watermark: WatermarkEvidence | None = None
    provenance: ProvenanceEvidence | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in the report; only what some stage recorded."""
        out = dict(self.extra)
        if self.detectors:
            out["detectors"] = [dataclasses.asdict(r) for r in self.detectors]
        if self.watermark is not None:
            out["watermark"] = self.watermark.to_dict()
        if self.provenance is not None:
            out["provenance"] = self.provenance.to_dict()
        return out


# -- the contract -------------------------------------------------------------------------
def _check_files(files: Mapping[str, bytes]) -> None:
    for suffix, data in files.items():
        if (not isinstance(suffix, str) or not suffix.startswith(".") or len(suffix) < 2
                or Path(suffix).name != suffix or suffix.count(".") != 1):
            raise ValueError(f"a file of a stage outcome is named by a suffix such as '.c2pa', "
                             f"got {suffix!r}")
        if not isinstance(data, bytes):
            raise TypeError(f"the file {suffix!r} of a stage outcome must be bytes, "
                            f"got {type(data).__name__}")


@dataclass(frozen=True)
class StageOutcome:
    """What a stage returns: passed or not, why, details, and maybe a new artifact.

    Parameters
    ----------
    passed : bool
        Whether the check passed.
    reason : str or None
        Why it did not pass (shown in the report).
    details : mapping
        JSON-friendly details, recorded with the stage.
    artifact : Artifact or None
        Replaces the call's artifact (a watermarked or signed output).
    policy : {"block", "flag", "continue"} or None
        Overrides the slot's on-fail policy for this outcome.
    files : mapping of str to bytes
        Files that travel with the output, by suffix (``{".c2pa": manifest}``): the guard
        writes each atomically next to the output file, as the output path with its suffix
        replaced (``out.txt`` -> ``out.c2pa``), and hands them back in
        :attr:`GuardResult.files <guardrail.guard.GuardResult.files>`.
    """

    passed: bool = True
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    artifact: Artifact | None = None
    policy: str | None = None
    files: Mapping[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_policy(self.policy, "policy")
        _check_files(self.files)
        object.__setattr__(self, "details", _frozen_mapping(self.details))
        object.__setattr__(self, "files", _frozen_mapping(self.files))


@dataclass
class StageContext:
    """Per-call state handed to every stage.

    Stages read it and record what they found in ``evidence``; everything else is set by
    the guard. ``artifact`` is ``None`` before generation; ``records`` holds the records of
    the stages that ran before the current one.
    """

    report_id: str
    prompt: str
    modality: Modality
    config: Config
    media_type: str
    output_path: Path | None = None
    artifact: Artifact | None = None
    evidence: Evidence = field(default_factory=Evidence)
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
    #: why the stage cannot run for any request here (a stand-in built without its key file
    #: or package), or ``None``; :meth:`guardrail.Guard.preflight` reports it before generating
    unavailable: str | None = None

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
        """Whether the stage runs for outputs of ``modality``."""
        return modality in self.modalities

    def before_generate(self, ctx: StageContext) -> GenerationHooks | None:
        """Optional: hooks for the generator (e.g. a text watermarking config)."""
        return None

    def run(self, ctx: StageContext) -> StageOutcome:  # pragma: no cover - abstract
        """Check or process ``ctx.artifact``; raise :class:`StageSkipped` if it cannot."""
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
        """The policy of ``[policy]``: prompt limits and blocked terms."""
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
        """The artifact with ``data`` set to its encoding as ``ctx.media_type``."""
        assert ctx.artifact is not None  # guaranteed by the guard's order
        data = encode(ctx.artifact, ctx.media_type)
        art = ctx.artifact.evolve(data=data, media_type=ctx.media_type)
        return StageOutcome(artifact=art, details={"media_type": ctx.media_type, "bytes": len(data)})
