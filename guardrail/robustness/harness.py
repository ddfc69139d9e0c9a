"""The lab skeleton: content -> mark -> attack -> detect -> rate.

Every robustness lab (:mod:`~guardrail.robustness.text_lab`,
:mod:`~guardrail.robustness.image_lab`, :mod:`~guardrail.robustness.audio_lab`) runs the same
steps, after MarkLLM's and OmniSealBench's evaluation pipelines:

1. **mark** each content item (a generation with the watermark on, or an embedding);
2. **attack** the marked item with every attack of the suite (and once without attack);
3. **detect** on every version at the scheme's operating point - the threshold of its
   configured false-positive rate;
4. **rate**: the share detected, per attack, with its exact interval
   (:func:`guardrail.stats.clopper_pearson`), and the false-positive rate that operating
   point actually reaches, measured the same way on unmarked content.

A lab supplies ``mark`` and ``detect``; :func:`run_trials` runs the steps and :func:`rate`
summarises any list of :class:`Detection` (marked or unmarked).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .._types import Artifact
from ..progress import bar
from ..stats import clopper_pearson
from .base import Attack

__all__ = ["Detection", "Marked", "Trials", "rate", "run_trials"]

T = TypeVar("T")


@dataclass(frozen=True)
class Detection:
    """One detector decision on one version of an item.

    ``detected`` is ``None`` when the detector could not decide ("not performed"); such a
    decision counts in ``n`` but not in the rate.
    """

    detected: bool | None
    p_value: float | None = None
    score: float | None = None
    payload_ok: bool = False
    payload_wrong: bool = False
    bit_accuracy: float | None = None


@dataclass(frozen=True)
class Marked:
    """A marked item: its artifact, a name for reports, and what ``detect`` needs (the
    watermarker, the payload, ...)."""

    artifact: Artifact
    name: str = ""
    context: Any = None


@dataclass
class Trials:
    """The detections of every marked item, per attack label (the clean label first).

    ``names[i]`` is the name of the item of ``detections[label][i]``; an attack that raised
    has its message in ``errors`` and no detections.
    """

    labels: list[str]
    detections: dict[str, list[Detection]]
    names: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    not_marked: int = 0

    def rate(self, label: str, *, confidence: float = 0.95) -> dict[str, Any]:
        """:func:`rate` of one label's detections."""
        return rate(self.detections[label], confidence=confidence)

    def missed(self, label: str) -> list[str]:
        """Names of the items not detected under ``label`` (none for an attack that raised)."""
        if label in self.errors:
            return []
        return [name for name, d in zip(self.names, self.detections[label], strict=True)
                if not d.detected]


def run_trials(items: Iterable[T], *, mark: Callable[[T], Marked | None],
               attacks: Sequence[Attack], detect: Callable[[Marked, Artifact], Detection],
               clean: str = "none",
               progress: Callable[[int, Marked], None] | None = None,
               desc: str = "robustness trials") -> Trials:
    """Mark every item, attack it with each of ``attacks``, and detect on every version.

    Parameters
    ----------
    items : iterable
        The content, in order (``mark`` is called once per item, in this order).
    mark : callable
        ``mark(item) -> Marked``, or ``None`` when the item cannot be marked (counted in
        ``not_marked``).
    attacks : sequence of Attack
    detect : callable
        ``detect(marked, artifact) -> Detection`` for the marked artifact or an attacked
        version of it.
    clean : str
        The label of the version without attack.
    progress : callable, optional
        ``progress(index, marked)`` after each marked item.
    desc : str
        The label of the progress bar (:func:`guardrail.progress.bar`: items done of the
        total, with an ETA) shown when ``items`` has a length and is not already a bar.
    """
    labels = [clean, *(a.label for a in attacks)]
    trials = Trials(labels=labels, detections={lb: [] for lb in labels})
    sized = hasattr(items, "__len__") and not type(items).__module__.startswith("tqdm")
    shown = bar(total=len(items), desc=f"{desc} ({len(attacks)} attacks)",  # type: ignore[arg-type]
                unit="item") if sized else None
    try:
        _trials(trials, items, mark, attacks, detect, clean, progress, shown)
    finally:
        if shown is not None:
            shown.close()
    return trials


def _trials(trials: Trials, items: Iterable[T], mark: Callable[[T], Marked | None],
            attacks: Sequence[Attack], detect: Callable[[Marked, Artifact], Detection],
            clean: str, progress: Callable[[int, Marked], None] | None, shown: Any) -> None:
    for i, item in enumerate(items):
        marked = mark(item)
        if marked is None:
            trials.not_marked += 1
        else:
            _attack_and_detect(trials, marked, attacks, detect, clean)
            if progress is not None:
                progress(i, marked)
        if shown is not None:
            shown.update(1)


def _attack_and_detect(trials: Trials, marked: Marked, attacks: Sequence[Attack],
                       detect: Callable[[Marked, Artifact], Detection], clean: str) -> None:
    trials.names.append(marked.name)
    trials.detections[clean].append(detect(marked, marked.artifact))
    for att in attacks:
        if att.label in trials.errors:
            continue
        try:
            attacked = att(marked.artifact)
        except Exception as exc:  # noqa: BLE001 - an attack that cannot run is reported
            trials.errors[att.label] = f"{type(exc).__name__}: {exc}"
            trials.detections[att.label] = []
            continue
        trials.detections[att.label].append(detect(marked, attacked))


def rate(detections: Sequence[Detection], *, confidence: float = 0.95) -> dict[str, Any]:
    """The positive rate of ``detections`` among those performed, with its Clopper-Pearson
    interval.

    Returns
    -------
    dict
        ``n``, ``performed``, ``not_performed``, ``positives``, ``rate`` (``None`` when none
        was performed), ``ci_low``, ``ci_high``, ``median_p`` and ``min_p`` (over the
        performed decisions that have a p-value; ``None`` when none has).
    """
    done = [d for d in detections if d.detected is not None]
    positives = sum(bool(d.detected) for d in done)
    pvals = [d.p_value for d in done if d.p_value is not None]
    lo, hi = clopper_pearson(positives, len(done), confidence=confidence)
    return {"n": len(detections), "performed": len(done),
            "not_performed": len(detections) - len(done), "positives": positives,
            "rate": positives / len(done) if done else None, "ci_low": lo, "ci_high": hi,
            "median_p": float(np.median(pvals)) if pvals else None,
            "min_p": float(min(pvals)) if pvals else None}
