"""Synthetic-media detectors: calibrated probabilities that content is synthetic.

Light to import: models and heavy libraries load inside the functions that need them.
"""

from __future__ import annotations

from .base import BaseDetector, Detector, NotPerformed, not_performed
from .registry import build, build_all, registered, share_cores
from .stage import DetectorStage

__all__ = ["BaseDetector", "Detector", "DetectorStage", "NotPerformed", "build", "build_all",
           "not_performed", "registered", "share_cores"]
