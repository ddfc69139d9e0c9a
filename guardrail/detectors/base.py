"""The detector protocol and the helpers shared by detectors.

A detector answers one question about one artifact: how likely is it that this content is
synthetic? Its :class:`~guardrail.DetectorResult` carries

* ``probability``: a *calibrated* probability that the content is synthetic;
* ``decision``: ``probability >= threshold``, the configured operating point;
* ``operating_fpr``: the false-positive rate measured at that operating point (on the
  detector's own calibration / evaluation data - see each detector's ``explanation``);
* ``reason``: ``"not performed: ..."`` when the detector could not run (unreadable input,
  too small an image, silence, too short a text, a model that failed to load, content
  beyond the ``[limits]``). Then ``probability`` and ``decision`` are ``None``: never a
  negative decision.

:meth:`BaseDetector.detect` checks the artifact against its :class:`~guardrail.config.Limits`
(image pixels and side, audio rate and duration, text characters) before any model runs.

A detector score is evidence, never proof.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._types import Artifact, DetectorResult, Modality
from ..config import Limits
from ..errors import GuardrailError

__all__ = [
    "BaseDetector",
    "Detector",
    "NotPerformed",
    "UnavailableDetector",
    "as_float_audio",
    "as_rgb",
    "check_limits",
    "not_performed",
    "result_dict",
]

log = logging.getLogger(__name__)


@runtime_checkable
class Detector(Protocol):
    """What every synthetic-media detector provides."""

    name: str
    modality: Modality
    model_version: str | None

    def detect(self, artifact: Artifact) -> DetectorResult:
        """Score one artifact; never raises for bad input (returns "not performed")."""
        ...


class NotPerformed(Exception):
    """Raised inside a detector when it cannot score this input; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def not_performed(name: str, model_version: str | None, reason: str, *,
                  threshold: float | None = None,
                  operating_fpr: float | None = None) -> DetectorResult:
    """A result that says the detector did not run (``probability`` is ``None``)."""
    if not reason.startswith("not performed"):
        reason = f"not performed: {reason}"
    return DetectorResult(detector=name, model_version=model_version, probability=None,
                          decision=None, threshold=threshold, operating_fpr=operating_fpr,
                          reason=reason)


def result_dict(res: DetectorResult) -> dict[str, Any]:
    """A JSON-friendly dict of a detector result."""
    return dataclasses.asdict(res)


def sigmoid(z: float) -> float:
    """Numerically safe logistic function."""
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def logit(p: float, eps: float = 1e-4) -> float:
    """Log-odds of ``p`` clipped to ``[eps, 1 - eps]``."""
    p = min(max(float(p), eps), 1.0 - eps)
    return math.log(p / (1.0 - p))


def as_rgb(artifact: Artifact, *, min_side: int, contiguous: bool = True) -> np.ndarray:
    """The image of ``artifact`` as ``HxWx3 uint8``; :class:`NotPerformed` if unusable.

    ``contiguous=False`` allows a view (the colour channels of an ``HxWx4`` image) instead
    of a copy, for callers that copy the pixels anyway."""
    arr = artifact.content
    if not isinstance(arr, np.ndarray):
        raise NotPerformed("the image content is not a pixel array")
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise NotPerformed(f"unreadable image (array shape {arr.shape})")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and float(np.nanmax(arr, initial=0)) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
    h, w = arr.shape[:2]
    if min(h, w) < min_side:
        raise NotPerformed(f"image too small ({w}x{h}; the minimum side is {min_side} px)")
    return np.ascontiguousarray(arr) if contiguous else arr


