import io

import numpy as np
from PIL import Image

from guardrail import Artifact, GenerationMetadata
from guardrail.corpora import natural_images
from guardrail.fingerprint import (
    best_match,
    binds,
    fingerprint,
    fingerprints,
    match,
    weak_binding,
)

MD = GenerationMetadata(model_id="m")


def img_artifact(arr):
    return Artifact(modality="image", content=arr, metadata=MD)


def test_image_fingerprint_survives_jpeg_and_resize_but_not_another_picture():
    imgs = [a for _, a in natural_images()][:4]
    a = imgs[0]
    buf = io.BytesIO()
    Image.fromarray(a).resize((a.shape[1] // 2, a.shape[0] // 2)).save(buf, "JPEG", quality=60)
    b = np.asarray(Image.open(buf).convert("RGB"))
    ok, dist = match(fingerprint(img_artifact(a)), fingerprint(img_artifact(b)))
    assert ok and dist <= 6
    for other in imgs[1:]:
        ok, dist = match(fingerprint(img_artifact(a)), fingerprint(img_artifact(other)))
        assert not ok and dist > 12


def test_a_mirrored_picture_matches_its_record_and_another_picture_does_not():
    imgs = [np.ascontiguousarray(a) for _, a in natural_images()][:4]
    rec = fingerprint(img_artifact(imgs[0]))
    mirror = img_artifact(np.ascontiguousarray(imgs[0][:, ::-1]))
    assert not match(rec, fingerprint(mirror))[0]  # a flip changes the pHash itself
    ok, dist = best_match(rec, fingerprints(mirror))
    assert ok and dist == 0 and binds(rec, mirror)
    for other in imgs[1:]:
        for art in (img_artifact(other), img_artifact(np.ascontiguousarray(other[:, ::-1]))):
            assert not best_match(rec, fingerprints(art))[0]
    text = Artifact(modality="text", content="hi there", metadata=MD)
    assert fingerprints(text) == [fingerprint(text)]


def gradient(size: int = 256) -> np.ndarray:
    g = np.mgrid[:size, :size][1] / size
    return np.clip(60 + 120 * g[..., None] * np.array([1.0, 0.8, 0.6]), 0, 255).astype(np.uint8)


def test_a_faint_copy_on_a_smooth_picture_sets_its_phash_so_it_does_not_bind():
    """A wide-band copy (38 dB) of a photo onto a colour gradient takes on the photo's pHash;
    the gradient's fingerprint does not bind it, so it matches no record."""
    from guardrail.robustness.image_attacks import copy

    imgs = [np.ascontiguousarray(a) for _, a in natural_images()][:4]
    for photo in imgs:
        assert weak_binding(img_artifact(photo)) is None  # natural photos bind
        recorded = fingerprint(img_artifact(photo))
        assert binds(recorded, img_artifact(photo))
    donor = imgs[0]
    forged = copy((1, "wide"), marked=[donor])(img_artifact(gradient())).content
    recorded = fingerprint(img_artifact(donor))
    assert match(recorded, fingerprint(img_artifact(forged)))[0]  # the hash alone is fooled
    reason = weak_binding(img_artifact(forged))
    assert reason and "too little coarse structure" in reason and "of 63" in reason
    assert not binds(recorded, img_artifact(forged))
    assert weak_binding(Artifact(modality="text", content="hi", metadata=MD)) is None


def test_audio_fingerprint_matches_a_noisy_copy_not_other_audio():
    rng = np.random.default_rng(0)
    t = np.arange(22050 * 3) / 22050
    speechy = (np.sin(2 * np.pi * 220 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t))).astype(np.float32) * 0.5
    other = (rng.standard_normal(t.size) * np.exp(-t)).astype(np.float32) * 0.3
    fa = fingerprint(Artifact(modality="audio", content=speechy, metadata=MD, sample_rate=22050))
    noisy = speechy + 0.01 * rng.standard_normal(t.size).astype(np.float32)
    fb = fingerprint(Artifact(modality="audio", content=noisy, metadata=MD, sample_rate=22050))
    fc = fingerprint(Artifact(modality="audio", content=other, metadata=MD, sample_rate=22050))
    assert match(fa, fb)[0] is True
    assert match(fa, fc)[0] is False


def test_text_fingerprint_ignores_invisible_wrappers_and_spacing():
    a = Artifact(modality="text", content="Hello  world.\n", metadata=MD)
    b = Artifact(modality="text", content="Hello world.\ufe01\ufe02\U000e0100", metadata=MD)
    c = Artifact(modality="text", content="Hello world!", metadata=MD)
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    assert match(fingerprint(a), fingerprint(b)) == (True, 0.0)
    assert match(fingerprint(a), fingerprint(c))[0] is False
