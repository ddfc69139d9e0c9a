"""Adapters for the ``invisible-watermark`` package (``imwatermark``): dwtDct, dwtDctSvd, rivaGan.

They implement the :class:`~guardrail.watermark.base.Watermarker` protocol so the three
methods can be compared with ``guardrail-image`` side by side.

How detection is decided
------------------------
invisible-watermark has no error correction, no synchronisation and no way to tell a
mark from noise: its decoder always returns *some* bits. A mark can therefore only be
tested against the id one expects. Each adapter is built with the ``payload`` it should
look for; :meth:`detect` decodes ``n`` bits, counts the ``k`` that agree with the expected
ones and computes the exact binomial tail ``p = P(X >= k)``, ``X ~ Binomial(n, 1/2)``;
``detected`` is ``p <= fpr``. Without an expected payload, :meth:`detect` returns a
*not performed* result saying so.

The payload bits are XORed with a keyed mask (HMAC-SHA256 of the key) before embedding.
So without the key nothing is detected, and for an unmarked image the ``k`` agreeing bits
are exactly binomial over the choice of key. Caveat: the library's decoder is strongly
biased on unmarked images (mostly zeros for dwtDct and dwtDctSvd), so for one *fixed* key
and id the decoded bits of unmarked images are nearly the same from image to image; the
stated false-positive rate is then a probability over keys (or over uniformly random ids),
not over images. (With 3 keys and 32-bit ids in the 48-bit field we measured 1 false
positive in 1000 unmarked images at ``fpr=1e-4``; with a fresh key per image, 0.)
``payload`` in the result is set only when all ``n`` bits agree with the expected id
(there is no checksum to vouch for a partially matching id).

Capacities: dwtDct and dwtDctSvd carry ``payload_bits`` bits (default 48, 8-64 allowed);
rivaGan always 32.

Known limits of invisible-watermark 0.2 that the adapters turn into clear results:

* images with fewer than 256 x 256 pixels raise ``RuntimeError`` in the library ->
  :class:`CannotWatermark` / not performed;
* only 3-channel 8-bit images work (it calls ``cv2.cvtColor(BGR2YUV)``). RGB is converted
  to the library's BGR order and back; RGBA keeps its alpha channel; grey images are
  refused (dwtDct and dwtDctSvd mark the chroma channel U, so a grey image cannot carry
  the mark without becoming a colour image);
* dwtDct and dwtDctSvd write the inverse wavelet transform (floats) back into the
  ``uint8`` YUV array without rounding or clipping, so values are truncated and out-of-
  range values wrap around; both use the U channel only (the V scale is ignored);
* rivaGan needs ``onnxruntime`` and its models loaded once (``WatermarkEncoder.loadModel``,
  done here on first use); importing ``imwatermark`` imports ``torch`` (slow), and
  rivaGan is slow on large images (seconds per megapixel on a CPU). Its decoder
  thresholds the network's raw outputs at 0.52, not 0 (kept as the library does it).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
from typing import Any

import numpy as np

from .._types import Artifact, Modality, WatermarkResult
from ..errors import DependencyError
from .base import CannotWatermark, check_payload, not_performed

__all__ = [
    "METHODS",
    "DwtDctSvdWatermark",
    "DwtDctWatermark",
    "InvisibleWatermark",
    "RivaGanWatermark",
    "binomial_tail",
]

#: The methods of invisible-watermark wrapped here.
METHODS = ("dwtDct", "dwtDctSvd", "rivaGan")
#: invisible-watermark refuses images with fewer pixels than this.
MIN_PIXELS = 256 * 256
_RIVA_LOCK = threading.Lock()


def binomial_tail(k: int, n: int) -> float:
    """Exact ``P(X >= k)`` for ``X ~ Binomial(n, 1/2)``."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n


def _imwatermark() -> Any:
    try:
        import imwatermark
    except ImportError as exc:
        raise DependencyError("invisible-watermark", "watermark",
                              purpose="the dwtDct, dwtDctSvd and rivaGan watermarks") from exc
    return imwatermark