def as_float_audio(artifact: Artifact, *, min_seconds: float,
                   silence_rms: float = 1e-4) -> tuple[np.ndarray, int]:
    """Mono ``float32`` audio and its rate; :class:`NotPerformed` if short, silent, unreadable."""
    arr = artifact.content
    sr = artifact.sample_rate
    if not isinstance(arr, np.ndarray) or not sr:
        raise NotPerformed("unreadable audio (no samples or no sample rate)")
    x = np.asarray(arr, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1 or not np.isfinite(x).all():
        raise NotPerformed("unreadable audio (bad shape or non-finite samples)")
    if x.size < min_seconds * sr:
        raise NotPerformed(f"audio too short ({x.size / sr:.2f} s; the minimum is "
                           f"{min_seconds:g} s)")
    if _rms(x) < silence_rms:
        raise NotPerformed("the audio is silent")
    return x, int(sr)


def _rms(x: np.ndarray, block: int = 1 << 20) -> float:
    """Root mean square in float64, a block at a time (no float64 copy of a long clip)."""
    total = 0.0
    for i in range(0, x.size, block):
        part = x[i:i + block].astype(np.float64)
        total += float(np.dot(part, part))
    return float(np.sqrt(total / max(x.size, 1)))


def check_limits(artifact: Artifact, limits: Limits) -> None:
    """:class:`NotPerformed` when the artifact's content is beyond ``limits`` (checked from
    its shape, rate and length, before any work on the content)."""
    content = artifact.content
    if artifact.modality is Modality.TEXT:
        n = len(content) if isinstance(content, str) else 0
        if n > limits.max_text_chars:
            raise NotPerformed(f"the text has {n} characters, above the limit of "
                               f"{limits.max_text_chars} (limits.max_text_chars)")
        return
    shape = getattr(content, "shape", None)
    if not isinstance(shape, tuple) or not shape:
        return  # not an array: the detector's own checks say what is wrong
    if artifact.modality is Modality.IMAGE and len(shape) >= 2:
        h, w = int(shape[0]), int(shape[1])
        if max(h, w) > limits.max_image_side or h * w > limits.max_image_pixels:
            raise NotPerformed(f"image is {w}x{h} = {w * h} pixels, above the limits "
                               f"({limits.max_image_pixels} pixels, {limits.max_image_side} "
                               "per side: limits.max_image_pixels, limits.max_image_side)")
    elif artifact.modality is Modality.AUDIO:
        rate = artifact.sample_rate
        if isinstance(rate, (int, np.integer)) and not isinstance(rate, bool) and rate > 0:
            if not limits.min_audio_rate <= rate <= limits.max_audio_rate:
                raise NotPerformed(
                    f"sample rate {rate} Hz is outside the accepted {limits.min_audio_rate}-"
                    f"{limits.max_audio_rate} Hz (limits.min_audio_rate, limits.max_audio_rate)")
            if shape[0] / rate > limits.max_audio_seconds:
                raise NotPerformed(f"the audio lasts {shape[0] / rate:.1f} s, above the limit "
                                   f"of {limits.max_audio_seconds:g} s (limits.max_audio_seconds)")


class BaseDetector:
    """Shared behaviour: modality check, decision at the threshold, not-performed paths.

    Subclasses set ``name``/``modality``/``model_version``, implement :meth:`score`
    (return ``(probability, explanation)`` or raise :class:`NotPerformed`) and may
    implement :meth:`load` (raise on a model that cannot load).

    Parameters
    ----------
    threshold : float
        Operating point: ``decision = probability >= threshold``.
    operating_fpr : float or None
        False-positive rate measured at ``threshold`` (``None``: not measured).
    """

    name: str = "detector"
    modality: Modality = Modality.IMAGE
    model_version: str | None = None
    #: what :meth:`detect` accepts (``None``: the documented defaults); the registry sets
    #: the configured ``[limits]``
    limits: Limits | None = None

    def __init__(self, *, threshold: float = 0.5, operating_fpr: float | None = None) -> None:
        self.threshold = float(threshold)
        self.operating_fpr = operating_fpr
        self._load_error: str | None = None
        self._loaded = False

    # -- to override ----------------------------------------------------------------------
    def load(self) -> None:
        """Load the model (idempotent); raise :class:`~guardrail.errors.ModelLoadError`."""

    def score(self, artifact: Artifact) -> tuple[float, str]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------
    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        if self._load_error is not None:
            raise NotPerformed(self._load_error)
        try:
            self.load()
        except Exception as exc:  # noqa: BLE001 - any load failure becomes "not performed"
            self._load_error = f"the model failed to load: {exc}"
            log.warning("detector %s: %s", self.name, self._load_error)
            raise NotPerformed(self._load_error) from None
        self._loaded = True

    def detect(self, artifact: Artifact) -> DetectorResult:
        """Score ``artifact``; a result with ``reason`` set if it could not be scored."""
        args = {"threshold": self.threshold, "operating_fpr": self.operating_fpr}
        if artifact.modality is not self.modality:
            return not_performed(self.name, self.model_version,
                                 f"{self.name} detects {self.modality.value}, not "
                                 f"{artifact.modality.value}", **args)
        try:
            check_limits(artifact, self.limits or Limits())
            self._ensure_loaded()
            prob, explanation = self.score(artifact)
        except NotPerformed as exc:
            return not_performed(self.name, self.model_version, exc.reason, **args)
        except GuardrailError as exc:
            return not_performed(self.name, self.model_version, str(exc), **args)
        except Exception as exc:  # noqa: BLE001 - a detector crash must not crash the guard
            log.warning("detector %s failed: %s", self.name, exc)
            return not_performed(self.name, self.model_version,
                                 f"{type(exc).__name__}: {exc}", **args)
        prob = float(min(max(prob, 0.0), 1.0))
        if not math.isfinite(prob):
            return not_performed(self.name, self.model_version, "non-finite score", **args)
        return DetectorResult(detector=self.name, model_version=self.model_version,
                              probability=prob, decision=prob >= self.threshold,
                              threshold=self.threshold, operating_fpr=self.operating_fpr,
                              explanation=explanation)

    def describe(self) -> dict[str, Any]:
        """Name, modality, version and operating point."""
        return {"name": self.name, "modality": self.modality.value,
                "model_version": self.model_version, "threshold": self.threshold,
                "operating_fpr": self.operating_fpr}


class UnavailableDetector(BaseDetector):
    """Stands in for a configured detector that could not be built: always "not performed"."""

    def __init__(self, name: str, modality: Modality | str, reason: str) -> None:
        super().__init__()
        self.name = name
        self.modality = Modality.parse(modality)
        self.reason = reason

    def load(self) -> None:
        raise RuntimeError(self.reason)

    def detect(self, artifact: Artifact) -> DetectorResult:
        return not_performed(self.name, None, self.reason)
