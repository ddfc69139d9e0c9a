"""Helpers shared by the image watermark tests (``guardrail-image`` v1 and v2) and the
audio ones (``audio_art``).

Photos come from scikit-image's data module and scikit-learn's sample images (offline,
bundled with the packages). cv2, scikit-image and scikit-learn are imported only when a
helper is called, so the other watermark tests do not need them.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from guardrail import Artifact, GenerationMetadata, Modality

META = GenerationMetadata(model_id="test")


def art(x: np.ndarray) -> Artifact:
    """An image artifact holding ``x``."""
    return Artifact(modality=Modality.IMAGE, content=x, metadata=META)


def audio_art(x: np.ndarray, sr: int = 16000) -> Artifact:
    """An audio artifact holding ``x`` (float32) at ``sr`` Hz."""
    return Artifact(modality=Modality.AUDIO, content=np.asarray(x, dtype=np.float32),
                    metadata=META, sample_rate=sr)


def square(img: np.ndarray, size: int) -> np.ndarray:
    """The central square of ``img`` resized to ``size x size``, as RGB."""
    import cv2

    h, w = img.shape[:2]
    s = min(h, w)
    crop = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    if crop.ndim == 2:
        crop = np.dstack([crop, crop, crop])
    interp = cv2.INTER_AREA if s > size else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interp)


@lru_cache(maxsize=1)
def _library() -> dict[str, np.ndarray]:
    from skimage import data as skdata
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    return {"astronaut": skdata.astronaut(), "coffee": skdata.coffee(),
            "chelsea": skdata.chelsea(), "rocket": skdata.rocket(), "china": china,
            "flower": flower, "camera": skdata.camera(), "brick": skdata.brick(),
            "coins": skdata.coins()}


def load_photos(*names: str) -> dict[str, np.ndarray]:
    """Natural photos at their own sizes, in the order named (loaded once per session;
    treat them as read-only)."""
    library = _library()
    return {name: library[name] for name in names}
