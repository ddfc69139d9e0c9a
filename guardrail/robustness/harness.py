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

**Engines.** By default the items run one after another in this process. Inside
``with use_engine("ray", workers=N, address=ADDR):`` (``guardrail robustness --engine ray``)
:func:`run_trials` spreads the items over Ray actors instead
(:func:`guardrail.scan.ray_engine.map_on_actors`, one actor per worker, a killed actor's
batch retried by Ray): each item is marked, attacked and detected on an actor - ``mark``,
``detect`` and the attacks travel there with Ray's serializer - and the results are put
back in item order, so the trials are the same as in-process.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from .._types import Artifact
from ..progress import bar
from ..stats import clopper_pearson
from .base import Attack

__all__ = ["Detection", "Marked", "Trials", "rate", "run_trials", "use_engine"]

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
    #: the recovered id's record binds this version (``None``: binding not measured)
    bound: bool | None = None


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
    engine, workers, address = _ENGINE.get()
    if engine == "ray":
        _trials_on_ray(trials, list(items), mark, attacks, detect, clean, progress, desc,
                       workers=workers, address=address)
        return trials
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


_ENGINE: contextvars.ContextVar[tuple[str, int, str | None]] = contextvars.ContextVar(
    "guardrail_trial_engine", default=("local", 1, None))
ENGINES = ("local", "ray")


@contextmanager
def use_engine(engine: str = "local", *, workers: int = 1,
               address: str | None = None) -> Iterator[None]:
    """Run the :func:`run_trials` calls inside the block on ``engine`` (``local`` or ``ray``).

    ``workers`` Ray actors; ``address`` an existing Ray cluster (``None``: a local Ray
    instance is started for each call and stopped after it).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if int(workers) < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    token = _ENGINE.set((engine, int(workers), address))
    try:
        yield
    finally:
        _ENGINE.reset(token)


def _trials_on_ray(trials: Trials, items: list[Any], mark: Callable[[Any], Marked | None],
                   attacks: Sequence[Attack], detect: Callable[[Marked, Artifact], Detection],
                   clean: str, progress: Callable[[int, Marked], None] | None, desc: str, *,
                   workers: int, address: str | None) -> None:
    """The items on Ray actors; the results merged in item order as :func:`_trials` would."""
    from ..scan.ray_engine import map_on_actors

    labels = list(trials.labels)

    def make() -> Callable[[list[Any]], list[Any]]:
        def one(pair: tuple[int, Any]) -> tuple[int, Marked | None, Trials | None]:
            index, item = pair
            marked = mark(item)
            if marked is None:
                return index, None, None
            part = Trials(labels=labels, detections={lb: [] for lb in labels})
            _attack_and_detect(part, marked, attacks, detect, clean)
            return index, marked, part

        return lambda batch: [one(pair) for pair in batch]

    done: dict[int, tuple[Marked | None, Trials | None]] = {}
    shown = bar(total=len(items), desc=f"{desc} ({len(attacks)} attacks, Ray)", unit="item")

    def collect(results: list[Any], n: int) -> None:
        for index, marked, part in results:
            done[index] = (marked, part)
        shown.update(n)

    try:
        map_on_actors(make, list(enumerate(items)), collect, workers=workers,
                      batch_size=1, address=address, name=desc)
    finally:
        shown.close()
    for index in range(len(items)):
        marked, part = done[index]
        if marked is None or part is None:
            trials.not_marked += 1
            continue
        trials.names.append(marked.name)
        for label in labels:
            if label in trials.errors:
                continue
            if label in part.errors:
                trials.errors[label] = part.errors[label]
                trials.detections[label] = []
                continue
            trials.detections[label].extend(part.detections[label])
        if progress is not None:
            progress(index, marked)


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
