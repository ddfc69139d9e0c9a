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
import math
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._types import Artifact, Modality, WatermarkResult
from ..errors import CannotWatermark

__all__ = ["CannotWatermark", "KeyedScheme", "Watermarker", "check_audio", "check_payload", "keyed_rng", "mix",
           "not_performed", "payload_hex", "upper_tail"]


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


class KeyedScheme:
    """Common ground of guardrail's own keyed schemes (image v1 and v2, audio).

    :meth:`_set_key` validates and stores the key, ``fpr`` and ``payload_bits``; the repr
    never shows the key; :meth:`_rng` gives one keyed random stream per purpose, labelled
    ``{scheme}/v{version}/{purpose}``. A subclass sets ``scheme``, ``version`` and
    ``strength`` (checked against its own range).
    """

    scheme: str
    version: str
    fpr: float
    payload_bits: int
    strength: float

    def _set_key(self, key: bytes, fpr: float, payload_bits: int) -> None:
        """Check and store ``key`` (non-empty bytes), ``fpr`` in (0, 1) and ``payload_bits``
        in 1..32; :class:`ValueError` naming the first that is wrong."""
        if not isinstance(key, (bytes, bytearray)) or len(key) == 0:
            raise ValueError("key must be non-empty bytes")
        if not 0.0 < float(fpr) < 1.0:
            raise ValueError(f"fpr must be in (0, 1), got {fpr}")
        if not 1 <= int(payload_bits) <= 32:
            raise ValueError(f"payload_bits must be in 1..32, got {payload_bits}")
        self._key = bytes(key)
        self.fpr = float(fpr)
        self.payload_bits = int(payload_bits)

    def __repr__(self) -> str:  # never show the key
        return (f"{type(self).__name__}(fpr={self.fpr}, payload_bits={self.payload_bits}, "
                f"strength={self.strength})")

    def _rng(self, purpose: str) -> np.random.Generator:
        return keyed_rng(self._key, f"{self.scheme}/v{self.version}/{purpose}")


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


def payload_hex(value: int, bits: int) -> str:
    """A payload as reported in results: hex, ``ceil(bits / 4)`` digits."""
    return f"{value:0{(bits + 3) // 4}x}"


def upper_tail(z: float) -> float:
    """``P(Z >= z)`` for a standard normal ``Z`` (the p-value of one pilot z-score)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def check_audio(artifact: Artifact, verb: str, *, scheme: str, min_seconds: float,
                sample_rates: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Validate audio for an audio scheme; return ``(samples x channels float32, rate)``.

    Raises
    ------
    CannotWatermark
        Not audio, a sample rate outside ``sample_rates`` (inclusive), a shape other than
        ``N`` / ``N x C``, non-numeric or non-finite samples, or a clip shorter than
        ``min_seconds``; the message starts with ``cannot {verb}``.
    """
    if artifact.modality != Modality.AUDIO:
        raise CannotWatermark(f"cannot {verb}: {scheme} works on audio, not "
                              f"{artifact.modality.value}")
    sr = artifact.sample_rate
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise CannotWatermark(f"cannot {verb}: audio needs a positive integer sample rate, "
                              f"got {sr!r}")
    sr = int(sr)
    if not sample_rates[0] <= sr <= sample_rates[1]:
        raise CannotWatermark(f"cannot {verb}: sample rate {sr} Hz is outside the supported "
                              f"{sample_rates[0]}-{sample_rates[1]} Hz")
    content = artifact.content
    if not isinstance(content, np.ndarray):
        raise CannotWatermark(f"cannot {verb}: audio content must be a numpy array, got "
                              f"{type(content).__name__}")
    if content.ndim == 1:
        x = content[:, None]
    elif content.ndim == 2 and 1 <= content.shape[1] <= 64:
        x = content
    else:
        raise CannotWatermark(f"cannot {verb}: audio must be 1-D (mono) or N x C (channels "
                              f"last, at most 64), got shape {content.shape}")
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32, copy=False)
    elif np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max)
    else:
        raise CannotWatermark(f"cannot {verb}: audio samples must be float (or integer PCM), "
                              f"got {x.dtype}")
    if x.shape[0] < min_seconds * sr or x.shape[0] == 0:
        raise CannotWatermark(f"cannot {verb}: the clip is {x.shape[0] / sr:.2f} s long; "
                              f"at least {min_seconds:g} s are needed")
    if not np.isfinite(x).all():
        raise CannotWatermark(f"cannot {verb}: the audio contains NaN or infinite samples")
    return x, sr


def mix(x: np.ndarray) -> np.ndarray:
    """The mean of the channels of ``samples x channels`` audio (the mid channel)."""
    return x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
