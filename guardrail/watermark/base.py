"""The watermarker interface shared by every scheme and modality.

A watermarker embeds a *payload* (a watermark id, an integer of ``payload_bits`` bits) under
a secret key, and detects it again, returning a :class:`guardrail.WatermarkResult`:
``detected`` decided at the configured false-positive rate, ``score``, ``p_value``, the
decoded ``payload`` (hex) and the scheme's name and version - never bare bits.

A scheme that cannot handle an input (too small, silent, too short) raises
:class:`CannotWatermark` from ``embed`` and returns ``detected=None`` with the reason from
``detect`` - it never returns content unmarked in silence, and never a false ``detected``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .._types import Artifact, Modality, WatermarkResult
from ..errors import GuardrailError

__all__ = ["CannotWatermark", "Watermarker", "not_performed"]


class CannotWatermark(GuardrailError):
    """This input cannot be watermarked or checked by this scheme; the message says why."""

    exit_code = 4


@runtime_checkable
class Watermarker(Protocol):
    """One watermarking scheme for one modality.

    Attributes
    ----------
    scheme : str
        Registry name, e.g. ``"guardrail-image"``, ``"dwtDct"``, ``"kgw"``.
    version : str
        Bumped whenever marks made by an older version would not decode the same.
    modality : Modality
    payload_bits : int
        Capacity of the payload (the watermark id), in bits.
    fpr : float
        The false-positive rate at which ``detect`` decides ``detected``.
    """

    scheme: str
    version: str
    modality: Modality
    payload_bits: int
    fpr: float

    def embed(self, artifact: Artifact, payload: int) -> Artifact:
        """Return a new artifact carrying ``payload``; raise :class:`CannotWatermark`."""
        ...

    def detect(self, artifact: Artifact) -> WatermarkResult:
        """Look for this scheme's mark under this key."""
        ...


def not_performed(scheme: str, version: str, reason: str) -> WatermarkResult:
    """The result of a detection that could not be carried out (distinct from 'absent')."""
    return WatermarkResult(detected=None, scheme=scheme, scheme_version=version, reason=reason)
