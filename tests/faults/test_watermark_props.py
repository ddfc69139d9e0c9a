"""Every registered image and audio watermark scheme, and the text KGW detector, answer any
artifact of their modality - decoded from damaged files or made of odd arrays - with a
result (detected, not detected, or not performed with the reason) and never raise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from guardrail._types import Artifact, GenerationMetadata, Modality, WatermarkResult
from guardrail.errors import DependencyError, GuardrailError, ModelLoadError
from guardrail.media import decode
from guardrail.watermark import registry
from tests.faults.seeds import pattern_image, speechlike
from tests.faults.strategies import FAULTS, damaged, memory_headroom, tiny_tokenizer

KEY = bytes(range(32))
META = GenerationMetadata(model_id="faults")
IMAGE_SCHEMES = sorted(registry.registered("image"))
AUDIO_SCHEMES = sorted(registry.registered("audio"))
RATES = (1, 2, 100, 7999, 8000, 16000, 44100, 48000, 96000, 192000, 1_000_000, 2**31 - 1)


def _build(name: str, probe: Artifact):
    """The scheme, or a skip when it cannot run on this machine at all (a model that is
    not installed): what is tested is its answer to bad input, not its installation."""
    try:
        wm = registry.build(name, key=KEY, fpr=1e-4)
        wm.detect(probe)
    except (ModelLoadError, DependencyError) as exc:
        pytest.skip(f"scheme {name} cannot run here: {str(exc).splitlines()[0]}")
    return wm


@pytest.fixture(scope="module", params=IMAGE_SCHEMES)
def image_scheme(request):
    return _build(request.param, Artifact(Modality.IMAGE, pattern_image(1, 96), META))


@pytest.fixture(scope="module", params=AUDIO_SCHEMES)
def audio_scheme(request):
    return _build(request.param, Artifact(Modality.AUDIO, speechlike(1, 1.5), META,
                                          sample_rate=16000))


def check(res: WatermarkResult) -> None:
    assert isinstance(res, WatermarkResult)
    assert res.detected in (True, False, None)
    if res.detected is None:
        assert res.reason, "a detection that was not performed says why"
    else:
        assert res.p_value is not None and 0.0 <= res.p_value <= 1.0
        assert not math.isnan(res.p_value)


def detect(wm, art: Artifact) -> WatermarkResult:
    with memory_headroom():
        res = wm.detect(art)
    check(res)
    return res


def _decoded(seedset, data, modality: Modality) -> Artifact | None:
    seeds = [s for s in seedset.seeds if s.ext in {
        Modality.IMAGE: (".png", ".jpg", ".webp"), Modality.AUDIO: (".wav", ".flac", ".mp3")
    }[modality]]
    seed = data.draw(st.sampled_from(seeds), label="seed")
    _, raw = data.draw(damaged(seed.read()), label="change")
    try:
        art = decode(raw, None)
    except GuardrailError:
        return None
    return art if art.modality is modality else None


@FAULTS
@given(data=st.data())
def test_image_schemes_answer_damaged_images(seedset, image_scheme, data):
    art = _decoded(seedset, data, Modality.IMAGE)
    if art is not None:
        detect(image_scheme, art)


@FAULTS
@given(h=st.integers(1, 300), w=st.integers(1, 300), c=st.sampled_from((1, 3, 4)),
       fill=st.sampled_from(("zeros", "max", "noise", "stripes")))
def test_image_schemes_answer_odd_arrays(image_scheme, h, w, c, fill):
    rng = np.random.default_rng(h * 1000 + w)
    arr = {"zeros": np.zeros((h, w, c), np.uint8), "max": np.full((h, w, c), 255, np.uint8),
           "noise": rng.integers(0, 256, (h, w, c), dtype=np.uint8),
           "stripes": (np.indices((h, w, c)).sum(axis=0) % 2 * 255).astype(np.uint8)}[fill]
    if c == 1:
        arr = arr[:, :, 0]
    detect(image_scheme, Artifact(Modality.IMAGE, arr, META))


@FAULTS
@given(data=st.data())
def test_audio_schemes_answer_damaged_audio(seedset, audio_scheme, data):
    art = _decoded(seedset, data, Modality.AUDIO)
    if art is not None:
        detect(audio_scheme, art)


@FAULTS
@given(n=st.integers(0, 48000), channels=st.sampled_from((1, 2, 3, 65)),
       rate=st.sampled_from(RATES), fill=st.sampled_from(("silence", "noise", "nan", "loud")))
def test_audio_schemes_answer_odd_arrays(audio_scheme, n, channels, rate, fill):
    rng = np.random.default_rng(n)
    x = {"silence": np.zeros((n, channels), np.float32),
         "noise": (0.1 * rng.standard_normal((n, channels))).astype(np.float32),
         "nan": np.full((n, channels), np.nan, np.float32),
         "loud": np.full((n, channels), 1e6, np.float32)}[fill]
    if channels == 1:
        x = x[:, 0]
    detect(audio_scheme, Artifact(Modality.AUDIO, x, META, sample_rate=rate))


@pytest.fixture(scope="module")
def kgw():
    from guardrail.watermark.text import TextWatermarker, TextWatermarkParams

    tok = tiny_tokenizer()
    return TextWatermarker(KEY, tokenizer=tok, tokenizer_id="faults:tiny-bpe",
                           vocab_size=len(tok), params=TextWatermarkParams(scheme="kgw"))


@FAULTS
@given(text=st.text(max_size=400))
def test_kgw_answers_any_text(kgw, text):
    detect(kgw, Artifact(Modality.TEXT, text, META))


@FAULTS
@given(data=st.data())
def test_kgw_answers_damaged_signed_text(seedset, kgw, data):
    _, raw = data.draw(damaged(seedset.by_name("guardrail.txt").read()), label="change")
    text = raw.decode("utf-8", errors="replace")
    detect(kgw, Artifact(Modality.TEXT, text, META))
