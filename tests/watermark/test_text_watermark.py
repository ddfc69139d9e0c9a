"""Text watermarks with the real embedded model: KGW and SynthID through transformers,
keyed from the key file, detected from text + tokenizer at a stated false-positive rate."""

import pytest

from guardrail import GenerationHooks
from guardrail.watermark.text import TextWatermarker, TextWatermarkParams

pytestmark = pytest.mark.slow

PROMPTS = ["Write a short story about a lighthouse keeper who finds a map.",
           "Explain, step by step, how bread is made at home."]
PARAMS = {"max_new_tokens": 96, "min_new_tokens": 64, "temperature": 1.0}


@pytest.fixture(scope="module")
def gen():
    from generators.text import load

    return load(progress=False)


def make(gen, key, scheme, **kw):
    return TextWatermarker(key, tokenizer=gen.tokenizer, tokenizer_id=gen.info.model_id,
                           vocab_size=gen.model.config.vocab_size,
                           params=TextWatermarkParams(scheme=scheme), **kw)


@pytest.fixture(scope="module", params=["kgw", "synthid"])
def marked(request, gen):
    key = bytes(range(32))
    wm = make(gen, key, request.param)
    hooks = GenerationHooks(watermarking_config=wm.generation_config())
    outs = gen.generate(PROMPTS, seed=2, params=PARAMS, hooks=hooks)
    plain = gen.generate(PROMPTS, seed=2, params=PARAMS)
    return request.param, key, wm, [o.content for o in outs], [o.content for o in plain], outs


def test_marked_text_is_detected_and_plain_text_is_not(marked):
    scheme, _key, wm, texts, plains, outs = marked
    assert all(o.parameters["watermarking"] for o in outs)
    for text in texts:
        res = wm.detect_text(text)
        assert res.detected is True, (scheme, res)
        assert res.p_value <= wm.fpr and res.scheme == scheme and res.fpr == 1e-3
    for text in plains:
        res = wm.detect_text(text)
        assert res.detected is False and res.p_value > 1e-3


def test_detection_needs_the_key(marked, gen):
    scheme, _key, _wm, texts, _plains, _ = marked
    other = make(gen, bytes(range(1, 33)), scheme)
    assert [other.detect_text(t).detected for t in texts] == [False, False]


def test_recorded_config_reproduces_detection_without_the_generator(marked, gen):
    scheme, key, wm, texts, _plains, _ = marked
    desc = wm.describe()
    assert desc["scheme"] == scheme and desc["key_id"] == wm.key_id
    assert desc["tokenizer"] == "embedded:smollm2" and "context_width" in desc
    assert key.hex() not in repr(desc) and str(int.from_bytes(key[:8], "big")) not in repr(desc)
    # a fresh detector built from the recorded description and the key file's secret
    fresh = TextWatermarker(key, tokenizer=gen.tokenizer, tokenizer_id=desc["tokenizer"],
                            vocab_size=desc["vocab_size"],
                            params=TextWatermarkParams(scheme=desc["scheme"]))
    assert fresh.detect_text(texts[0]).p_value == pytest.approx(wm.detect_text(texts[0]).p_value)


def test_short_and_empty_text_is_not_performed(marked):
    _scheme, _key, wm, _texts, _plains, _ = marked
    for text in ("", "   ", "Hello there."):
        res = wm.detect_text(text)
        assert res.detected is None and res.reason.startswith("cannot detect")


def test_threshold_follows_the_configured_rate(marked, gen):
    scheme, key, _wm, texts, _plains, _ = marked
    strict = make(gen, key, scheme, fpr=1e-300)
    res = strict.detect_text(texts[0])
    assert res.detected is False and res.p_value > 1e-300  # same evidence, stricter rate


def test_homoglyphs_on_half_the_letters_do_not_remove_the_mark(marked):
    from guardrail import Artifact, GenerationMetadata
    from guardrail.robustness.text_attacks import homoglyph

    scheme, _key, wm, texts, plains, _outs = marked
    for text in texts:
        art = Artifact(modality="text", content=text, metadata=GenerationMetadata("m"))
        attacked = homoglyph(0.5)(art).content
        assert attacked != text
        res = wm.detect_text(attacked)
        assert res.detected is True and "look-alike" in res.reason, (scheme, res)
    for text in plains:
        art = Artifact(modality="text", content=text, metadata=GenerationMetadata("m"))
        assert wm.detect_text(homoglyph(0.5)(art).content).detected is False


def test_synthid_null_uses_the_keys_own_table(gen):
    """SynthID's g-values are bits of the key's sampling table, whose share of ones misses
    0.5 by a little: that share, not 0.5, is the null rate. On text that carries no mark
    (random tokens) the mean score is then about 0; a fair-coin null shifts every score of
    that key by the same amount (here downwards: this key's table has fewer ones)."""
    import numpy as np

    wm = make(gen, b"bias-key-14".ljust(32, b"0"), "synthid")
    q = wm._null_g_rate()
    assert 0.4 < q < 0.4975          # a key chosen for its table's low share of ones
    rng = np.random.default_rng(0)
    texts = [gen.tokenizer.decode(rng.integers(100, gen.model.config.vocab_size, 400).tolist())
             for _ in range(60)]
    z_exact = np.mean([wm.detect_text(t).score for t in texts])
    wm._q = 0.5                      # the fair-coin null
    z_fair = np.mean([wm.detect_text(t).score for t in texts])
    assert abs(z_exact) < 0.4 and z_fair < -0.5, (z_exact, z_fair)
