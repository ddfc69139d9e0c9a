"""The copy check's statistic for :mod:`guardrail.watermark.image_v2` (see its notes)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def displaced_ratio(u: np.ndarray, q: np.ndarray, wgt: np.ndarray,
                    offsets: Iterable[tuple[int, int]]) -> float:
    """The pilot statistic ``sum(u * wgt)`` over the RMS of its departures, under ``wgt``
    displaced by each of ``offsets``, from what a genuine mark predicts there.

    ``u`` is the registered residual times the pilot at the detected shift, ``q`` the
    embedder's sign weights of this image and ``wgt`` the detector's. A genuine mark makes
    ``u`` about ``beta * q``, so the statistic under the weights displaced by ``d`` is
    ``beta * sum(q * wgt(x + d))`` plus noise, and the ratio is about its z-score; a copy
    follows another image's weights and gives a ratio of order one however strong it is.
    0.0 when the statistic or its prediction is not positive (nothing to follow).
    """
    s0, r0 = float(np.sum(u * wgt)), float(np.sum(q * wgt))
    if s0 <= 0 or r0 <= 0:
        return 0.0
    beta = s0 / r0
    dev = []
    for d in offsets:
        wd = np.roll(wgt, d, axis=(0, 1))
        dev.append(float(np.sum(u * wd)) - beta * float(np.sum(q * wd)))
    rms = math.sqrt(sum(x * x for x in dev) / len(dev))
    return s0 / rms if rms > 0 else math.inf


def strong_boost(wgt: np.ndarray, f: np.ndarray, boost: float, start: float) -> np.ndarray:
    """The embedder's sign weights ``wgt`` with ``1 + boost`` times the amplitude where the
    content field ``f`` reaches ``start`` (a ramp over one grey level), rescaled to their RMS:
    the pattern's power, and its share against the sync template, stay as they were. The
    strict copy check reads those pixels alone; a ghost cannot reach them. ``boost`` 0 (the
    standard setting) returns ``wgt`` itself, with no work."""
    if not boost:
        return wgt
    b = 1.0 + boost * np.clip(np.abs(f) - np.float32(start), 0.0, 1.0)
    out = wgt * b.astype(np.float32)
    r0, r1 = float(np.sqrt(np.mean(wgt * wgt))), float(np.sqrt(np.mean(out * out)))
    return out * np.float32(r0 / r1) if r1 > 0 else out
