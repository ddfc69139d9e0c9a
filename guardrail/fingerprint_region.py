"""Region fingerprints: binding a cropped or rotated image to its record.

The pHash of :mod:`guardrail.fingerprint` describes a whole picture. A crop to a quarter of
the area or a rotation of 15 degrees changes it beyond its threshold (measured: 0 of 55 and
3 of 55 marked outputs still bound), although the image watermark survives both and its
detector knows exactly how the file sits in the marked original. This module uses that.

*Recorded.* For every released image the record keeps a **region fingerprint**: the
luminance of the marked output in the image watermark's working frame (the
``guardrail-image-v2`` frame: the aspect ratio kept, 256 x 256 pixels of area), averaged over
blocks of ``CELL`` x ``CELL`` working pixels - a grey thumbnail of about 32 x 32 cells, one
byte each (``grid:1:<rows>:<cols>:<base64>``).

*Compared.* When a detected ``guardrail-image-v2`` mark names a record whose pHash does not
match, :func:`region_match` maps the file into the original's working frame with the
geometry the detector found (scale, rotation, mirror, offset and the torus shift of the
pattern, :attr:`guardrail._types.WatermarkResult.geometry`), averages it over the same
cells, keeps the cells the file covers, and compares both after removing their coarse
shading (each cell minus a Gaussian average of its neighbours, ``BAND_SIGMA`` cells). It
binds when, over at least ``MIN_CELLS`` cells,

* the correlation is at least ``MIN_CORRELATION``,
* the gain of the file on the record (least squares) is within ``GAIN_RANGE``, and
* the record's own detail there has an RMS of at least ``MIN_RECORD_RMS`` grey levels.

*Why a copy cannot bind.* A copied watermark brings a faint ghost of its donor (at most
about 3.2 grey levels RMS at 38 dB PSNR; block averaging and the band filter only lower it).
To reach a gain of 0.75 on a record whose detail is at least 6 grey levels RMS the file must
already hold 4.5 - 3.2 = 1.3 grey levels RMS of the donor's own detail, and to reach a
correlation of 0.9 at most 2.2 of anything else - a picture whose coarse structure already
follows the donor's with a correlation of about 0.5 or more. Measured on held-out photos
(docs/WATERMARKS.md): genuine outputs after the lab's attacks correlate 0.98-1.00 with gain
0.90-1.03; unrelated photos at most 0.33 (tuning) and related ones (the same photograph
re-composed) 0.81; copies made with the wide estimate, and blends of the donor's detail at
38 dB, reach 1.00 only on targets whose own detail is as faint as the ghost - and there
the gain test fails.

Everything is bounded: the file is reduced to the working frame first, and a recorded value
that is not a well-formed region fingerprint is no match, never an error.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._types import Artifact, Modality
from .errors import UnsupportedMediaError
from .fingerprint import Observed, best_match

__all__ = ["RegionMatch", "bind", "region_fingerprint", "region_match"]

#: working pixels per cell side
CELL = 8
#: Gaussian (cells) whose average of the neighbours is removed before comparing
BAND_SIGMA = 1.5
#: a cell counts when this share of its pixels lies in the file, and when this share of
#: its band filter's weight does
MIN_COVER = 0.9
#: decision (see the module notes)
MIN_CELLS, MIN_CORRELATION, GAIN_RANGE, MIN_RECORD_RMS = 64, 0.9, (0.75, 1.33), 6.0
#: most cells a recorded fingerprint may declare (aspect ratios up to 4:1 give about 1,024)
_MAX_CELLS = 4096
_PREFIX = "grid:1:"


@dataclass(frozen=True)
class RegionMatch:
    """The outcome of :func:`region_match`."""

    matches: bool
    correlation: float | None = None
    gain: float | None = None
    cells: int = 0
    reason: str = ""


def _working_luma(artifact: Artifact) -> np.ndarray:
    from .watermark._common import norm_shape, work_luma
    from .watermark.base import CannotWatermark
    from .watermark.image_v2 import WORK_AREA, _check

    if artifact.modality is not Modality.IMAGE:
        raise UnsupportedMediaError(f"region fingerprints are for images, not "
                                    f"{artifact.modality.value}")
    try:
        kind = _check(artifact.content)
    except CannotWatermark as exc:
        raise UnsupportedMediaError(f"cannot take a region fingerprint: {exc}") from None
    h, w = artifact.content.shape[:2]
    return work_luma(artifact.content, kind, norm_shape(h, w, WORK_AREA))


def _cells(y: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Block means of ``y`` (over ``valid`` pixels) and the mask of covered cells."""
    rows, cols = y.shape[0] // CELL, y.shape[1] // CELL
    y = y[:rows * CELL, :cols * CELL].astype(np.float64)
    if valid is None:
        return y.reshape(rows, CELL, cols, CELL).mean(axis=(1, 3)), np.ones((rows, cols), bool)
    v = valid[:rows * CELL, :cols * CELL].astype(np.float64)
    s = (y * v).reshape(rows, CELL, cols, CELL).sum(axis=(1, 3))
    n = v.reshape(rows, CELL, cols, CELL).sum(axis=(1, 3))
    return s / np.maximum(n, 1.0), n >= MIN_COVER * CELL * CELL


def region_fingerprint(artifact: Artifact) -> str:
    """The region fingerprint of an image (see the module notes).

    Raises
    ------
    UnsupportedMediaError
        Not an image, or an array the image watermark cannot read.
    """
    cells, _ = _cells(_working_luma(artifact))
    data = np.clip(np.round(cells), 0, 255).astype(np.uint8)
    return f"{_PREFIX}{data.shape[0]}:{data.shape[1]}:{base64.b64encode(data.tobytes()).decode()}"


