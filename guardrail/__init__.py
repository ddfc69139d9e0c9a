"""guardrail: a safety and provenance layer for generative AI.

``Guard(generator)`` runs every generation through the protective stages the configuration
asks for (detectors, watermark and self-check, C2PA signing) and records a report;
``guard_from_config`` also loads the configured generator; ``verify_file`` checks a file.
"""

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
from .config import Config, Limits
from .detectors.base import Detector
from .errors import GuardrailError
from .factory import default_stages, init_keys
from .guard import Guard, GuardResult, guard_from_config
from .keys import PromptHasher
from .stages import (
    Evidence,
    OnFail,
    OutputTermCheck,
    PromptPolicy,
    ProvenanceEvidence,
    Stage,
    StageContext,
    StageOutcome,
    StageSkipped,
    WatermarkEvidence,
)
from .store import ReportStore
from .verify import verify_file
from .watermark.base import Watermarker

__version__ = "0.1.0"

__all__ = [
    "Artifact",
    "CheckResult",
    "Config",
    "Detector",
    "DetectorResult",
    "Evidence",
    "Generated",
    "GenerationHooks",
    "GenerationMetadata",
    "Generator",
    "Guard",
    "GuardResult",
    "GuardrailError",
    "Limits",
    "Modality",
    "ModelInfo",
    "OnFail",
    "OutputTermCheck",
    "PromptHasher",
    "PromptPolicy",
    "ProvenanceEvidence",
    "ProvenanceResult",
    "ProvenanceState",
    "Report",
    "ReportStore",
    "Stage",
    "StageContext",
    "StageOutcome",
    "StageRecord",
    "StageSkipped",
    "StageStatus",
    "WatermarkEvidence",
    "WatermarkResult",
    "Watermarker",
    "default_stages",
    "guard_from_config",
    "init_keys",
    "load_generator",
    "resolve_device",
    "verify_file",
]
