import io

import numpy as np
from PIL import Image

from guardrail import Artifact, GenerationMetadata
from guardrail.corpora import natural_images
from guardrail.fingerprint import fingerprint, match

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
