"""Tests of the image attacks and quality metrics (guardrail.robustness.image_attacks)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from guardrail import Artifact, GenerationMetadata, Modality
from guardrail.robustness import image_attacks as ia
from guardrail.robustness.attacks import SUITES, build_suite
from guardrail.robustness.base import Attack

pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

META = GenerationMetadata(model_id="test")


def art(x: np.ndarray) -> Artifact:
    return Artifact(modality=Modality.IMAGE, content=x, metadata=META, media_type="image/png",
                    data=b"stale")


@pytest.fixture(scope="module")
def img() -> np.ndarray:
    return skdata.coffee()  # 400 x 600 RGB


ALL = [ia.jpeg(50), ia.webp(50), ia.resize(0.5), ia.resize(1.5), ia.resize_back(0.5),
       ia.crop(0.2), ia.random_crop(0.25), ia.rotate(2), ia.rotate_crop(2),
       ia.gaussian_noise(5), ia.blur(1.0), ia.brightness(1.2), ia.contrast(0.8),
       ia.resize_jpeg((0.5, 75)), ia.chain(ia.crop(0.1), ia.jpeg(70)), ia.flip(1),
       ia.flip(0), ia.median(5), ia.chain_crop_resize_jpeg((0.8, 0.5, 70)),
       ia.chain_blur_noise_resize_webp((1.0, 5, 0.7, 60))]


@pytest.mark.parametrize("attack", ALL, ids=lambda a: a.label)
def test_every_attack_returns_a_new_uint8_image_artifact(img, attack):
    assert isinstance(attack, Attack) and attack.modality is Modality.IMAGE
    a = art(img)
    out = attack(a)
    assert out is not a and out.modality is Modality.IMAGE and out.metadata == META
    assert out.data is None and out.media_type is None  # the old encoding is stale
    assert out.content.dtype == np.uint8 and out.content.ndim == 3
    assert np.array_equal(a.content, img)  # input untouched
    # deterministic, even the "random" ones (seeded by the content)
    assert np.array_equal(attack(a).content, out.content)


def test_jpeg_changes_the_image_and_lower_quality_changes_more(img):
    e90 = np.abs(ia.jpeg(90)(art(img)).content.astype(int) - img).mean()
    e30 = np.abs(ia.jpeg(30)(art(img)).content.astype(int) - img).mean()
    assert 0 < e90 < e30
    assert ia.psnr(img, ia.jpeg(90)(art(img)).content) > 30


def test_colour_order_survives_codecs(img):
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 200
    for attack in (ia.jpeg(90), ia.webp(90)):
        out = attack(art(red)).content
        assert out[..., 0].mean() > 150 and out[..., 2].mean() < 50


def test_sizes(img):
    h, w = img.shape[:2]
    assert ia.resize(0.5)(art(img)).content.shape == (h // 2, w // 2, 3)
    assert ia.resize(1.5)(art(img)).content.shape == (600, 900, 3)
    assert ia.resize_back(0.5)(art(img)).content.shape == img.shape
    c = ia.crop(0.2)(art(img)).content
    assert c.shape[0] * c.shape[1] == pytest.approx(0.8 * h * w, rel=0.01)
    assert c.shape[1] / c.shape[0] == pytest.approx(w / h, rel=0.01)
    assert np.array_equal(c, img[(h - c.shape[0]) // 2:(h - c.shape[0]) // 2 + c.shape[0],
                                 (w - c.shape[1]) // 2:(w - c.shape[1]) // 2 + c.shape[1]])
    rc = ia.random_crop(0.25)(art(img)).content
    assert rc.shape[0] * rc.shape[1] == pytest.approx(0.75 * h * w, rel=0.01)
    assert ia.rotate(2)(art(img)).content.shape == img.shape
    assert ia.rotate_crop(5)(art(img)).content.shape == img.shape


def test_rotate_fills_corners_black_and_keeps_the_centre(img):
    out = ia.rotate(5)(art(img)).content
    assert out[0, 0].sum() == 0 and out[-1, -1].sum() == 0
    h, w = img.shape[:2]
    centre = np.abs(out[h // 2 - 5:h // 2 + 5, w // 2 - 5:w // 2 + 5].astype(int)
                    - img[h // 2 - 5:h // 2 + 5, w // 2 - 5:w // 2 + 5]).mean()
    assert centre < 20
    assert ia.rotate_crop(5)(art(img)).content[0, 0].sum() > 0  # no black border


def test_noise_blur_brightness_contrast(img):
    f = img.astype(float)
    noisy = ia.gaussian_noise(5)(art(img)).content.astype(float)
    assert 4.0 < (noisy - f).std() < 6.0
    assert ia.blur(2.0)(art(img)).content.astype(float).std() < f.std()
    bright = ia.brightness(1.2)(art(img)).content.astype(float)
    assert np.allclose(bright, np.clip(np.round(f * 1.2), 0, 255), atol=1)
    low = ia.contrast(0.5)(art(img)).content.astype(float)
    assert low.std() == pytest.approx(0.5 * f.std(), rel=0.05)


def test_grey_and_rgba_inputs():
    grey = skdata.camera()
    assert ia.jpeg(50)(art(grey)).content.shape == grey.shape
    assert ia.rotate(2)(art(grey)).content.shape == grey.shape
    rgba = np.dstack([skdata.coffee(), np.full((400, 600), 77, np.uint8)])
    for attack in (ia.webp(80), ia.gaussian_noise(5), ia.brightness(1.2), ia.blur(1)):
        out = attack(art(rgba)).content
        assert out.shape == rgba.shape and (out[..., 3] == 77).all()
    assert ia.jpeg(80)(art(rgba)).content.shape == (400, 600, 3)  # JPEG has no alpha


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError):
        ia.jpeg(50)(art(np.zeros((10, 10, 3), np.float32)))
    with pytest.raises(ValueError):
        ia.crop(1.0)(art(np.zeros((10, 10, 3), np.uint8)))


def test_chain_and_labels():
    c = ia.chain(ia.resize(0.5), ia.jpeg(75))
    assert c.name == "resize+jpeg" and c.strength == (0.5, 75)
    with pytest.raises(ValueError):
        ia.chain()
    labels = list(SUITES["image"])
    assert len(labels) == len(set(labels))
    assert [a.label for a in ia.TARGET_ATTACKS] == [
        "jpeg(50)", "resize(0.5)", "crop(0.2)", "rotate(2)", "gaussian_noise(5)",
        "brightness(1.2)"]
    assert {"crop(0.75)", "rotate(15)", "rotate(-15)", "flip(1)", "median(5)",
            "chain_crop_resize_jpeg((0.8, 0.5, 70))"} <= set(labels)
    assert [a.label for a in build_suite("image")] == labels


def test_metrics(img):
    assert ia.psnr(img, img) == math.inf
    assert ia.ssim(img, img) == pytest.approx(1.0)
    noisy = ia.gaussian_noise(5)(art(img)).content
    assert 33 < ia.psnr(img, noisy) < 36  # 20 log10(255 / 5) = 34.2 dB
    assert 0.5 < ia.ssim(img, noisy) < 1.0
    grey = skdata.camera()
    assert ia.ssim(grey, grey) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        ia.psnr(img, img[:10])


def test_flip_median_and_chains(img):
    assert np.array_equal(ia.flip(1)(art(img)).content, img[:, ::-1])
    assert np.array_equal(ia.flip(0)(art(img)).content, img[::-1])
    with pytest.raises(ValueError):
        ia.flip("h")(art(img))
    with pytest.raises(ValueError):
        ia.median(4)(art(img))
    c1 = ia.chain_crop_resize_jpeg((0.25, 0.5, 70))(art(img)).content
    assert c1.shape[:2] == (100, 150)  # half of each side kept, then halved
    c2 = ia.chain_blur_noise_resize_webp((1.0, 5, 0.7, 60))(art(img)).content
    assert c2.shape[:2] == (280, 420)


def test_estimate_mark_recovers_a_repeated_tile_and_sums_outputs():
    rng = np.random.default_rng(1)
    tile = rng.normal(0, 1, (64, 64)).astype(np.float32)
    pattern = np.tile(tile, (8, 8))
    photos = [skdata.coffee()[:400, :400], skdata.chelsea()[:300, :400]]
    import cv2

    marked = []
    for p in photos:
        p = cv2.resize(np.ascontiguousarray(p), (512, 512))
        marked.append(np.clip(p + 3 * pattern[..., None], 0, 255).astype(np.uint8))
    est = ia.estimate_mark(marked[:1], (512, 512), "tile")
    corr = np.corrcoef(est.ravel(), pattern.ravel())[0, 1]
    assert corr > 0.5  # averaging over tile positions recovers a periodic mark
    res = ia.estimate_mark(marked, (256, 256), "residual")
    assert res.shape == (256, 256) and abs(float(res.mean())) < 1e-3
    # the wide estimator keeps more of the donor's coarse structure (its ghost)
    wide = ia.estimate_mark(marked[:1], (256, 256), "wide")
    narrow = ia.estimate_mark(marked[:1], (256, 256), "residual")

    def coarse_share(e):
        return float(np.mean(cv2.GaussianBlur(e, (0, 0), 3.0) ** 2) / np.mean(e ** 2))

    assert coarse_share(wide) > 2 * coarse_share(narrow)
    with pytest.raises(ValueError, match="'residual', 'tile', 'wide'"):
        ia.estimate_mark(marked, (64, 64), "median")
    with pytest.raises(ValueError, match="at least one"):
        ia.estimate_mark([], (64, 64))


def test_copy_and_removal_attacks_through_the_registry(img):
    from guardrail.robustness.attacks import build_attack

    donor = np.ascontiguousarray(skdata.chelsea())
    cp = build_attack("image", "copy", (1, "residual"), marked=[donor])
    out = cp(art(img)).content
    assert cp.label == "copy((1, 'residual'))" and out.shape == img.shape
    assert 37.5 <= ia.psnr(img, out) <= 38.5  # scaled to 38 dB before rounding
    rm = build_attack("image", "removal", (1, "tile"))  # the image's own estimate
    assert 37.5 <= ia.psnr(img, rm(art(img)).content) <= 38.5
    with pytest.raises(ValueError, match="marked images"):
        build_attack("image", "copy", (10, "residual"), marked=[donor])
    with pytest.raises(ValueError, match="at least one"):
        build_attack("image", "removal", (0, "tile"))
