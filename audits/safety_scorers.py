"""What the safety audit measures: the scorers that say "watermarked" or "synthetic".

A :class:`Scorer` wraps one detector of the configured safety layer - the watermark detector
of a modality (:func:`watermark_scorer`) or one synthetic-media detector
(:func:`detector_scorers`) - and turns its result into ``{decision, score, reason}``. A
scorer that cannot decide on an item ("not performed": no key, a missing calibration, too
short a text, a crash) gives the decision ``None`` with its reason, never a negative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Scorer", "detector_scorers", "watermark_scorer"]


class Scorer:
    """One thing that says "synthetic" / "watermarked" about an artifact: ``truth`` names
    which label of an item it is judged against (``watermarked`` or ``synthetic``)."""

    def __init__(self, name: str, truth: str, fn: Callable[[Any], tuple[Any, Any, Any]],
                 model_version: str | None = None) -> None:
        self.name, self.truth, self.fn, self.model_version = name, truth, fn, model_version

    def __call__(self, artifact: Any) -> dict[str, Any]:
        try:
            decision, score, reason = self.fn(artifact)
        except Exception as exc:  # noqa: BLE001 - a crashing scorer is "not performed"
            decision, score, reason = None, None, f"not performed: {type(exc).__name__}: {exc}"
        return {"decision": None if decision is None else int(bool(decision)),
                "score": score, "reason": reason}


def watermark_scorer(config: Any, modality: str, *, generator: Any = None) -> Scorer:
    """The configured watermark's detector (not performed on every item when there is no
    key or the scheme cannot be built)."""
    from guardrail.errors import GuardrailError
    from guardrail.factory import watermarker_from_config

    try:
        wm = watermarker_from_config(config, modality, generator=generator)
    except GuardrailError as exc:
        reason = f"not performed: {exc}"
        return Scorer(f"watermark:{config.section('watermark')[f'{modality}_scheme']}",
                      "watermarked", lambda a: (None, None, reason))

    def fn(artifact: Any) -> tuple[Any, Any, Any]:
        res = wm.detect(artifact)
        return res.detected, res.p_value, res.reason if res.detected is None else None
    return Scorer(f"watermark:{wm.scheme}", "watermarked", fn, getattr(wm, "version", None))


def detector_scorers(config: Any, modality: str, *, text_generator: Any = None) -> list[Scorer]:
    """Every configured detector of ``modality`` (an unavailable one is "not performed")."""
    from guardrail.detectors import build_all

    out = []
    for det in build_all(config, [modality], text_generator=text_generator):
        def fn(artifact: Any, det: Any = det) -> tuple[Any, Any, Any]:
            res = det.detect(artifact)
            return res.decision, res.probability, res.reason if res.decision is None else None
        out.append(Scorer(f"detector:{det.name}", "synthetic", fn,
                          getattr(det, "model_version", None)))
    return out
