"""The attack registry: every attack is found through the ``guardrail.attacks`` entry points.

An entry point is named ``<modality>.<attack name>`` (``image.jpeg``, ``audio.crop``) and
names a factory ``(strength) -> Attack``; results record the attack's own name and strength
as its label, ``jpeg(50)``. An attack that needs a model takes it as a keyword argument too
(``text.paraphrase``: ``generator=``, the local text model). guardrail's attacks are
registered in its ``pyproject.toml``; another package adds one the same way::

    [project.entry-points."guardrail.attacks"]
    "image.squeeze" = "my_package.attacks:squeeze"

A *suite* is a list of labels; :func:`build_suite` builds each through the registry, so a
label of an attack another package registers runs like a built-in one. :data:`SUITES` holds
the suites the robustness labs run by default.

Examples
--------
>>> parse_label("resize+jpeg((0.5, 75))")
('resize+jpeg', (0.5, 75))
>>> build_attack("image", "jpeg", 50).label
'jpeg(50)'
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from typing import Any

from .. import plugins
from .._types import Modality
from .base import Attack

__all__ = ["SUITES", "attack_factory", "build_attack", "build_suite", "parse_label"]

#: The default suite of each modality's lab, as attack labels.
SUITES: dict[str, tuple[str, ...]] = {
    "text": ("word_deletion(0.1)", "word_deletion(0.2)", "word_deletion(0.3)",
             "synonym(0.2)", "synonym(0.5)", "word_insertion(0.1)", "word_insertion(0.2)",
             "truncation(0.25)", "truncation(0.5)", "homoglyph(0.2)", "homoglyph(0.5)",
             "homoglyph(1.0)", "normalise(1)"),
    # the attacks of the image watermark targets (issue 12: TPR >= 0.95 at FPR 1e-4 under
    # each; resize x0.25 counts at 1024 px, x0.5 below)
    "image": ("jpeg(30)", "webp(50)", "resize(0.5)", "resize(0.25)", "crop(0.75)",
              "rotate(15)", "rotate(-15)", "flip(1)", "blur(2)", "median(5)",
              "gaussian_noise(10)", "chain_crop_resize_jpeg((0.8, 0.5, 70))",
              "chain_blur_noise_resize_webp((1.0, 5, 0.7, 60))"),
    "audio": ("mp3(128)", "mp3(64)", "resample(16000)", "resample(8000)",
              "resample_back(8000)", "noise(20)", "gain(6)", "gain(-6)", "lowpass(4000)",
              "crop(0.5)", "speed(1.05)", "speed(0.95)", "tempo(1.05)", "tempo(0.95)",
              "pitch(1)", "pitch(-1)", "noise(10)", "chain((64, 20, 4000))"),
}


def attack_factory(modality: Modality | str, name: str) -> Callable[..., Attack]:
    """The factory registered as ``<modality>.<name>`` (ConfigError naming the known ones)."""
    return plugins.load(plugins.ATTACKS, f"{Modality.parse(modality).value}.{name}")


def build_attack(modality: Modality | str, name: str, strength: Any, **resources: Any
                 ) -> Attack:
    """The attack ``name`` of ``modality`` at ``strength`` (``resources``: e.g. the model a
    model-bound attack uses)."""
    return attack_factory(modality, name)(strength, **resources)


def parse_label(label: str) -> tuple[str, Any]:
    """``"name(strength)"`` -> ``(name, strength)``; the strength is a Python literal."""
    name, paren, rest = label.partition("(")
    if not name or not paren or not rest.endswith(")"):
        raise ValueError(f"an attack label is name(strength), e.g. jpeg(50); got {label!r}")
    try:
        return name, ast.literal_eval(rest[:-1])
    except (ValueError, SyntaxError):
        raise ValueError(f"attack label {label!r}: the strength is not a literal") from None


def build_suite(modality: Modality | str, labels: Iterable[str] | None = None) -> list[Attack]:
    """The attacks of ``labels`` (default: :data:`SUITES` of the modality), in order."""
    key = Modality.parse(modality).value
    out = []
    for label in SUITES[key] if labels is None else labels:
        name, strength = parse_label(label)
        out.append(build_attack(key, name, strength))
    return out
