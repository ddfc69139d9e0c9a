"""Tests of the invisible-watermark adapters (dwtDct, dwtDctSvd, rivaGan).

Offline: the rivaGan ONNX models ship inside the ``invisible-watermark`` package. rivaGan
is slow (seconds per megapixel), so it only sees one 256x256 image.
"""

from __future__ import annotations

import numpy as np
import pytest

from guardrail import Artifact, GenerationMetadata, Modality
from guardrail.watermark.base import CannotWatermark, Watermarker
from guardrail.watermark.invisible import (
    DwtDctSvdWatermark,
    DwtDctWatermark,
    InvisibleWatermark,
    RivaGanWatermark,
    binomial_tail,
)

imwatermark = pytest.importorskip("imwatermark")
cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")

KEY = b"test-key-for-the-invisible-adapters"
META = GenerationMetadata(model_id="test")
PAYLOAD = 0x1234_5678_9ABC


def art(x: np.ndarray) -> Artifact:
    return Artifact(modality=Modality.IMAGE, content=x, metadata=META)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return cv2.resize(skdata.astronaut(), (512, 512), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("cls", [DwtDctWatermark, DwtDctSvdWatermark])
def test_dct_methods_round_trip(photo, cls):
    wm = cls(KEY, payload=PAYLOAD)
    assert isinstance(wm, Watermarker) and wm.payload_bits == 48
    out = wm.embed(art(photo), PAYLOAD)
    assert out.content.shape == photo.shape and out.metadata == META
    res = wm.detect(out)
    assert res.detected is True and res.score == 1.0
    assert res.payload == f"{PAYLOAD:012x}" and res.p_value == 2.0 ** -48
    assert res.scheme == wm.scheme and res.fpr == 1e-4


@pytest.mark.parametrize("cls", [DwtDctWatermark, DwtDctSvdWatermark])
def test_dct_methods_unmarked_and_wrong_key(photo, cls):
    wm = cls(KEY, payload=PAYLOAD)
    assert wm.detect(art(photo)).detected is False
    marked = wm.embed(art(photo), PAYLOAD)
    res = cls(b"some other key", payload=PAYLOAD).detect(marked)
    assert res.detected is False and res.payload is None
    res = cls(KEY, payload=PAYLOAD ^ 0xFFFF_0000_0000).detect(marked)  # another id
    assert res.detected is False


def test_colour_order_is_bgr_for_the_library(photo):
    """The library must see BGR: decoding the marked RGB image reversed gives the bits."""
    wm = DwtDctWatermark(KEY, payload=PAYLOAD)
    out = wm.embed(art(photo), PAYLOAD).content
    dec = imwatermark.WatermarkDecoder("bits", 48)
    bits = np.asarray(dec.decode(np.ascontiguousarray(out[..., ::-1]), "dwtDct")).astype(
        np.uint8)
    assert np.array_equal(bits, wm._bits(PAYLOAD))
    # and the unchanged colour order does not carry it
    wrong = np.asarray(dec.decode(np.ascontiguousarray(out), "dwtDct")).astype(np.uint8)
    assert not np.array_equal(wrong, wm._bits(PAYLOAD))


def test_riva_gan_round_trip_on_a_small_image():
    pytest.importorskip("onnxruntime")
    img = cv2.resize(skdata.coffee(), (256, 256), interpolation=cv2.INTER_AREA)
    wm = RivaGanWatermark(KEY, payload=0xDEADBEEF)
    assert wm.payload_bits == 32
    out = wm.embed(art(img), 0xDEADBEEF)
    res = wm.detect(out)
    assert res.detected is True and res.payload == "deadbeef"
    assert RivaGanWatermark(KEY, payload=0xDEADBEEF).detect(art(img)).detected is False


def test_rgba_keeps_alpha(photo):
    alpha = np.full(photo.shape[:2], 200, np.uint8)
    wm = DwtDctWatermark(KEY, payload=7)
    out = wm.embed(art(np.dstack([photo, alpha])), 7)
    assert out.content.shape == (512, 512, 4) and np.array_equal(out.content[..., 3], alpha)
    assert wm.detect(out).detected is True


@pytest.mark.parametrize("content, words", [
    (np.zeros((255, 255, 3), np.uint8), "256x256"),
    (np.zeros((512, 512), np.uint8), "grey"),
    (np.zeros((512, 512, 3), np.float32), "uint8"),
    (np.zeros((512, 512, 2), np.uint8), "HxWx3"),
    ("nope", "numpy array"),
])
def test_unsupported_inputs(content, words):
    wm = DwtDctWatermark(KEY, payload=1)
    with pytest.raises(CannotWatermark, match=words):
        wm.embed(art(content), 1)
    res = wm.detect(art(content))
    assert res.detected is None and words in res.reason


def test_detect_needs_an_expected_payload(photo):
    wm = DwtDctWatermark(KEY)
    res = wm.detect(art(photo))
    assert res.detected is None and "expected id" in res.reason
    marked = wm.embed(art(photo), 42)
    assert wm.detect(marked, expected=42).payload == f"{42:012x}"
    assert wm.detect(marked, expected=43).payload is None


def test_options_are_checked():
    with pytest.raises(ValueError):
        InvisibleWatermark("lsb", KEY)
    with pytest.raises(ValueError):
        InvisibleWatermark("rivaGan", KEY, payload_bits=48)
    with pytest.raises(ValueError):
        DwtDctWatermark(KEY, payload_bits=4)
    with pytest.raises(ValueError):
        DwtDctWatermark(KEY, payload=2 ** 48)
    with pytest.raises(CannotWatermark, match="payload"):
        DwtDctWatermark(KEY).embed(art(np.zeros((300, 300, 3), np.uint8)), 2 ** 48)
    assert KEY.decode() not in repr(DwtDctWatermark(KEY))


def test_binomial_tail_is_exact():
    assert binomial_tail(0, 10) == 1.0 and binomial_tail(11, 10) == 0.0
    assert binomial_tail(10, 10) == 2.0 ** -10
    assert binomial_tail(9, 10) == 11 / 1024
    scipy_stats = pytest.importorskip("scipy.stats")
    for n in (32, 48):
        for k in range(n + 1):
            assert binomial_tail(k, n) == pytest.approx(scipy_stats.binom.sf(k - 1, n, 0.5),
                                                        rel=1e-9, abs=1e-300)


def test_p_value_is_honest_over_keys(photo):
    """On an unmarked image the library's bits are biased, but the keyed mask makes the
    number of agreeing bits binomial over keys: p <= alpha at most about alpha of the time."""
    ps = np.array([DwtDctWatermark(bytes([i]) * 8, payload=0).detect(art(photo)).p_value
                   for i in range(60)])
    for alpha in (0.05, 0.25, 0.5):
        assert np.mean(ps <= alpha) <= alpha + 0.15
