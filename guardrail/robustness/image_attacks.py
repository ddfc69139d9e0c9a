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
* ``flip(1)`` mirrors left-right (the columns, numpy axis 1), ``flip(0)`` top-bottom. ``median(k)`` is a ``k x k``
  median filter; ``chain_crop_resize_jpeg`` and ``chain_blur_noise_resize_webp`` are the two
  combined chains of the watermark targets.

Keyless estimation attacks
--------------------------
``copy((n, estimator))`` and ``removal((n, estimator))`` need marked outputs of one key
(``marked=``, a list of ``uint8`` images) and no key. The estimate of the mark is the
high-pass luminance residual (image minus its Gaussian blur, sigma ``ESTIMATE_SIGMA``) of
``n`` marked images, each resized to the target's size, averaged; with estimator ``"tile"``
it is also averaged over the positions of a tile of side ``sqrt(h * w) / 8`` pixels (the
period of ``guardrail-image`` v1's tile and of v2's sync lattice) and repeated - the
estimator of the evaluation that found v1 copyable; estimator ``"wide"`` is the residual
over a wider band (sigma ``WIDE_SIGMA`` per 256 pixels of the image's side, i.e. the same
band of ``guardrail-image-v2``'s working frame at every size), the informed choice against
a content-bound mark: it carries more of the donor's own coarse structure, a ghost that can
set the content field of a smooth target the donor's way. ``copy`` adds the estimate to an
unrelated image, ``removal`` subtracts it from a marked one (whose own residual is one of
the ``n``), both scaled to a PSNR of ``ESTIMATE_PSNR_DB`` (38 dB) before rounding.
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
    "chain_blur_noise_resize_webp",
    "chain_crop_resize_jpeg",
    "copy",
    "estimate_mark",
    "flip",
    "gaussian_noise",
    "jpeg",
    "median",
    "removal",
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


@attack("flip", Modality.IMAGE)
def flip(artifact: Artifact, axis: Any) -> Artifact:
    """Mirror the image along numpy ``axis``: 1 left-right, 0 top-bottom."""
    img = _image(artifact)
    if axis not in (0, 1) or isinstance(axis, bool):
        raise ValueError(f"flip axis must be 1 (left-right) or 0 (top-bottom), got {axis!r}")
    return _done(artifact, img[:, ::-1] if axis == 1 else img[::-1])


@attack("median", Modality.IMAGE)
def median(artifact: Artifact, size: Any) -> Artifact:
    """``size x size`` median filter (odd size) on every channel."""
    import cv2

    k = int(size)
    if k < 3 or k % 2 == 0:
        raise ValueError(f"median size must be odd and >= 3, got {size}")
    img = _image(artifact)
    rgb, alpha = _split(img)
    return _done(artifact, _join(cv2.medianBlur(np.ascontiguousarray(rgb), k), alpha))


@attack("chain_crop_resize_jpeg", Modality.IMAGE)
def chain_crop_resize_jpeg(artifact: Artifact, strength: Any) -> Artifact:
    """Centred crop keeping ``keep`` of the area, resize by ``scale``, JPEG at ``quality``;
    strength = (keep, scale, quality), e.g. (0.8, 0.5, 70)."""
    keep, scale, quality = strength
    return jpeg(quality)(resize(scale)(crop(1.0 - float(keep))(artifact)))


@attack("chain_blur_noise_resize_webp", Modality.IMAGE)
def chain_blur_noise_resize_webp(artifact: Artifact, strength: Any) -> Artifact:
    """Blur (sigma), Gaussian noise (sigma), resize by ``scale``, WebP at ``quality``;
    strength = (blur_sigma, noise_sigma, scale, quality), e.g. (1.0, 5, 0.7, 60)."""
    b, n, scale, quality = strength
    return webp(quality)(resize(scale)(gaussian_noise(n)(blur(b)(artifact))))


#: Keyless estimation: blur of the residual estimator, of the ``wide`` one, and PSNR of the
#: added estimate.
ESTIMATE_SIGMA, WIDE_SIGMA = 1.5, 4.0
ESTIMATE_PSNR_DB = 38.0


#: The keyless estimators (see the module notes).
ESTIMATORS = ("residual", "tile", "wide")


def _luma_f(img: np.ndarray) -> np.ndarray:
    import cv2

    rgb, _ = _split(img)
    if rgb.ndim == 2:
        return rgb.astype(np.float32)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)


