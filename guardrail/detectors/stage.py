"""The guard stage that runs the configured detectors and records their scores."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .._types import Modality
from ..stages import Stage, StageContext, StageOutcome, StageSkipped
from .base import Detector, UnavailableDetector, result_dict

__all__ = ["DetectorStage"]


def _broken(detector: Detector) -> bool:
    """A detector that could not be built or whose model failed to load."""
    return isinstance(detector, UnavailableDetector) or bool(
        getattr(detector, "_load_error", None))


class DetectorStage(Stage):
    """Output check that runs every detector for the artifact's modality and records the
    scores as evidence (``ctx.evidence.detectors`` and the stage details).

    Our own generator's outputs are synthetic, so a "synthetic" decision is expected here:
    the stage passes whatever the scores say. It is skipped (with the reasons) when no
    detector is configured for the modality, or when none could run because a detector is
    broken (not built, model failed to load); the slot's on-fail policy then applies as for
    any stage that could not run. An output merely outside every detector's range (a text
    shorter than the minimum, a tiny image) passes with a note saying so.

    Parameters
    ----------
    detectors : sequence of Detector
        Detectors of any modality; each artifact is scored by those of its modality.
    on_fail : {"block", "flag", "continue"}, optional
        Overrides the ``output_checks`` policy for the skipped case.
    """

    slot = "output_checks"
    name = "detectors"

    def __init__(self, detectors: Sequence[Detector], *, on_fail: str | None = None) -> None:
        mods: Iterable[Modality] = {d.modality for d in detectors} or set(Modality)
        super().__init__(on_fail=on_fail, modalities=mods)
        self.detectors = list(detectors)

    def run(self, ctx: StageContext) -> StageOutcome:
        art = ctx.artifact
        if art is None:
            raise StageSkipped("no artifact to score")
        mine = [d for d in self.detectors if d.modality is art.modality]
        if not mine:
            raise StageSkipped(f"no detector configured for {art.modality.value}")
        results = [d.detect(art) for d in mine]
        rows = [result_dict(r) for r in results]
        ctx.evidence.detectors = tuple(results)
        if all(r.probability is None for r in results):
            reasons = "; ".join(f"{r.detector}: {r.reason}" for r in results)
            if any(_broken(d) for d in mine):
                raise StageSkipped(f"no detector could run ({reasons})", detectors=rows)
            # every detector works but this output is outside their range (a text under
            # the minimum length, an image too small): recorded, not a failure of the layer
            return StageOutcome(passed=True, details={
                "detectors": rows, "synthetic_decisions": 0, "max_probability": None,
                "note": f"no detector could score this output ({reasons})"})
        ran = [r for r in results if r.probability is not None]
        return StageOutcome(passed=True, details={
            "detectors": rows,
            "synthetic_decisions": sum(bool(r.decision) for r in ran),
            "max_probability": max(r.probability for r in ran if r.probability is not None),
        })
