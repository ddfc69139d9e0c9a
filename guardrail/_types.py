"""Core value types: artifacts, evidence results, stage records and reports.

All of them are frozen dataclasses. Stages never mutate an artifact; they return a
new one with :func:`dataclasses.replace` (see :meth:`Artifact.evolve`).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import ModalityError

__all__ = [
    "Artifact",
    "CheckResult",
    "DetectorResult",
    "GenerationMetadata",
    "Modality",
    "ProvenanceResult",
    "ProvenanceState",
    "Report",
    "StageRecord",
    "StageStatus",
    "WatermarkResult",
]


class Modality(enum.StrEnum):
    """The kind of content an artifact holds."""

    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"

    @classmethod
    def parse(cls, value: str | Modality) -> Modality:
        """Return the modality named by ``value``, or raise :class:`ModalityError`."""
        if isinstance(value, Modality):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ModalityError(f"unknown modality {value!r}; choose one of: {names}") from None


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class GenerationMetadata:
    """How an artifact was generated.

    Parameters
    ----------
    model_id : str
        Hub id, local path or ``embedded:NAME`` of the model.
    model_revision : str or None
        Commit hash, version or file digest identifying the exact weights.
    prompt_hash : str
        Keyed hash (HMAC-SHA256) of the prompt; never the prompt itself.
    parameters : mapping
        Generation parameters actually used (max tokens, steps, voice, ...).
    seed : int or None
        Random seed, when one was set.
    device : str
        Device the model ran on (``cpu``, ``cuda:0``, ...).
    timings_ms : mapping
        Named durations in milliseconds (``load``, ``generate``, ...).
    """

    model_id: str
    model_revision: str | None = None
    prompt_hash: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None
    device: str = "cpu"
    timings_ms: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", _frozen_mapping(self.parameters))
        object.__setattr__(self, "timings_ms", _frozen_mapping(self.timings_ms))

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "prompt_hash": self.prompt_hash,
            "parameters": dict(self.parameters),
            "seed": self.seed,
            "device": self.device,
            "timings_ms": dict(self.timings_ms),
        }


@dataclass(frozen=True)
class Artifact:
    """One generated output as it moves through the guard.

    Parameters
    ----------
    modality : Modality
        Text, image or audio.
    content : str or numpy.ndarray
        Text as ``str``; an image as an ``HxWx3`` (or ``HxWx4``) ``uint8`` array;
        audio as a 1-D (mono) or ``N x C`` ``float32`` array in ``[-1, 1]``.
        Arrays are made read-only.
    metadata : GenerationMetadata
        How it was generated.
    sample_rate : int or None
        Audio sample rate in Hz; ``None`` for other modalities.
    media_type : str or None
        Set once the artifact has been encoded (``image/png``, ``audio/wav``, ...).
    data : bytes or None
        The encoded file bytes, once encoded.

    Examples
    --------
    >>> a = Artifact(modality=Modality.TEXT, content="hi",
    ...              metadata=GenerationMetadata(model_id="m"))
    >>> a.evolve(content="hello").content
    'hello'
    """

    modality: Modality
    content: Any
    metadata: GenerationMetadata
    sample_rate: int | None = None
    media_type: str | None = None
    data: bytes | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "modality", Modality.parse(self.modality))
        if isinstance(self.content, np.ndarray):
            arr = self.content
            if arr.flags.writeable:
                arr = arr.copy()
                arr.flags.writeable = False
            object.__setattr__(self, "content", arr)

    def evolve(self, **changes: Any) -> Artifact:
        """Return a copy with ``changes`` applied (the original is untouched)."""
        return dataclasses.replace(self, **changes)

    @property
    def content_hash(self) -> str:
        """SHA-256 of the encoded bytes if encoded, else of the raw content."""
        h = hashlib.sha256()
        if self.data is not None:
            h.update(self.data)
        elif isinstance(self.content, str):
            h.update(self.content.encode("utf-8"))
        elif isinstance(self.content, np.ndarray):
            h.update(str(self.content.shape).encode())
            h.update(str(self.content.dtype).encode())
            h.update(np.ascontiguousarray(self.content).tobytes())
        else:
            h.update(repr(self.content).encode())
        return "sha256:" + h.hexdigest()


class StageStatus(enum.StrEnum):
    """Outcome of one stage.

    ``ok``       the stage ran and its check passed.
    ``failed``   the check did not pass; the stage's policy is ``continue``.
    ``flagged``  the check did not pass; policy ``flag`` marks the report.
    ``blocked``  the check did not pass; policy ``block`` withheld the output.
    ``skipped``  the stage was not configured or could not run (the reason says which);
                 never a pass.
    ``error``    the stage raised an unexpected error.
    """

    OK = "ok"
    FAILED = "failed"
    FLAGGED = "flagged"
    BLOCKED = "blocked"
    SKIPPED = "skipped"
    ERROR = "error"


@dataclass(frozen=True)
class StageRecord:
    """What one stage did on one call."""

    stage: str
    status: StageStatus
    duration_ms: float = 0.0
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", StageStatus(self.status))
        object.__setattr__(self, "details", _frozen_mapping(self.details))

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "status": self.status.value,
            "duration_ms": round(float(self.duration_ms), 3),
            "reason": self.reason,
            "details": _jsonable(self.details),
        }


@dataclass(frozen=True)
class CheckResult:
    """Result of an input-policy or output check: passed or not, and why."""

    passed: bool
    reason: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", _frozen_mapping(self.details))


@dataclass(frozen=True)
class WatermarkResult:
    """Watermark detection evidence (never bare bits).

    ``detected`` is decided at ``fpr`` (the configured false-positive rate);
    ``None`` when detection was not performed (``reason`` says why). ``tokens`` (text
    schemes): how many tokens the test scored; on a result that was not performed it is set
    only when the text was too short to test, and says how many tokens there were.
    ``geometry`` (image schemes that search it, on a detection): how the file sits in the
    marked original - ``scale``, ``angle_deg``, ``flipped``, ``offset`` and the pattern's
    ``shift`` - which the region binding of :mod:`guardrail.fingerprint_region` uses.
    """

    detected: bool | None
    scheme: str
    scheme_version: str = "1"
    score: float | None = None
    p_value: float | None = None
    fpr: float | None = None
    payload: str | None = None
    reason: str | None = None
    tokens: int | None = None
    geometry: Mapping[str, Any] | None = None


class ProvenanceState(enum.StrEnum):
    TRUSTED = "TRUSTED"
    VALID_UNTRUSTED = "VALID_UNTRUSTED"
    INVALID = "INVALID"
    ABSENT = "ABSENT"
    ERROR = "ERROR"


@dataclass(frozen=True)
class ProvenanceResult:
    """Content Credentials evidence for one asset."""

    state: ProvenanceState
    failures: tuple[str, ...] = ()
    signer: str | None = None
    ai_generated: bool | None = None
    manifest: Mapping[str, Any] | None = None
    reason: str | None = None


@dataclass(frozen=True)
class DetectorResult:
    """Synthetic-media detector evidence.

    ``probability`` is the calibrated probability that the content is synthetic;
    ``None`` (with ``reason``) when the detector could not run - distinct from a
    negative decision.
    """

    detector: str
    model_version: str | None
    probability: float | None
    decision: bool | None
    threshold: float | None = None
    operating_fpr: float | None = None
    explanation: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Report:
    """What the record store keeps for one guarded call.

    ``modality`` is ``None`` only for a request rejected because its modality was unknown.
    """

    report_id: str
    created_at: str
    modality: Modality | None
    status: str
    metadata: GenerationMetadata
    stages: tuple[StageRecord, ...]
    content_hash: str | None = None
    media_type: str | None = None
    output: str | None = None
    prompt: str | None = None
    error: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.modality is not None:
            object.__setattr__(self, "modality", Modality.parse(self.modality))
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "extra", _frozen_mapping(self.extra))

    def stage(self, name: str) -> StageRecord | None:
        """The first record of stage ``name``, or ``None``."""
        return next((s for s in self.stages if s.stage == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape used by ``--json`` output (a stable contract)."""
        return {
            "report_id": self.report_id,
            "created_at": self.created_at,
            "modality": self.modality.value if self.modality else None,
            "status": self.status,
            "output": self.output,
            "media_type": self.media_type,
            "content_hash": self.content_hash,
            "metadata": self.metadata.to_dict(),
            "prompt": self.prompt,
            "error": self.error,
            "stages": [s.to_dict() for s in self.stages],
            "extra": _jsonable(self.extra),
        }


def _jsonable(value: Any) -> Any:
    """Convert mappings, tuples, enums and numpy scalars into JSON-friendly values."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
