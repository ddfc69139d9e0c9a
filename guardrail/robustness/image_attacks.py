"""Image attacks for the robustness lab, and image quality metrics.

Every attack takes an image artifact whose content is an ``HxWx3`` RGB (or ``HxW`` grey,
or ``HxWx4`` RGBA) ``uint8`` array and returns a new artifact (same metadata; ``data``
and ``media_type`` cleared, since the encoded bytes no longer match). RGBA keeps its alpha
channel, except through JPEG, which has none (the result is RGB).

Conventions
-----------
* ``resize(scale)`` keeps the new size; ``resize_back(scale)`` resizes and then returns to
  the original size. Detectors must handle both.
* ``crop(f)`` removes the fraction ``f`` of the area with a centred crop that keeps the
  aspect ratio (each side times ``sqrt(1 - f)``); ``random_crop(f)`` does the same at a
  position drawn from a generator seeded by the image content (reproducible).
* ``rotate(deg)`` rotates about the centre, keeps the size and fills the uncovered corners
  with black; ``rotate_crop(deg)`` crops to the largest upright rectangle free of border
  and resizes back to the original size.
* Random attacks (noise, random crop) are seeded from the image content, so the same input
  always gives the same output.
* ``brightness(f)`` and ``contrast(f)`` follow Pillow's ``ImageEnhance``: brightness
  multiplies every channel by ``f``; contrast blends with the mean grey level.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np

from .._types import Artifact, Modality
from .base import Attack, attack

__all__ = [
    "TARGET_ATTACKS",
    "blur",
    "brightness",
    "chain",
    "contrast",
    "crop",
    "gaussian_noise",
    "jpeg",
    "psnr",
    "random_crop",
    "resize",
    "resize_back",
    "resize_jpeg",
    "rotate",
    "rotate_crop",
    "ssim",
    "webp",
]


def _image(artifact: Artifact) -> np.ndarray:
    img = artifact.content
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or not (
            img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))):
        raise ValueError("image attacks need an HxW, HxWx3 or HxWx4 uint8 array, got "
                         f"{getattr(img, 'shape', type(img).__name__)}")
    return img


def _done(artifact: Artifact, img: np.ndarray) -> Artifact:
    return artifact.evolve(content=np.ascontiguousarray(img), data=None, media_type=None)


def _seed(img: np.ndarray, salt: str) -> np.random.Generator:
    h = hashlib.sha256(salt.encode())
    h.update(str(img.shape).encode())
    h.update(np.ascontiguousarray(img).tobytes())
    return np.random.default_rng(int.from_bytes(h.digest()[:8], "big"))


def _split(img: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    if img.ndim == 3 and img.shape[2] == 4:
        return img[..., :3], img[..., 3]
    return img, None


def _join(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    if alpha is None:
        return rgb
    return np.dstack([rgb, alpha])


def _codec(img: np.ndarray, ext: str, params: list[int]) -> np.ndarray:
    import cv2

    rgb, _ = _split(img)
    bgr = rgb if rgb.ndim == 2 else np.ascontiguousarray(rgb[..., ::-1])
    ok, buf = cv2.imencode(ext, bgr, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {ext}")
    dec = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return dec if dec.ndim == 2 else dec[..., ::-1]


@attack("jpeg", Modality.IMAGE)
def jpeg(artifact: Artifact, quality: Any) -> Artifact:
    """Re-encode as JPEG at ``quality`` (1-100; OpenCV/libjpeg, 4:2:0 chroma). Drops alpha."""
    import cv2

    img = _codec(_image(artifact), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return _done(artifact, img)


@attack("webp", Modality.IMAGE)
def webp(artifact: Artifact, quality: Any) -> Artifact:
    """Re-encode as lossy WebP at ``quality`` (1-100). Keeps alpha."""
    import cv2

    img = _image(artifact)
    rgb, alpha = _split(img)
    out = _codec(rgb, ".webp", [cv2.IMWRITE_WEBP_QUALITY, int(quality)])
    return _done(artifact, _join(out, alpha))


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    shrink = w * h < img.shape[0] * img.shape[1]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


@attack("resize", Modality.IMAGE)
def resize(artifact: Artifact, scale: Any) -> Artifact:
    """Resize by ``scale`` (e.g. 0.5-1.5) and keep the new size (area / bicubic)."""
    img = _image(artifact)
    h, w = img.shape[:2]
    return _done(artifact, _resize(img, max(1, round(w * scale)), max(1, round(h * scale))))


@attack("resize_back", Modality.IMAGE)
def resize_back(artifact: Artifact, scale: Any) -> Artifact:
    """Resize by ``scale``, then back to the original size."""
    img = _image(artifact)
    h, w = img.shape[:2]
    small = _resize(img, max(1, round(w * scale)), max(1, round(h * scale)))
    return _done(artifact, _resize(small, w, h))


def _crop_box(h: int, w: int, fraction: float, rng: np.random.Generator | None
              ) -> tuple[int, int, int, int]:
    if not 0.0 <= float(fraction) < 1.0:
        raise ValueError(f"crop fraction must be in [0, 1), got {fraction}")
    k = math.sqrt(1.0 - float(fraction))
    ch, cw = max(1, round(h * k)), max(1, round(w * k))
    if rng is None:
        y0, x0 = (h - ch) // 2, (w - cw) // 2
    else:
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return y0, x0, ch, cw


@attack("crop", Modality.IMAGE)
def crop(artifact: Artifact, fraction: Any) -> Artifact:
    """Centred crop removing ``fraction`` of the area, keeping the aspect ratio."""
    img = _image(artifact)
    y0, x0, ch, cw = _crop_box(img.shape[0], img.shape[1], fraction, None)
    return _done(artifact, img[y0:y0 + ch, x0:x0 + cw])


@attack("random_crop", Modality.IMAGE)
def random_crop(artifact: Artifact, fraction: Any) -> Artifact:
    """Crop removing ``fraction`` of the area at a content-seeded random position."""
    img = _image(artifact)
    box = _crop_box(img.shape[0], img.shape[1], fraction, _seed(img, "random_crop"))
    y0, x0, ch, cw = box
    return _done(artifact, img[y0:y0 + ch, x0:x0 + cw])


def _rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(degrees), 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@attack("rotate", Modality.IMAGE)
def rotate(artifact: Artifact, degrees: Any) -> Artifact:
    """Rotate counter-clockwise by ``degrees`` about the centre; same size, black corners."""
    return _done(artifact, _rotate(_image(artifact), float(degrees)))


@attack("rotate_crop", Modality.IMAGE)
def rotate_crop(artifact: Artifact, degrees: Any) -> Artifact:
    """Rotate, crop to the largest upright rectangle without border, resize back."""
    img = _image(artifact)
    h, w = img.shape[:2]
    rot = _rotate(img, float(degrees))
    a = abs(math.radians(float(degrees)))
    # largest axis-aligned rectangle of the image's aspect ratio inside the rotated frame
    k = 1.0 / (math.cos(a) + math.sin(a) * max(w / h, h / w))
    ch, cw = max(1, int(h * k)), max(1, int(w * k))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return _done(artifact, _resize(rot[y0:y0 + ch, x0:x0 + cw], w, h))


@attack("gaussian_noise", Modality.IMAGE)
def gaussian_noise(artifact: Artifact, sigma: Any) -> Artifact:
    """Add i.i.d. Gaussian noise of standard deviation ``sigma`` (0-255 scale), clip."""
    img = _image(artifact)
    rgb, alpha = _split(img)
    noise = _seed(img, "noise").standard_normal(rgb.shape, dtype=np.float32) * float(sigma)
    out = np.clip(rgb.astype(np.float32) + noise + 0.5, 0, 255).astype(np.uint8)
    return _done(artifact, _join(out, alpha))


@attack("blur", Modality.IMAGE)
def blur(artifact: Artifact, sigma: Any) -> Artifact:
    """Gaussian blur with standard deviation ``sigma`` pixels."""
    import cv2

    img = _image(artifact)
    rgb, alpha = _split(img)
    out = cv2.GaussianBlur(rgb, (0, 0), float(sigma))
    return _done(artifact, _join(out, alpha))


@attack("brightness", Modality.IMAGE)
def brightness(artifact: Artifact, factor: Any) -> Artifact:
    """Multiply every colour channel by ``factor`` (1.2 = +20 %), clip."""
    img = _image(artifact)
    rgb, alpha = _split(img)
    out = np.clip(rgb.astype(np.float32) * float(factor) + 0.5, 0, 255).astype(np.uint8)
    return _done(artifact, _join(out, alpha))


@attack("contrast", Modality.IMAGE)
def contrast(artifact: Artifact, factor: Any) -> Artifact:
    """Scale the distance to the mean grey level by ``factor``, clip (Pillow's definition)."""
    img = _image(artifact)
    rgb, alpha = _split(img)
    f = rgb.astype(np.float32)
    grey = f if f.ndim == 2 else 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    mean = float(np.round(grey.mean()))
    out = np.clip(mean + float(factor) * (f - mean) + 0.5, 0, 255).astype(np.uint8)
    return _done(artifact, _join(out, alpha))


@attack("resize+jpeg", Modality.IMAGE)
def resize_jpeg(artifact: Artifact, strength: Any) -> Artifact:
    """Resize by ``scale`` (new size kept), then JPEG at ``quality``; strength = (scale, q)."""
    scale, quality = strength
    return jpeg(quality)(resize(scale)(artifact))


def chain(*attacks: Attack) -> Attack:
    """Apply several image attacks in order, as one attack named ``a+b+...``."""
    if not attacks:
        raise ValueError("chain needs at least one attack")

    def run(artifact: Artifact, _strength: Any) -> Artifact:
        for a in attacks:
            artifact = a(artifact)
        return artifact

    return Attack(name="+".join(a.name for a in attacks),
                  strength=tuple(a.strength for a in attacks), modality=Modality.IMAGE,
                  fn=run)


#: The six attacks of the image watermark targets (TPR >= 0.99 at FPR 1e-4 under each): the
#: image lab's suite, ``SUITES["image"]`` of :mod:`guardrail.robustness.attacks`.
TARGET_ATTACKS: tuple[Attack, ...] = (
    jpeg(50),
    resize(0.5),
    crop(0.2),
    rotate(2),
    gaussian_noise(5),
    brightness(1.2),
)

def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 images of the same shape."""
    from skimage.metrics import peak_signal_noise_ratio

    _check_pair(a, b)
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(a, b, data_range=255))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (skimage, Gaussian weights) between two uint8 images."""
    from skimage.metrics import structural_similarity

    _check_pair(a, b)
    channel_axis = -1 if a.ndim == 3 else None
    return float(structural_similarity(a, b, data_range=255, channel_axis=channel_axis,
                                       gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
