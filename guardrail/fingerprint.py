"""Content fingerprints that survive the edits a stripped file goes through.

Recovery through the watermark (``guardrail verify`` on a file whose credentials were
stripped) finds candidate records by the watermark id, then checks that the recorded
content matches this file with one of these fingerprints - so a mark copied onto other
content does not recover someone else's record.

* images: a 64-bit DCT perceptual hash (pHash) of the luminance; match by Hamming distance.
  A pHash binds only a picture with coarse structure of its own (:func:`weak_binding`): on
  a smooth one (a gradient, a blurred photo) most of its 63 coefficients sit near their
  median, and a faint copy of another picture - the ghost a copied watermark brings, at
  38 dB - sets their signs to that picture's, so its hash "matches" the other picture's
  record (measured: a wide-band copy onto a colour gradient matched its donor's hash in 23
  of 24 trials). Such a picture is not bound: it needs ``IMAGE_MIN_RELIABLE`` coefficients
  at least ``IMAGE_RELIABLE_MARGIN`` from the median (natural photos: 42-61; a
  gradient, with or without a copy on it: 4);
* audio: a 64-band log-energy envelope over time at 8 kHz; match by correlation;
* text: SHA-256 of the visible text with Unicode and white space normalised; exact match.

A crop or rotation beyond the pHash's reach is bound through the image watermark's geometry
instead (:mod:`guardrail.fingerprint_region`).

The work is bounded whatever the artifact claims: a sample rate, duration or text length
beyond the ``[limits]`` (:class:`~guardrail.config.Limits`) is refused with
:class:`~guardrail.errors.UnsupportedMediaError` before any resampling, and images are
reduced a block of rows at a time.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass

import numpy as np

from ._types import Artifact, Modality
from .config import Limits
from .errors import UnsupportedMediaError
from .signal import resample
from .textnorm import visible_text

__all__ = ["IMAGE_MAX_DISTANCE", "Observed", "best_match", "binds", "fingerprint", "fingerprints",
           "match", "observe", "weak_binding"]

#: largest pHash Hamming distance (of 64 bits) accepted as "the same picture": re-encoding,
#: resizing and mild crops stay well below; unrelated images are near 32.
IMAGE_MAX_DISTANCE = 12
#: an image's pHash binds it when at least ``IMAGE_MIN_RELIABLE`` of its 63 coefficients lie
#: ``IMAGE_RELIABLE_MARGIN`` or more (orthonormal DCT of the 32 x 32 luminance, grey levels)
#: from their median: a 38 dB copy cannot set those (see the module notes)
IMAGE_RELIABLE_MARGIN, IMAGE_MIN_RELIABLE = 8.0, 30
#: smallest envelope correlation accepted as "the same recording"
AUDIO_MIN_CORRELATION = 0.8
#: pixels converted to luminance at a time (bounds the float temporaries of big images)
_LUMA_BLOCK = 1 << 20
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _luminance(arr: np.ndarray) -> np.ndarray:
    """``float32`` luminance of an ``HxW`` or ``HxWxC`` image, a block of rows at a time."""
    if arr.ndim == 2:
        return arr.astype(np.float32)
    if arr.ndim != 3 or arr.shape[2] < 3:
        return arr[..., 0].astype(np.float32) if arr.ndim == 3 else arr.astype(np.float32)
    h, w = arr.shape[:2]
    out = np.empty((h, w), dtype=np.float32)
    rows = max(1, _LUMA_BLOCK // max(w, 1))
    for y in range(0, h, rows):
        out[y:y + rows] = arr[y:y + rows, :, :3].astype(np.float32) @ _LUMA
    return out


def _phash(img: np.ndarray, limits: Limits) -> str:
    return _hash(_phash_coefficients(img, limits)[0])


def _hash(coeffs: np.ndarray) -> str:
    """The pHash of :func:`_phash_coefficients`: one bit per coefficient above the median."""
    value = 0
    for b in coeffs > np.median(coeffs):
        value = (value << 1) | int(b)
    return f"phash:{value:016x}"


#: a left-right mirror multiplies the DCT coefficient of horizontal frequency v by (-1)**v
_MIRROR_SIGNS = np.where(np.arange(8) % 2 == 1, -1.0, 1.0).astype(np.float32)[None, :]


def _phash_coefficients(img: np.ndarray, limits: Limits, *, mirror: bool = False
                        ) -> list[np.ndarray]:
    """The 63 low-frequency DCT coefficients (DC left out) the pHash is made of - and, with
    ``mirror``, those of the left-right mirror image: the same coefficients with the sign of
    the odd horizontal frequencies flipped (a DCT-II of a reversed row), no second pass."""
    import cv2

    arr = np.asarray(img)
    h, w = arr.shape[:2] if arr.ndim >= 2 else (0, 0)
    if arr.ndim not in (2, 3) or h == 0 or w == 0:
        raise UnsupportedMediaError(f"cannot fingerprint an image array of shape {arr.shape}")
    if h * w > limits.max_image_pixels:
        raise UnsupportedMediaError(f"cannot fingerprint an image of {w}x{h} pixels: above "
                                    f"the limit of {limits.max_image_pixels} "
                                    "(limits.max_image_pixels)")
    small = cv2.resize(_luminance(arr), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8]
    views = (low, low * _MIRROR_SIGNS) if mirror else (low,)
    return [np.asarray(v.flatten()[1:]) for v in views]


def _audio_envelope(samples: np.ndarray, rate: int, limits: Limits) -> str:
    x = np.asarray(samples)
    if not limits.min_audio_rate <= rate <= limits.max_audio_rate:
        raise UnsupportedMediaError(
            f"cannot fingerprint audio at {rate} Hz: outside the accepted "
            f"{limits.min_audio_rate}-{limits.max_audio_rate} Hz (limits.min_audio_rate, "
            "limits.max_audio_rate)")
    if x.ndim not in (1, 2) or x.size == 0:
        raise UnsupportedMediaError(f"cannot fingerprint an audio array of shape {x.shape}")
    if x.shape[0] / rate > limits.max_audio_seconds:
        raise UnsupportedMediaError(
            f"cannot fingerprint {x.shape[0] / rate:.1f} s of audio: above the limit of "
            f"{limits.max_audio_seconds:g} s (limits.max_audio_seconds)")
    # the channels' mean in float64, then float32 as the resampler works (a mono float32
    # clip is used as it is: the same samples without a float64 copy)
    x = x.mean(axis=1, dtype=np.float64) if x.ndim == 2 else x
    x = resample(x, rate, 8000)
    frames = max(1, len(x) // 64)
    usable = x[: frames * 64].reshape(64, -1) if len(x) >= 64 else np.zeros((64, 1))
    env = np.log10(np.mean(usable**2, axis=1) + 1e-10)
    q = np.clip(np.round((env + 10) * 10), 0, 255).astype(np.uint8)
    return f"env:{len(x)}:{q.tobytes().hex()}"


def _text_hash(text: str) -> str:
    norm = " ".join(unicodedata.normalize("NFC", visible_text(text)).split())
    return "text-sha256:" + hashlib.sha256(norm.encode("utf-8")).hexdigest()


def fingerprint(artifact: Artifact, *, limits: Limits | None = None) -> str:
    """A robust fingerprint of the artifact's content (see the module docstring).

    Raises
    ------
    UnsupportedMediaError
        Content beyond ``limits`` (default: the documented defaults) or of a shape that
        cannot be fingerprinted.
    """
    limits = limits or Limits()
    if artifact.modality is Modality.IMAGE:
        return _phash(artifact.content, limits)
    if artifact.modality is Modality.AUDIO:
        return _audio_envelope(artifact.content, int(artifact.sample_rate or 8000), limits)
    text = str(artifact.content)
    if len(text) > limits.max_text_chars:
        raise UnsupportedMediaError(f"cannot fingerprint a text of {len(text)} characters: "
                                    f"above the limit of {limits.max_text_chars} "
                                    "(limits.max_text_chars)")
    return _text_hash(text)


@dataclass(frozen=True)
class Observed:
    """What a file offers a record to match (:func:`observe`)."""

    #: the artifact's :func:`fingerprint` and, for an image, its left-right mirror image's
    #: (a flip keeps the picture, and the watermarks survive it, but not its pHash)
    fingerprints: list[str]
    #: why the fingerprint cannot bind the content (:func:`weak_binding`), or ``None``
    weak: str | None


def observe(artifact: Artifact, *, limits: Limits | None = None) -> Observed:
    """:func:`fingerprints` and :func:`weak_binding` of ``artifact`` from one pass over it.

    Raises
    ------
    UnsupportedMediaError
        As :func:`fingerprint`.
    """
    if artifact.modality is not Modality.IMAGE:
        return Observed([fingerprint(artifact, limits=limits)], None)
    coeffs = _phash_coefficients(artifact.content, limits or Limits(), mirror=True)
    return Observed([_hash(c) for c in coeffs], _weak_reason(coeffs[0]))


def weak_binding(artifact: Artifact, *, limits: Limits | None = None) -> str | None:
    """Why ``artifact``'s fingerprint cannot bind its content to a record, or ``None`` when
    it can. Only images can be weakly bound (see the module notes); audio envelopes and text
    hashes are taken as they are.

    Raises
    ------
    UnsupportedMediaError
        As :func:`fingerprint`.
    """
    if artifact.modality is not Modality.IMAGE:
        return None
    return observe(artifact, limits=limits).weak


def _weak_reason(c: np.ndarray) -> str | None:
    k = int(np.sum(np.abs(c - np.median(c)) >= IMAGE_RELIABLE_MARGIN))
    if k >= IMAGE_MIN_RELIABLE:
        return None
    return (f"the picture has too little coarse structure for its content fingerprint to "
            f"bind it ({k} of 63 pHash coefficients at least {IMAGE_RELIABLE_MARGIN:g} from "
            f"their median, {IMAGE_MIN_RELIABLE} needed): a faint copy of another picture, "
            "such as the ghost a copied watermark brings, would set its fingerprint")


def fingerprints(artifact: Artifact, *, limits: Limits | None = None) -> list[str]:
    """What a record may match: :attr:`Observed.fingerprints`."""
    return observe(artifact, limits=limits).fingerprints


def best_match(recorded: str, observed: list[str]) -> tuple[bool, float | None]:
    """:func:`match` against each of ``observed`` (:func:`fingerprints`): a match if any
    matches, with the closest score."""
    results = [match(recorded, o) for o in observed]
    scored = [r for r in results if r[1] is not None]
    if not scored:
        return False, None
    closest = (min if recorded.startswith("phash:") else max)(scored, key=lambda r: r[1])
    return any(ok for ok, _ in results), closest[1]


def binds(recorded: str, artifact: Artifact, *, limits: Limits | None = None) -> bool:
    """Does the recorded fingerprint match ``artifact`` (or its mirror image), and does its
    fingerprint bind it?"""
    seen = observe(artifact, limits=limits)
    return seen.weak is None and best_match(recorded, seen.fingerprints)[0]


def match(recorded: str, observed: str) -> tuple[bool, float | None]:
    """Does ``observed`` match ``recorded``? Returns ``(matches, distance-or-similarity)``."""
    if not recorded or not observed or recorded.split(":")[0] != observed.split(":")[0]:
        return False, None
    kind = recorded.split(":")[0]
    if kind == "phash":
        dist = bin(int(recorded[6:], 16) ^ int(observed[6:], 16)).count("1")
        return dist <= IMAGE_MAX_DISTANCE, float(dist)
    if kind == "env":
        _, n_a, hex_a = recorded.split(":")
        _, n_b, hex_b = observed.split(":")
        a = np.frombuffer(bytes.fromhex(hex_a), np.uint8).astype(float)
        b = np.frombuffer(bytes.fromhex(hex_b), np.uint8).astype(float)
        if a.std() == 0 or b.std() == 0:
            return False, None
        corr = float(np.corrcoef(a, b)[0, 1])
        # a crop changes the length: the envelope then covers other time spans
        length_ok = abs(int(n_a) - int(n_b)) <= 0.05 * max(int(n_a), 1)
        return corr >= AUDIO_MIN_CORRELATION and length_ok, round(corr, 4)
    return recorded == observed, 0.0 if recorded == observed else None
