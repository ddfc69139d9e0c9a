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
from .config import Config
from .errors import GuardrailError
from .keys import PromptHasher
from .pipeline import (
    Guard,
    GuardResult,
    OnFail,
    OutputTermCheck,
    PromptPolicy,
    Stage,
    StageContext,
    StageOutcome,
    StageSkipped,
)
from .store import ReportStore

__version__ = "0.1.0"

__all__ = [
    "Config",
    "Guard",
    "GuardResult",
    "OnFail",
    "OutputTermCheck",
    "PromptHasher",
    "PromptPolicy",
    "ReportStore",
    "Stage",
    "StageContext",
    "StageOutcome",
    "StageSkipped",
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
