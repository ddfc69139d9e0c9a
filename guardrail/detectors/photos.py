"""Image detectors on real photographs: the false-positive rate, and the operating point
chosen from it.

A detector's published operating point is measured on its authors' benchmark; on other
photographs its false-positive rate can be far higher (sahu65's ``T_hi`` claims 2.9% and
flags about one in seven of the photographs that ship offline). guardrail therefore sets the
default operating point of the sahu65 probe on real photographs that ship offline, and
measures the false-positive rate of that *procedure* honestly:

* photographs: scikit-image's and scikit-learn's sample photographs, the plain photographs
  among the c2pa-peer fixtures and OpenCV's sample data (Debian ``opencv-doc``), and any
  folders given, without computer-generated images and scientific captures
  (colour wheel, microscopy, telescope, fundus), without images under 128 px, and with
  near-duplicates (the same photo re-encoded or re-signed) merged;
* views: each photo is scored whole and as four corner crops (70% of each side), because a
  detector sees photos at many framings; views of one photo stay together;
* threshold: the lowest one whose false-positive rate over all views is <= the target;
* its false-positive rate: leave one photo out - the threshold is chosen without that
  photo's views, then applied to them - with a 95% interval from a bootstrap over photos.

The result ships as ``calibrations/sahu65-clip-photos.json`` (``guardrail detectors
report --modality image`` rebuilds and re-measures it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import threshold_at_fpr

__all__ = ["NOT_PHOTOGRAPHS", "leave_one_photo_out", "real_photos", "views"]

#: sample images that are not photographs of scenes (computer-generated, or scientific
#: captures through a microscope, a telescope or a fundus camera)
NOT_PHOTOGRAPHS = frozenset({"skimage:colorwheel", "skimage:immunohistochemistry",
                             "skimage:hubble_deep_field", "skimage:retina"})
MIN_SIDE = 128
#: the c2pa-peer fixtures that are plain photographs (checked by eye): the others are
#: colour gradients, collages of photos and gradients, a text render, or re-signed copies
#: of ``CA.jpg``
C2PA_PEER_PHOTOS = ("CA.jpg", "P1000827.jpg", "no_alg.jpg", "cloud.jpg", "ocsp.jpg",
                    "mars.webp", "sample1.webp")
#: the colour photographs of scenes among OpenCV's sample data (Debian ``opencv-doc``,
#: ``examples/data``; checked by eye): not the drawings, test patterns, logos, renders,
#: grayscale stereo/calibration frames, near-duplicate pairs or artificially blurred images
OPENCV_DOC_PHOTOS = ("aero1.jpg", "aloeL.jpg", "apple.jpg", "baboon.jpg", "building.jpg",
                     "butterfly.jpg", "chicky_512.png", "ela_original.jpg", "fruits.jpg",
                     "graf1.png", "home.jpg", "leuvenA.jpg", "messi5.jpg", "orange.jpg",
                     "right.jpg", "rubberwhale1.png", "squirrel_cls.jpg", "stuff.jpg")


def _thumb(rgb: np.ndarray, size: int = 24) -> np.ndarray:
    from PIL import Image

    g = np.asarray(Image.fromarray(rgb).convert("L").resize((size, size),
                                                             Image.Resampling.BILINEAR),
                   dtype=np.float64).ravel()
    g -= g.mean()
    return g / max(float(np.linalg.norm(g)), 1e-9)


def real_photos(extra_dirs: Sequence[str | Path] = (), *, c2pa_peer: str | Path | None = None,
                opencv_doc: str | Path | None = None, dedupe_corr: float = 0.97
                ) -> tuple[list[tuple[str, np.ndarray]], dict[str, list[str]]]:
    """Unique real photographs: ``[(name, rgb)]`` and ``{kept: [dropped duplicates]}``.

    ``extra_dirs``: every image in them counts as a photograph; ``c2pa_peer`` (the fixtures
    folder) and ``opencv_doc`` (OpenCV's ``examples/data``): only the files listed in
    :data:`C2PA_PEER_PHOTOS` / :data:`OPENCV_DOC_PHOTOS` are used.
    """
    from ..corpora import natural_images
    from ..media import decode

    found = [(n, a) for n, a in natural_images(tuple(Path(d) for d in extra_dirs))
             if n not in NOT_PHOTOGRAPHS and min(a.shape[:2]) >= MIN_SIDE]
    for folder, names, label in ((c2pa_peer, C2PA_PEER_PHOTOS, "c2pa-peer"),
                                 (opencv_doc, OPENCV_DOC_PHOTOS, "opencv")):
        if folder is None:
            continue
        for fname in names:
            f = Path(folder) / fname
            if f.is_file():
                rgb = decode(f.read_bytes(), name=fname).content
                if rgb.ndim == 3 and min(rgb.shape[:2]) >= MIN_SIDE:
                    found.append((f"{label}:{fname}", np.ascontiguousarray(rgb[..., :3])))
    kept: list[tuple[str, np.ndarray, np.ndarray]] = []
    dupes: dict[str, list[str]] = {}
    for name, arr in found:
        t = _thumb(arr)
        match = next((k for k in kept if float(k[2] @ t) >= dedupe_corr), None)
        if match is None:
            kept.append((name, arr, t))
            dupes[name] = []
        else:
            dupes[match[0]].append(name)
    return [(n, a) for n, a, _ in kept], dupes


def views(rgb: np.ndarray, *, crop: float = 0.7) -> list[np.ndarray]:
    """The whole photo and its four corner crops."""
    h, w = rgb.shape[:2]
    ch, cw = int(h * crop), int(w * crop)
    return [rgb, rgb[:ch, :cw], rgb[:ch, w - cw:], rgb[h - ch:, :cw], rgb[h - ch:, w - cw:]]


def leave_one_photo_out(scores: Sequence[Sequence[float]], target_fpr: float, *,
                        n_bootstrap: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Operating point from per-photo view scores, and its leave-one-photo-out FPR.

    Returns
    -------
    dict
        ``threshold`` (chosen on every view), ``fpr_in_sample`` (on the views it was chosen
        on: optimistic), ``fpr_loo`` and ``fpr_loo_ci`` (95%, bootstrap over photos),
        ``photos_flagged_loo`` (indices of photos with a false positive), ``n_photos``,
        ``n_views``.
    """
    groups = [np.asarray(s, dtype=float) for s in scores]
    if len(groups) < 3:
        raise ValueError("need at least 3 photos")
    allv = np.concatenate(groups)
    thr, fpr_in = threshold_at_fpr(allv, target_fpr)
    fp = np.zeros(len(groups))
    for i in range(len(groups)):
        others = np.concatenate([g for j, g in enumerate(groups) if j != i])
        t_i, _ = threshold_at_fpr(others, target_fpr)
        fp[i] = float(np.sum(groups[i] >= t_i))
    n = np.array([len(g) for g in groups], dtype=float)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, len(groups), len(groups))
        reps.append(fp[idx].sum() / n[idx].sum())
    return {"threshold": float(thr), "target_fpr": target_fpr, "fpr_in_sample": float(fpr_in),
            "fpr_loo": float(fp.sum() / n.sum()),
            "fpr_loo_ci": [float(np.quantile(reps, 0.025)), float(np.quantile(reps, 0.975))],
            "photos_flagged_loo": [i for i in range(len(groups)) if fp[i] > 0],
            "n_photos": len(groups), "n_views": int(n.sum())}


def score_views(photos: Sequence[tuple[str, np.ndarray]],
                score: Callable[[np.ndarray], float]) -> list[list[float]]:
    """``score`` of every view of every photo."""
    return [[float(score(v)) for v in views(arr)] for _, arr in photos]
