"""guardrail: a safety and provenance layer for generative AI."""

from ._generator import (
    Generated,
    GenerationHooks,
    Generator,
    ModelInfo,
    load_generator,
    resolve_device,
)
from ._types import (
    Artifact,
    CheckResult,
    DetectorResult,
    GenerationMetadata,
    Modality,
    ProvenanceResult,
    ProvenanceState,
    Report,
    StageRecord,
    StageStatus,
    WatermarkResult,
)
from .errors import GuardrailError

__version__ = "0.1.0"

__all__ = [
    "Artifact",
    "CheckResult",
    "DetectorResult",
    "Generated",
    "GenerationHooks",
    "GenerationMetadata",
    "Generator",
    "GuardrailError",
    "Modality",
    "ModelInfo",
    "ProvenanceResult",
    "ProvenanceState",
    "Report",
    "StageRecord",
    "StageStatus",
    "WatermarkResult",
    "load_generator",
    "resolve_device",
]