class InvisibleWatermark:
    """One method of invisible-watermark behind the Watermarker protocol.

    Parameters
    ----------
    method : {"dwtDct", "dwtDctSvd", "rivaGan"}
        The invisible-watermark method; also the scheme name.
    key : bytes
        Secret key; derives the mask XORed onto the payload bits.
    fpr : float
        False-positive rate at which :meth:`detect` decides ``detected``.
    payload_bits : int or None
        Capacity; default 48 for dwtDct/dwtDctSvd (8-64 allowed), always 32 for rivaGan.
    payload : int or None
        The id that :meth:`detect` looks for. Without it :meth:`detect` cannot decide
        and returns a *not performed* result.
    """

    version = "1"
    modality = Modality.IMAGE

    def __init__(self, method: str, key: bytes, *, fpr: float = 1e-4,
                 payload_bits: int | None = None, payload: int | None = None) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if not isinstance(key, (bytes, bytearray)) or len(key) == 0:
            raise ValueError("key must be non-empty bytes")
        if not 0.0 < float(fpr) < 1.0:
            raise ValueError(f"fpr must be in (0, 1), got {fpr}")
        if method == "rivaGan":
            if payload_bits not in (None, 32):
                raise ValueError("rivaGan carries exactly 32 bits")
            payload_bits = 32
        elif payload_bits is None:
            payload_bits = 48
        elif not 8 <= int(payload_bits) <= 64:
            raise ValueError(f"payload_bits must be in 8..64, got {payload_bits}")
        self.scheme = method
        self.fpr = float(fpr)
        self.payload_bits = int(payload_bits)
        if payload is not None and not 0 <= int(payload) < (1 << self.payload_bits):
            raise ValueError(f"payload must be in [0, 2**{self.payload_bits})")
        self.payload = None if payload is None else int(payload)
        digest = hmac.new(bytes(key), f"guardrail/invisible/{method}/mask".encode(),
                          hashlib.sha256).digest()
        bits = np.unpackbits(np.frombuffer(digest, dtype=np.uint8))
        self._mask = bits[: self.payload_bits].astype(np.uint8)

    def __repr__(self) -> str:  # never show the key
        return (f"{type(self).__name__}(method={self.scheme!r}, fpr={self.fpr}, "
                f"payload_bits={self.payload_bits})")

    # ------------------------------------------------------------------ helpers
    def _plain(self, payload: int) -> np.ndarray:
        n = self.payload_bits
        return np.array([(payload >> (n - 1 - i)) & 1 for i in range(n)], dtype=np.uint8)

    def _bits(self, payload: int) -> np.ndarray:
        """The bits actually embedded: the payload XOR the key's mask."""
        return self._plain(payload) ^ self._mask

    def _to_bgr(self, content: object) -> tuple[np.ndarray, np.ndarray | None]:
        """Validate; return the BGR array the library expects and the alpha channel."""
        if not isinstance(content, np.ndarray):
            raise CannotWatermark(f"image content must be a numpy array, got "
                                  f"{type(content).__name__}")
        if content.dtype != np.uint8:
            raise CannotWatermark(f"{self.scheme} needs a uint8 image, got {content.dtype}")
        if content.ndim == 2:
            raise CannotWatermark(f"{self.scheme} needs a colour image (it marks colour "
                                  f"channels); got a grey HxW array - convert it to RGB")
        if content.ndim != 3 or content.shape[2] not in (3, 4):
            raise CannotWatermark(f"{self.scheme} needs an HxWx3 (RGB) or HxWx4 (RGBA) "
                                  f"array, got shape {content.shape}")
        h, w = content.shape[:2]
        if h * w < MIN_PIXELS:
            raise CannotWatermark(f"image is {w}x{h} pixels; invisible-watermark needs at "
                                  f"least {MIN_PIXELS} pixels (256x256)")
        alpha = content[..., 3] if content.shape[2] == 4 else None
        return np.ascontiguousarray(content[..., 2::-1]), alpha

    def _ensure_model(self) -> None:
        if self.scheme != "rivaGan":
            return
        iw = _imwatermark()
        try:
            import onnxruntime  # noqa: F401  (imported to give a clear error)
        except ImportError as exc:
            raise DependencyError("onnxruntime", "watermark",
                                  purpose="the rivaGan watermark") from exc
        with _RIVA_LOCK:
            iw.WatermarkEncoder.loadModel()

    # ------------------------------------------------------------------ protocol
    def embed(self, artifact: Artifact, payload: int) -> Artifact:
        """Return a new artifact carrying ``payload`` (masked with the key).

        Raises
        ------
        CannotWatermark
            Grey, too small (< 256x256 pixels), wrong dtype or shape, or a payload that does
            not fit.
        DependencyError
            invisible-watermark (or onnxruntime for rivaGan) is not installed.
        """
        if artifact.modality != Modality.IMAGE:
            raise CannotWatermark(f"{self.scheme} marks images, not "
                                  f"{artifact.modality.value}")
        payload = check_payload(payload, self.payload_bits)
        bgr, alpha = self._to_bgr(artifact.content)
        iw = _imwatermark()
        self._ensure_model()
        encoder = iw.WatermarkEncoder()
        encoder.set_watermark("bits", [int(b) for b in self._bits(int(payload))])
        try:
            out = encoder.encode(bgr, self.scheme)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise CannotWatermark(f"invisible-watermark {self.scheme} failed: {exc}") from exc
        rgb = np.ascontiguousarray(np.asarray(out, dtype=np.uint8)[..., ::-1])
        if rgb.shape[:2] != artifact.content.shape[:2]:
            raise CannotWatermark(f"invisible-watermark {self.scheme} returned shape "
                                  f"{rgb.shape} for an input of {artifact.content.shape}")
        content = rgb if alpha is None else np.dstack([rgb, alpha])
        return artifact.evolve(content=content, data=None, media_type=None)

    def decode_bits(self, content: np.ndarray) -> np.ndarray:
        """The ``payload_bits`` decoded bits with the key's mask removed (0/1 ``uint8``).

        Raises
        ------
        CannotWatermark
            The array is not an image the library can decode.
        """
        bgr, _ = self._to_bgr(content)
        iw = _imwatermark()
        self._ensure_model()
        decoder = iw.WatermarkDecoder("bits", self.payload_bits)
        try:
            bits = decoder.decode(bgr, self.scheme)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise CannotWatermark(f"invisible-watermark {self.scheme} failed: {exc}") from exc
        raw = np.asarray(bits).astype(np.uint8).ravel()[: self.payload_bits]
        return raw ^ self._mask

    def detect(self, artifact: Artifact, *, expected: int | None = None) -> WatermarkResult:
        """Test for the expected payload; ``detected`` is decided at ``fpr``.

        ``expected`` overrides the ``payload`` given to the constructor (for callers that
        know which id they embedded, e.g. a self-check right after embedding).

        ``score`` is the fraction of agreeing bits ``k / n``; ``p_value`` the exact binomial
        tail. Not performed (``detected=None``) without an expected payload, for inputs the
        library cannot handle, or when invisible-watermark is not installed.
        """
        want = self.payload if expected is None else int(expected)
        if artifact.modality != Modality.IMAGE:
            return not_performed(self.scheme, self.version, f"{self.scheme} checks images, "
                                 f"not {artifact.modality.value}")
        if want is None:
            return not_performed(
                self.scheme, self.version,
                f"{self.scheme} has no sync word or checksum, so a mark can only be tested "
                f"against an expected id; build the adapter with payload=<id>")
        try:
            got = self.decode_bits(artifact.content)
        except (CannotWatermark, DependencyError) as exc:
            return not_performed(self.scheme, self.version, str(exc))
        n = self.payload_bits
        if not 0 <= want < (1 << self.payload_bits):
            return not_performed(self.scheme, self.version,
                                 f"expected id does not fit in {self.payload_bits} bits")
        k = int(np.count_nonzero(got == self._plain(want)))
        p = binomial_tail(k, n)
        detected = p <= self.fpr
        payload = f"{want:0{(n + 3) // 4}x}" if detected and k == n else None
        return WatermarkResult(detected=detected, scheme=self.scheme,
                               scheme_version=self.version, score=k / n, p_value=p,
                               fpr=self.fpr, payload=payload)


class DwtDctWatermark(InvisibleWatermark):
    """invisible-watermark's ``dwtDct`` (DWT + block DCT, chroma U channel)."""

    def __init__(self, key: bytes, *, fpr: float = 1e-4, payload_bits: int = 48,
                 payload: int | None = None) -> None:
        super().__init__("dwtDct", key, fpr=fpr, payload_bits=payload_bits, payload=payload)


class DwtDctSvdWatermark(InvisibleWatermark):
    """invisible-watermark's ``dwtDctSvd`` (DWT + block DCT + SVD, chroma U channel)."""

    def __init__(self, key: bytes, *, fpr: float = 1e-4, payload_bits: int = 48,
                 payload: int | None = None) -> None:
        super().__init__("dwtDctSvd", key, fpr=fpr, payload_bits=payload_bits,
                         payload=payload)


class RivaGanWatermark(InvisibleWatermark):
    """invisible-watermark's ``rivaGan`` (RivaGAN encoder/decoder networks, ONNX, 32 bits)."""

    def __init__(self, key: bytes, *, fpr: float = 1e-4, payload: int | None = None) -> None:
        super().__init__("rivaGan", key, fpr=fpr, payload_bits=32, payload=payload)
