"""Attacks found through the guardrail.attacks entry points (a third-party one too), and
the lab skeleton: mark -> attack -> detect -> rate, with errors and unmarkable items."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import pytest

from guardrail import Artifact, GenerationMetadata, Modality, plugins
from guardrail.errors import ConfigError
from guardrail.robustness.attacks import (
    SUITES,
    attack_factory,
    build_attack,
    build_suite,
    parse_label,
)
from guardrail.robustness.base import Attack, attack
from guardrail.robustness.harness import Detection, Marked, rate, run_trials
from guardrail.stats import clopper_pearson

META = GenerationMetadata(model_id="test")


@attack("invert", Modality.IMAGE)
def invert(artifact: Artifact, strength: float) -> Artifact:
    """A third-party attack (registered below as ``image.invert``)."""
    return artifact.evolve(content=(255 - artifact.content).astype(np.uint8))


def test_every_default_suite_label_is_a_registered_attack():
    for modality, labels in SUITES.items():
        attacks = build_suite(modality)
        assert [a.label for a in attacks] == list(labels)
        assert all(isinstance(a, Attack) and a.modality == Modality.parse(modality)
                   for a in attacks)
    names = plugins.names(plugins.ATTACKS)
    assert {"image.crop", "audio.crop", "text.paraphrase", "image.resize+jpeg"} <= set(names)
    assert attack_factory("image", "resize+jpeg")((0.5, 75)).label == "resize+jpeg((0.5, 75))"


def test_labels_round_trip_and_bad_labels_are_refused():
    for labels in SUITES.values():
        for label in labels:
            name, strength = parse_label(label)
            assert f"{name}({strength})" == label
    for bad in ("jpeg", "jpeg(50", "(50)", "jpeg(fifty)"):
        with pytest.raises(ValueError):
            parse_label(bad)
    with pytest.raises(ConfigError, match="image.melt"):
        build_attack("image", "melt", 1)


def test_a_third_party_attack_joins_a_suite(monkeypatch):
    real = metadata.entry_points

    def entry_points(**kw):
        eps = list(real(**kw))
        if kw.get("group") == plugins.ATTACKS:
            eps.append(metadata.EntryPoint(name="image.invert", group=plugins.ATTACKS,
                                           value=f"{__name__}:invert"))
        return eps

    monkeypatch.setattr(plugins.metadata, "entry_points", entry_points)
    plugins.refresh()  # the entry points read so far are cached per sys.path
    monkeypatch.setattr(plugins, "_CACHE", {})  # and the fake ones go with the patch
    suite = build_suite("image", ["jpeg(90)", "invert(1)"])
    assert [a.label for a in suite] == ["jpeg(90)", "invert(1)"]
    img = Artifact(modality=Modality.IMAGE, content=np.zeros((4, 4, 3), np.uint8), metadata=META)
    assert int(suite[1](img).content.max()) == 255


def _shift(artifact: Artifact, strength: int) -> Artifact:
    return artifact.evolve(content=artifact.content + strength)


def _boom(artifact: Artifact, strength: int) -> Artifact:
    raise RuntimeError("cannot run")


def test_trials_mark_attack_detect_and_rate():
    shift = Attack(name="shift", strength=1, modality=Modality.TEXT, fn=_shift)
    boom = Attack(name="boom", strength=0, modality=Modality.TEXT, fn=_boom)

    def mark(i: int) -> Marked | None:
        if i == 3:
            return None  # cannot be marked
        return Marked(Artifact(modality=Modality.TEXT, content=i, metadata=META), name=f"i{i}")

    def detect(m: Marked, art: Artifact) -> Detection:
        if art.content == 5:
            return Detection(detected=None)  # not performed
        return Detection(detected=art.content % 2 == 0, p_value=0.01 * (art.content + 1))

    seen = []
    trials = run_trials(range(5), mark=mark, attacks=[shift, boom], detect=detect,
                        progress=lambda i, m: seen.append((i, m.name)))
    assert trials.labels == ["none", "shift(1)", "boom(0)"]
    assert trials.not_marked == 1 and trials.names == ["i0", "i1", "i2", "i4"]
    assert seen == [(0, "i0"), (1, "i1"), (2, "i2"), (4, "i4")]
    assert trials.errors == {"boom(0)": "RuntimeError: cannot run"}
    assert trials.detections["boom(0)"] == [] and trials.missed("boom(0)") == []
    clean = trials.rate("none")
    assert (clean["n"], clean["performed"], clean["positives"]) == (4, 4, 3)
    assert clean["rate"] == 0.75 and clean["min_p"] == pytest.approx(0.01)
    assert (clean["ci_low"], clean["ci_high"]) == pytest.approx(clopper_pearson(3, 4))
    assert trials.missed("none") == ["i1"]
    shifted = trials.rate("shift(1)")  # contents 1, 2, 3, 5: one not performed
    assert (shifted["performed"], shifted["not_performed"], shifted["positives"]) == (3, 1, 1)
    assert trials.missed("shift(1)") == ["i0", "i2", "i4"]
    assert rate([]) == {"n": 0, "performed": 0, "not_performed": 0, "positives": 0,
                        "rate": None, "ci_low": None, "ci_high": None, "median_p": None,
                        "min_p": None}
