"""Attacks: small named objects with a strength parameter.

An attack maps an artifact to a transformed artifact of the same modality (a re-encoded,
resized, cropped, noisy ... version). The robustness labs chain content -> embed -> attack
-> detect (:mod:`.harness`) and report rates per attack and strength. An attack factory made
with :func:`attack` is registered as an entry point of ``guardrail.attacks``
(:mod:`.attacks`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._types import Artifact, Modality

__all__ = ["Attack", "attack"]


@dataclass(frozen=True)
class Attack:
    """A named transformation with a strength.

    Parameters
    ----------
    name : str
        Family, e.g. ``"jpeg"``, ``"resize"``, ``"mp3"``, ``"word_deletion"``.
    strength : float or str
        The family's parameter (JPEG quality, scale factor, kbps, fraction, ...).
    modality : Modality
    fn : callable
        ``fn(artifact, strength) -> artifact``.
    """

    name: str
    strength: Any
    modality: Modality
    fn: Callable[[Artifact, Any], Artifact]

    @property
    def label(self) -> str:
        return f"{self.name}({self.strength})"

    def __call__(self, artifact: Artifact) -> Artifact:
        return self.fn(artifact, self.strength)


def attack(name: str, modality: Modality) -> Callable[[Callable[[Artifact, Any], Artifact]],
                                                      Callable[[Any], Attack]]:
    """Decorator: turn ``fn(artifact, strength)`` into a factory ``strength -> Attack``."""

    def wrap(fn: Callable[[Artifact, Any], Artifact]) -> Callable[[Any], Attack]:
        def make(strength: Any) -> Attack:
            return Attack(name=name, strength=strength, modality=modality, fn=fn)

        make.__name__ = fn.__name__
        make.__doc__ = fn.__doc__
        make.attack_name = name  # type: ignore[attr-defined]
        return make

    return wrap
