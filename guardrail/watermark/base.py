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

import hashlib
import hmac
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._types import Artifact, Modality, WatermarkResult
from ..errors import GuardrailError

__all__ = ["CannotWatermark", "Watermarker", "check_payload", "keyed_rng", "not_performed"]


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


def not_performed(scheme: str, version: str, reason: str, *,
                  tokens: int | None = None) -> WatermarkResult:
    """The result of a detection that could not be carried out (distinct from 'absent');
    ``tokens`` only for a text too short to test."""
    return WatermarkResult(detected=None, scheme=scheme, scheme_version=version, reason=reason,
                           tokens=tokens)


def check_payload(payload: Any, bits: int) -> int:
    """``payload`` as an int in ``[0, 2**bits)``, or :class:`CannotWatermark` saying why."""
    if isinstance(payload, bool) or not isinstance(payload, (int, np.integer)):
        raise CannotWatermark(f"cannot embed: the payload must be an int, got "
                              f"{type(payload).__name__}")
    value = int(payload)
    if not 0 <= value < (1 << bits):
        raise CannotWatermark(f"cannot embed: the payload must be in [0, 2**{bits}), got {value}")
    return value


def keyed_rng(key: bytes, label: str) -> np.random.Generator:
    """A random generator seeded by HMAC-SHA256(key, label): one stream per purpose."""
    digest = hmac.new(key, label.encode(), hashlib.sha256).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest, "big")))
