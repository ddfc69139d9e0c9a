"""Keyless copy and removal attacks on the image watermarks (part of the image lab).

The attacker holds marked outputs of one key and no key (Kerckhoffs: the algorithm is
known). :func:`keyless_trials` measures, for one scheme:

* **copy**: the mark estimated from 1 and from 10 marked outputs
  (:func:`~guardrail.robustness.image_attacks.estimate_mark`, estimators ``residual``,
  ``tile`` and ``wide``) added at 38 dB to unrelated photos - how many of them detect (the
  target is at most 1 in 100), how many carry a victim's id, and how many ``guardrail
  verify`` would call AI-generated: a detected id whose record's content fingerprint (taken
  of the victim's marked output, as the guard records it) matches and binds the copy
  (:func:`guardrail.fingerprint.binds`, the content binding of
  :func:`guardrail.verify.record_match`; target: none);
* **removal**: the estimate from the marked image itself (and 9 other outputs of the key)
  subtracted at 38 dB - how many marked images are still detected (target >= 95%).

Each rate comes with its 95% Clopper-Pearson interval and ``n``.

The copies go onto ordinary photos and onto *smooth* ones (:func:`smooth_photos`: colour
gradients and heavily blurred photos), the targets an informed attacker picks against a
content-bound mark: a smooth photo has little structure of its own, so whatever faint
structure the copy brings decides its content field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._types import Artifact, GenerationMetadata, Modality
from ..stats import clopper_pearson
from .image_attacks import copy, removal

__all__ = ["ESTIMATES", "keyless_trials", "smooth_photos"]

#: (number of marked outputs, estimator) of the copy and removal attacks.
ESTIMATES: tuple[tuple[int, str], ...] = ((1, "residual"), (1, "tile"), (1, "wide"),
                                          (10, "residual"), (10, "tile"), (10, "wide"))


def smooth_photos(images: Sequence[np.ndarray], n: int, size: int, *, seed: int = 0
                  ) -> list[np.ndarray]:
    """``n`` smooth ``size x size`` RGB copy targets: alternately a colour gradient (linear
    at a random angle, or radial about a random centre, between two random colours) and a
    centre crop of one of ``images`` blurred with a Gaussian of 4-10 pixels per 256."""
    import cv2

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float64) / size
    out = []
    for i in range(n):
        if i % 2 == 0 or not images:
            if rng.random() < 0.5:
                a = rng.uniform(0.0, 2.0 * np.pi)
                g = np.cos(a) * xx + np.sin(a) * yy
            else:
                cy, cx = rng.uniform(0.2, 0.8, 2)
                g = np.hypot(yy - cy, xx - cx)
            g = (g - g.min()) / max(float(np.ptp(g)), 1e-9)
            c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            img = c0 + (c1 - c0) * g[..., None]
        else:
            src = np.asarray(images[(i // 2) % len(images)])
            if src.ndim == 2:
                src = np.dstack([src] * 3)
            h, w = src.shape[:2]
            m = min(h, w)
            crop = np.ascontiguousarray(src[(h - m) // 2:(h - m) // 2 + m,
                                            (w - m) // 2:(w - m) // 2 + m, :3])
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
            sigma = rng.uniform(4.0, 10.0) * size / 256.0
            img = cv2.GaussianBlur(crop.astype(np.float32), (0, 0), sigma)
        out.append(np.clip(np.asarray(img) + 0.5, 0, 255).astype(np.uint8))
    return out


def _art(img: np.ndarray) -> Artifact:
    return Artifact(modality=Modality.IMAGE, content=img,
                    metadata=GenerationMetadata(model_id="eval"))


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = clopper_pearson(k, n)
    return {"n": n, "positives": k, "rate": k / n if n else None, "ci_low": lo, "ci_high": hi}


def keyless_trials(wm: Any, donors: Sequence[tuple[np.ndarray, int]],
                   photos: Sequence[np.ndarray], marked: Sequence[tuple[np.ndarray, int]], *,
                   estimates: Sequence[tuple[int, str]] = ESTIMATES,
                   say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Copy and removal attacks against one scheme instance (its key and false-positive rate).

    Parameters
    ----------
    wm : Watermarker
        The scheme under test; ``detect`` decides at its ``fpr``.
    donors : list of (marked image, payload)
        Marked outputs of the key the attacker collected (at least the largest ``n``).
    photos : list of arrays
        Unrelated, unmarked photos the copies go onto (none may be one of the donors'
        originals).
    marked : list of (marked image, payload)
        Marked images the removal is tried on (each uses itself plus ``n - 1`` donors).

    Returns
    -------
    dict
        ``{"copy": {label: rate}, "removal": {label: rate}}``, labels such as
        ``copy((10, 'residual'))``; each rate has ``n``, ``positives``, ``rate``, ``ci_low``,
        ``ci_high``; copy rates also ``victim_ids`` (copies that decoded a donor's id) and
        ``ai_verdicts`` (of those, the ones whose content matches that donor's recorded
        fingerprint: ``verify`` would find the victim's record and call the copy
        AI-generated).
    """
    note = say or (lambda _m: None)
    donor_imgs = [d for d, _ in donors]
    # what the record store holds for each victim: the fingerprints of its marked output
    recorded = {f"{p:08x}": recorded_binding(d) for d, p in donors}
    out: dict[str, Any] = {"copy": {}, "removal": {}}
    for n, est in estimates:
        if n > len(donor_imgs):
            note(f"{wm.scheme}: copy and removal from {n} outputs not run: "
                 f"{len(donor_imgs)} marked outputs held")
            continue
        hits, victims, ai = 0, 0, 0
        for j, photo in enumerate(photos):
            use = [donor_imgs[j % len(donor_imgs)]] if n == 1 else [
                donor_imgs[(j + i) % len(donor_imgs)] for i in range(n)]
            forged = copy((n, est), marked=use)(_art(photo))
            res = wm.detect(forged)
            hits += bool(res.detected)
            if res.detected and res.payload in recorded:
                victims += 1
                ai += verify_binds(recorded[res.payload], forged.content, res.geometry)
        label = copy((n, est), marked=donor_imgs).label
        out["copy"][label] = {**_rate(hits, len(photos)), "victim_ids": victims,
                              "ai_verdicts": ai}
        kept = 0
        for j, (img, _p) in enumerate(marked):
            others = [d for d in donor_imgs if d is not img]
            att = removal((n, est), marked=others[j % max(1, len(others)):] + others)
            kept += bool(wm.detect(att(_art(img))).detected)
        out["removal"][removal((n, est), marked=donor_imgs).label] = _rate(kept, len(marked))
        note(f"{wm.scheme}: {label}: {hits}/{len(photos)} copies detected ({victims} with a "
             f"victim's id, {ai} matching its record); removal: "
             f"{kept}/{len(marked)} still detected")
    return out


def recorded_binding(content: np.ndarray) -> tuple[str, str]:
    """What a record keeps to bind an image: its pHash and its region fingerprint."""
    from ..fingerprint import fingerprint
    from ..fingerprint_region import region_fingerprint

    art = _art(content)
    return fingerprint(art), region_fingerprint(art)


def verify_binds(recorded: tuple[str, str], content: np.ndarray, geometry: Any) -> bool:
    """Whether ``guardrail verify`` binds ``content`` to a record that keeps ``recorded``
    (:func:`guardrail.fingerprint_region.bind`, given the watermark's ``geometry``)."""
    from ..fingerprint import observe
    from ..fingerprint_region import bind

    art = _art(content)
    return bind(observe(art), recorded[0], recorded[1], art, geometry)[0]
