"""Pieces shared by guardrail's own image watermarks (``guardrail-image`` v1 and v2).

The working frame's shape, the luminance resampled to it, adding a luminance change to
grey, RGB or RGBA pixels, and ``detect`` on top of a scheme's ``analyse``. Nothing here
depends on a key or changes what a scheme embeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._types import Artifact, Modality, WatermarkResult
from .base import (
    CannotWatermark,
    KeyedScheme,
    check_payload,
    not_performed,
    payload_hex,
    upper_tail,
)
from .ecc import PayloadCode

__all__ = ["AnalysisBase", "ImageScheme", "add_luma", "blurred_gain", "dither", "norm_shape",
           "reliability", "work_luma"]


def norm_shape(h: int, w: int, area: int) -> tuple[int, int]:
    """Shape of a working frame of ``area`` pixels with the aspect ratio of ``h x w``."""
    s = math.sqrt(area / (h * w))
    return max(1, round(h * s)), max(1, round(w * s))


def work_luma(content: np.ndarray, kind: str, shape: tuple[int, int]) -> np.ndarray:
    """Luminance (BT.601) resampled to ``shape`` (rows, columns), float32."""
    import cv2

    h, w = content.shape[:2]
    grey = np.ascontiguousarray(content) if kind == "gray" else cv2.cvtColor(
        np.ascontiguousarray(content[..., :3]), cv2.COLOR_RGB2GRAY)
    hw, ww = shape
    if (hw, ww) == (h, w):
        return grey.astype(np.float32)
    if h * w > 16 * hw * ww:  # very large: shrink in uint8 first (memory, speed)
        grey = cv2.resize(grey, (4 * ww, 4 * hw), interpolation=cv2.INTER_AREA)
        h, w = grey.shape
    interp = cv2.INTER_AREA if hw * ww < h * w else cv2.INTER_LINEAR
    return cv2.resize(grey.astype(np.float32), (ww, hw), interpolation=interp)


def add_luma(content: np.ndarray, delta: np.ndarray, kind: str) -> np.ndarray:
    """``content`` (uint8 grey, RGB or RGBA) with the float32 change ``delta`` (``h x w``)
    added to grey or to R, G and B alike, saturated to 8 bits; alpha is kept."""
    import cv2

    if kind == "gray":
        return cv2.add(content, delta, dtype=cv2.CV_8U)
    h, w = content.shape[:2]
    out = np.empty_like(content)
    step = max(1, (1 << 22) // w)  # rows per strip: about 4 M pixels
    for y in range(0, h, step):
        rows = slice(y, y + step)
        out[rows, :, :3] = cv2.add(
            np.ascontiguousarray(content[rows, :, :3]),
            cv2.cvtColor(delta[rows], cv2.COLOR_GRAY2RGB), dtype=cv2.CV_8U)
    if kind == "rgba":
        out[..., 3] = content[..., 3]
    return out


def low_pass(a: np.ndarray, sigma: float) -> np.ndarray:
    """``a`` blurred by a Gaussian of ``sigma`` pixels and scaled back to its RMS (``a``
    itself when ``sigma`` is 0): the same power, moved to lower spatial frequencies."""
    if sigma <= 0:
        return a
    import cv2

    out = cv2.GaussianBlur(np.ascontiguousarray(a, np.float32), (0, 0), float(sigma))
    rms_in, rms_out = float(np.sqrt(np.mean(a * a))), float(np.sqrt(np.mean(out * out)))
    return out * np.float32(rms_in / rms_out) if rms_out > 0 else out


_DITHER: dict[tuple[int, int], np.ndarray] = {}


def dither(h: int, w: int) -> np.ndarray:
    """A fixed random dither in [-0.5, 0.5) before rounding to 8 bits: keeps sub-level
    changes (flat areas) in expectation; the same for every embed of one size (cached for
    the last size up to 16 Mpx)."""
    d = _DITHER.get((h, w))
    if d is None:
        rng = np.random.Generator(np.random.SFC64(0x5EED))
        d = rng.random((h, w), dtype=np.float32) - np.float32(0.5)
        _DITHER.clear()
        if h * w <= 1 << 24:
            _DITHER[(h, w)] = d
    return d


@dataclass(frozen=True)
class AnalysisBase:
    """The fields every image scheme's ``analyse`` result starts with (diagnostics; no key).

    Attributes
    ----------
    z : float
        Largest pilot z-score over everything tried.
    p_value, p_pilot : float
        Combined p-value and the pilot's Bonferroni bound.
    payload : int or None
        Decoded id whose CRC matched, else ``None``.
    scale, angle_deg : float
        Geometry of the best candidate (scale > 1: content enlarged).
    consistent : bool
        Whether the mark passed the scheme's consistency check against copied marks
        (always true for a scheme without one); ``detect`` requires it.
    """

    z: float
    p_value: float
    p_pilot: float
    payload: int | None
    scale: float = 1.0
    angle_deg: float = 0.0
    consistent: bool = True
    #: why ``consistent`` is false, when the scheme says more than "a copy"
    copy_reason: str | None = None


class ImageScheme(KeyedScheme):
    """An image watermark whose ``analyse(content, soft=...)`` returns the best pilot
    ``z``, the combined ``p_value`` and the decoded ``payload`` (or ``None``).

    Both image schemes take ``strength`` in (0, 16] grey levels and carry a 32-bit id
    with a CRC-24 (:class:`~guardrail.watermark.ecc.PayloadCode`).
    """

    modality = Modality.IMAGE

    def __init__(self, key: bytes, *, fpr: float, payload_bits: int, strength: float) -> None:
        self._set_key(key, fpr, payload_bits)
        if not 0.0 < float(strength) <= 16.0:
            raise ValueError(f"strength must be in (0, 16] grey levels, got {strength}")
        self.strength = float(strength)
        self._code = PayloadCode(info_bits=32, crc_bits=24)

    def analyse(self, content: np.ndarray, *, soft: bool = True) -> Any:
        raise NotImplementedError

    def _p_values(self, n_tests: int, z_max: float, decoded: int | None,
                  max_decodes: int) -> tuple[float, float]:
        """``(p, p_pilot)``: ``p_pilot = min(1, n_tests * Q(z_max))`` (Bonferroni),
        combined with the CRC as in :meth:`_with_crc`."""
        p_pilot = min(1.0, n_tests * upper_tail(z_max))
        return self._with_crc(p_pilot, decoded, max_decodes), p_pilot

    def _with_crc(self, p_pilot: float, decoded: int | None, max_decodes: int) -> float:
        """The combined p-value: with ``p_crc = max_decodes * 2**-24``, ``min(p_pilot,
        p_crc)`` when a decode passed its CRC, else ``min(1, p_pilot + p_crc)``."""
        p_crc = max_decodes * self._code.false_accept_probability
        return min(p_pilot, p_crc) if decoded is not None else min(1.0, p_pilot + p_crc)

    def _check(self, content: object) -> str:
        """Validate an image array for this scheme; return its kind (``gray``, ``rgb``,
        ``rgba``) or raise :class:`CannotWatermark` saying why not."""
        raise NotImplementedError

    def _image_input(self, artifact: Artifact, payload: int) -> tuple[int, str, np.ndarray]:
        """``(payload, kind, content)`` checked for ``embed`` (``content`` C-contiguous);
        :class:`CannotWatermark` for non-images, bad payloads and unusable arrays."""
        if artifact.modality != Modality.IMAGE:
            raise CannotWatermark(f"{self.scheme} marks images, not {artifact.modality.value}")
        payload = check_payload(payload, self.payload_bits)
        kind = self._check(artifact.content)
        return payload, kind, np.ascontiguousarray(artifact.content)

    def detect(self, artifact: Artifact) -> WatermarkResult:
        """Look for this key's mark; ``detected`` is decided at ``fpr``.

        Returns ``detected=None`` with the reason when the content is not an image this
        scheme can check. ``payload`` (hex, ``payload_bits / 4`` digits) is set only when
        the mark is detected and the decoded id passed its CRC.
        """
        scheme, version = self.scheme, self.version
        if artifact.modality != Modality.IMAGE:
            return not_performed(scheme, version,
                                 f"{scheme} checks images, not {artifact.modality.value}")
        try:
            res = self.analyse(artifact.content, soft=False)
        except CannotWatermark as exc:
            return not_performed(scheme, version, str(exc))
        detected = self.decides(res)
        reason = None
        if res.p_value <= self.fpr and not res.consistent:
            reason = res.copy_reason or ("a copy of this key's mark taken from another image: "
                                         "its pattern does not follow this image's content")
        payload = None
        if detected and res.payload is not None and res.payload < (1 << self.payload_bits):
            payload = payload_hex(res.payload, self.payload_bits)
        return WatermarkResult(detected=detected, scheme=scheme, scheme_version=version,
                               score=res.z, p_value=res.p_value, fpr=self.fpr,
                               payload=payload, reason=reason,
                               geometry=self._geometry(res) if detected else None)

    def decides(self, res: AnalysisBase) -> bool:
        """The decision ``detect`` makes on an ``analyse`` result: significant at ``fpr`` and
        not taken for a copy (what the robustness lab counts too)."""
        return res.p_value <= self.fpr and res.consistent

    def _geometry(self, res: Any) -> dict[str, Any] | None:
        """Where a detected file sits in the marked original (``None``: not reported)."""
        return None


def reliability(v: np.ndarray, sigma: float, floor: float) -> np.ndarray:
    """``v`` divided by its local RMS (a Gaussian window of ``sigma`` cells on the torus,
    over the non-zero cells only; plus ``floor`` times the median local mean square).

    For payload soft values: the mark is scaled by the local activity of its picture (the
    perceptual mask) and so is the picture's own residual, the detector's noise, so the
    log-likelihood ratio of a cell goes as ``v * activity / noise**2``, i.e. ``v / noise``;
    the plain sum lets busy regions, where compression and the picture's texture add most
    noise, outvote the rest. But a region that compression flattened is quiet because it
    lost its mark, not because it is clean: with ``floor`` 1 cells quieter than the median
    keep about the median's weight, and only the busier ones are scaled down (a soft
    limiter). Chosen and measured on the image lab's photos, docs/WATERMARKS.md."""
    import cv2

    v = np.asarray(v, dtype=np.float32)
    on = (v != 0).astype(np.float32)
    if not on.any():
        return v
    r = int(math.ceil(4 * sigma))

    def blur(a: np.ndarray) -> np.ndarray:  # on the torus: wrap, blur, cut
        out = cv2.GaussianBlur(np.pad(a, r, mode="wrap"), (2 * r + 1, 2 * r + 1), sigma)
        return out[r:-r, r:-r]

    power = blur(v * v) / np.maximum(blur(on), np.float32(1e-6))
    return v / np.sqrt(power + np.float32(floor * float(np.median(power[on > 0]))))


def blurred_gain(kernel: np.ndarray, sigma: float) -> float:
    """L2 norm of ``kernel`` convolved with a Gaussian blur of ``sigma`` pixels."""
    import cv2

    n = 2 * kernel.shape[0] + 8 * int(math.ceil(sigma)) + 1
    imp = np.zeros((n, n), np.float64)
    imp[n // 2, n // 2] = 1.0
    eff = cv2.filter2D(cv2.GaussianBlur(imp, (0, 0), sigma), cv2.CV_64F, kernel,
                       borderType=cv2.BORDER_CONSTANT)
    return float(np.linalg.norm(eff))
