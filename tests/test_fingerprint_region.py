"""Region fingerprints: a crop or rotation of a marked output binds to its record through
the watermark's geometry; unrelated pictures and copied ghosts do not; malformed records
and geometries are no match, never an error."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from guardrail import Artifact
from guardrail.fingerprint import binds, fingerprint
from guardrail.fingerprint_region import (
    GAIN_RANGE,
    MIN_CORRELATION,
    region_fingerprint,
    region_match,
)
from guardrail.robustness.image_attacks import crop, random_crop, rotate
from guardrail.watermark.image_v2 import GuardrailImageWatermarkV2, _home


def _photo(name: str, size: int = 512) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.asarray(Image.fromarray(img[..., :3]).resize((size, size)))


def _art(x: np.ndarray) -> Artifact:
    return Artifact(modality="image", content=x, metadata={})


@pytest.fixture(scope="module")
def marked():
    wm = GuardrailImageWatermarkV2(b"region-binding-key" * 2)
    outs = {n: wm.embed(_art(_photo(n)), 1000 + i).content
            for i, n in enumerate(("astronaut", "coffee", "chelsea"))}
    return wm, outs


def _identity(shape: tuple[int, int]) -> dict:
    return {"scale": 1.0, "angle_deg": 0.0, "flipped": False, "offset": [0.0, 0.0],
            "shift": list(_home(shape))}


def test_the_fingerprint_is_a_small_grey_thumbnail_of_the_working_frame():
    rf = region_fingerprint(_art(_photo("coffee", 512)[:384]))
    _, version, rows, cols, b64 = rf.split(":")
    assert version == "1" and (int(rows), int(cols)) == (27, 37)  # 222 x 296 working px
    assert len(rf) < 1400


@pytest.mark.parametrize("attack", [crop(0.75), random_crop(0.6), rotate(15), rotate(-15)],
                         ids=["quarter-area crop", "off-centre crop", "rotate 15", "rotate -15"])
def test_a_crop_or_rotation_binds_through_the_detected_geometry(marked, attack):
    wm, outs = marked
    attacked = attack(_art(outs["astronaut"]))
    res = wm.detect(attacked)
    assert res.detected and res.geometry is not None
    # the whole-picture pHash no longer binds it: this is what the region is for
    assert not binds(fingerprint(_art(outs["astronaut"])), attacked)
    own = region_match(region_fingerprint(_art(outs["astronaut"])), attacked, res.geometry)
    assert own.matches, own.reason
    assert own.correlation >= 0.97 and abs(own.gain - 1.0) < 0.1
    for other in ("coffee", "chelsea"):
        m = region_match(region_fingerprint(_art(outs[other])), attacked, res.geometry)
        assert not m.matches and m.correlation < 0.5, (other, m)


def test_a_copied_ghost_cannot_supply_the_region(marked):
    """The informed copy against this binding: the donor's own detail (everything above a
    24 px blur) added at 38 dB PSNR. On a smooth picture it sets the shape of the file's
    detail (correlation near 1) but not its size: the gain test refuses it; on a photograph
    the photograph's own detail dominates."""
    _, outs = marked
    donor = outs["coffee"].astype(np.float32)
    import cv2

    detail = donor - cv2.GaussianBlur(donor, (0, 0), 48)
    detail *= math.sqrt(255.0 ** 2 / 10 ** 3.8 / float(np.mean(detail ** 2)))  # 38 dB
    g = np.mgrid[:512, :512][1][..., None] / 512.0
    gradient = 60 + 120 * g * np.array([1.0, 0.8, 0.6])
    recorded = region_fingerprint(_art(outs["coffee"]))
    for target, smooth in ((gradient, True), (_photo("astronaut").astype(np.float32), False)):
        ghosted = np.clip(target + detail, 0, 255).round().astype(np.uint8)
        m = region_match(recorded, _art(ghosted), _identity((256, 256)))
        assert not m.matches, m
        if smooth:
            assert m.correlation >= MIN_CORRELATION and m.gain < GAIN_RANGE[0], m
        else:
            assert m.correlation < 0.5, m


@pytest.mark.parametrize("recorded", [
    "", "phash:00ff00ff00ff00ff", "grid:1:", "grid:1:2:2:AAAA", "grid:1:1:1:!!!!",
    "grid:1:x:2:AAA=", "grid:1:100000:100000:AAAA", "grid:1:-1:-4:AAAA", "grid:2:1:1:AA==",
])
def test_a_malformed_record_is_no_match(marked, recorded):
    _, outs = marked
    m = region_match(recorded, _art(outs["coffee"]), _identity((256, 256)))
    assert not m.matches and "region fingerprint" in m.reason


@pytest.mark.parametrize("geometry", [
    None, {}, {"scale": 1.0}, {"scale": float("nan"), "angle_deg": 0, "flipped": False,
                               "shift": [0, 0]},
    {"scale": 1e9, "angle_deg": 0, "flipped": False, "shift": [0, 0]},
    {"scale": "big", "angle_deg": 0, "flipped": False, "shift": [0, 0]},
    {"scale": 1.0, "angle_deg": 0, "flipped": False, "shift": [1]},
])
def test_a_missing_or_malformed_geometry_is_no_match(marked, geometry):
    _, outs = marked
    m = region_match(region_fingerprint(_art(outs["coffee"])), _art(outs["coffee"]), geometry)
    assert not m.matches and "geometry" in m.reason


def test_version_1_reports_no_geometry_and_version_2_does(marked):
    from guardrail.watermark.image import GuardrailImageWatermark

    wm, outs = marked
    assert wm.detect(_art(outs["coffee"])).geometry["shift"] == list(_home((256, 256)))
    v1 = GuardrailImageWatermark(b"region-binding-key" * 2)
    res = v1.detect(v1.embed(_art(_photo("coffee")), 7))
    assert res.detected and res.geometry is None