def estimate_mark(marked: Any, shape: tuple[int, int], estimator: str = "residual"
                  ) -> np.ndarray:
    """Keyless estimate of an additive luminance mark from marked images (see the module
    notes): ``shape`` (rows, columns) float32, zero mean."""
    import cv2

    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(map(repr, ESTIMATORS))}, "
                         f"got {estimator!r}")
    h, w = shape
    sigma = WIDE_SIGMA * math.sqrt(h * w) / 256.0 if estimator == "wide" else ESTIMATE_SIGMA
    images = list(marked)
    if not images:
        raise ValueError("estimating a mark needs at least one marked image")
    acc = np.zeros((h, w), np.float32)
    for img in images:
        y = _luma_f(np.asarray(img))
        res = y - cv2.GaussianBlur(y, (0, 0), sigma)
        if res.shape != (h, w):
            res = cv2.resize(res, (w, h), interpolation=cv2.INTER_LINEAR)
        acc += res
    acc /= np.float32(len(images))
    if estimator == "tile":
        p = max(2, round(math.sqrt(h * w) / 8))
        ph, pw = -(-h // p) * p, -(-w // p) * p
        canvas = np.zeros((ph, pw), np.float32)
        count = np.zeros((ph, pw), np.float32)
        canvas[:h, :w], count[:h, :w] = acc, 1.0
        tile = canvas.reshape(ph // p, p, pw // p, p).sum(axis=(0, 2))
        n = count.reshape(ph // p, p, pw // p, p).sum(axis=(0, 2))
        tile /= np.maximum(n, 1.0)
        acc = np.tile(tile, (ph // p, pw // p))[:h, :w]
    return acc - np.float32(acc.mean())


def _apply_estimate(img: np.ndarray, est: np.ndarray, sign: float, psnr_db: float
                    ) -> np.ndarray:
    rgb, alpha = _split(img)
    rms = math.sqrt(float(np.mean(est.astype(np.float64) ** 2)))
    want = 255.0 / 10.0 ** (psnr_db / 20.0)
    d = est * np.float32(sign * want / max(rms, 1e-9))
    f = rgb.astype(np.float32) + (d if rgb.ndim == 2 else d[..., None])
    return _join(np.clip(f + 0.5, 0, 255).astype(np.uint8), alpha)


def _estimation_attack(name: str, sign: float, own: bool) -> Any:
    def make(strength: Any, *, marked: Any = None, psnr_db: float = ESTIMATE_PSNR_DB
             ) -> Attack:
        n, estimator = strength
        if int(n) < 1:
            raise ValueError(f"{name} needs at least one marked image, got n={n}")
        donors = list(marked or [])
        if len(donors) < int(n) - (1 if own else 0):
            raise ValueError(f"{name}(({n}, {estimator!r})) needs marked={int(n)} marked "
                             f"images of one key, got {len(donors)}")

        def run(artifact: Artifact, _strength: Any) -> Artifact:
            img = _image(artifact)
            use = ([img] + donors[:int(n) - 1]) if own else donors[:int(n)]
            est = estimate_mark(use, img.shape[:2], estimator)
            return _done(artifact, _apply_estimate(img, est, sign, psnr_db))

        return Attack(name=name, strength=(int(n), estimator), modality=Modality.IMAGE, fn=run)

    make.attack_name = name  # type: ignore[attr-defined]
    return make


#: Keyless copy attack: add the mark estimated from ``n`` marked outputs (``marked=``) to
#: an unrelated image; strength = (n, "residual" | "tile" | "wide").
copy = _estimation_attack("copy", +1.0, own=False)
copy.__doc__ = "Add a keyless estimate of the mark of ``marked=`` images (see module notes)."
#: Keyless removal attack: subtract the mark estimated from the attacked image and ``n - 1``
#: other marked outputs (``marked=``); strength = (n, "residual" | "tile" | "wide").
removal = _estimation_attack("removal", -1.0, own=True)
removal.__doc__ = "Subtract a keyless estimate of the mark (see module notes)."


#: The six attacks of the first image watermark targets (TPR >= 0.99 at FPR 1e-4 under each);
#: the lab's suite is now ``SUITES["image"]`` of :mod:`guardrail.robustness.attacks`.
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