def _parse(recorded: str) -> np.ndarray | None:
    if not isinstance(recorded, str) or not recorded.startswith(_PREFIX):
        return None
    try:
        rows_s, cols_s, b64 = recorded[len(_PREFIX):].split(":", 2)
        rows, cols = int(rows_s), int(cols_s)
        if not (1 <= rows and 1 <= cols and rows * cols <= _MAX_CELLS):
            return None
        raw = base64.b64decode(b64, validate=True)
    except (ValueError, binascii.Error):
        return None
    if len(raw) != rows * cols:
        return None
    return np.frombuffer(raw, np.uint8).reshape(rows, cols).astype(np.float64)


def _band(x: np.ndarray, cover: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``x`` minus the Gaussian average of its covered neighbours, and that average's
    weight (the share of the filter over covered cells)."""
    import cv2

    m = cover.astype(np.float64)
    num = cv2.GaussianBlur(x * m, (0, 0), BAND_SIGMA, borderType=cv2.BORDER_CONSTANT)
    den = cv2.GaussianBlur(m, (0, 0), BAND_SIGMA, borderType=cv2.BORDER_CONSTANT)
    return x - num / np.maximum(den, 1e-9), den


def _geometry(geometry: Mapping[str, Any]) -> tuple[Any, tuple[int, int]] | None:
    from .watermark._image_v2_sync import Geometry

    try:
        off = geometry.get("offset") or (0.0, 0.0)
        geo = Geometry(float(geometry["scale"]), math.radians(float(geometry["angle_deg"])),
                       bool(geometry["flipped"]), (float(off[0]), float(off[1])))
        shift = (int(geometry["shift"][0]), int(geometry["shift"][1]))
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if not (all(math.isfinite(v) for v in (geo.s, geo.th, *geo.offset)) and 0.1 <= geo.s <= 10):
        return None
    return geo, shift


def region_match(recorded: str, artifact: Artifact, geometry: Mapping[str, Any] | None
                 ) -> RegionMatch:
    """Does ``artifact``, placed in the marked original by ``geometry`` (a detected
    ``guardrail-image-v2`` mark's :attr:`~guardrail._types.WatermarkResult.geometry`), show
    the recorded region fingerprint? Never raises for a malformed record or geometry."""
    from .watermark._image_v2_sync import register
    from .watermark.image_v2 import TORUS

    ref = _parse(recorded)
    if ref is None:
        return RegionMatch(False, reason="no well-formed region fingerprint on record")
    parsed = _geometry(geometry) if geometry else None
    if parsed is None:
        return RegionMatch(False, reason="the watermark reported no geometry to compare in")
    geo, shift = parsed
    try:
        yw = _working_luma(artifact)
    except UnsupportedMediaError as exc:
        return RegionMatch(False, reason=str(exc))
    rows, cols = ref.shape
    canvas = register(yw, geo, TORUS)
    inside = register(np.ones_like(yw), geo, TORUS) > 0.99
    back = (-shift[0], -shift[1])
    frame = np.roll(canvas, back, axis=(0, 1))[:rows * CELL, :cols * CELL]
    inside = np.roll(inside, back, axis=(0, 1))[:rows * CELL, :cols * CELL]
    if frame.shape != (rows * CELL, cols * CELL):
        return RegionMatch(False, reason="the recorded frame does not fit the watermark's")
    seen, cover = _cells(frame, inside)
    a, weight = _band(seen, cover)
    b, _ = _band(ref, cover)
    use = cover & (weight >= MIN_COVER)
    n = int(use.sum())
    if n < MIN_CELLS:
        return RegionMatch(False, cells=n, reason=f"the file covers {n} cells of the "
                           f"original, {MIN_CELLS} needed")
    a, b = a[use] - a[use].mean(), b[use] - b[use].mean()
    bb = float(b @ b)
    den = math.sqrt(float(a @ a) * bb)
    corr = float(a @ b) / den if den > 0 else 0.0
    gain = float(a @ b) / bb if bb > 0 else 0.0
    rms = math.sqrt(bb / n)
    ok = corr >= MIN_CORRELATION and GAIN_RANGE[0] <= gain <= GAIN_RANGE[1] \
        and rms >= MIN_RECORD_RMS
    why = (f"correlation {corr:.2f} (>= {MIN_CORRELATION:g}), gain {gain:.2f} "
           f"({GAIN_RANGE[0]:g}-{GAIN_RANGE[1]:g}), recorded detail {rms:.1f} grey levels "
           f"RMS (>= {MIN_RECORD_RMS:g}) over {n} cells")
    return RegionMatch(ok, round(corr, 4), round(gain, 4), n, why)


def bind(seen: Observed, recorded: str, region: str | None, artifact: Artifact,
         geometry: Mapping[str, Any] | None) -> tuple[bool, float | None, RegionMatch | None]:
    """The content binding of one record (``guardrail verify``'s rule): the recorded pHash
    matches one of the file's fingerprints (``seen``, :func:`guardrail.fingerprint.observe`)
    and they bind it; failing that, with a recorded ``region`` and the watermark's
    ``geometry``, :func:`region_match`. Returns ``(binds, the pHash comparison's score, the
    region comparison or None when none was made)``."""
    ok, score = (False, None) if seen.weak else best_match(recorded, seen.fingerprints)
    if ok or not region or not geometry or artifact.modality is not Modality.IMAGE:
        return ok, score, None
    m = region_match(region, artifact, geometry)
    return m.matches, score, m
