"""KGW detection reads look-alike letters as ASCII, so homoglyphs do not remove the mark
(a character-level fake tokenizer: no model is loaded)."""

import numpy as np
import pytest
import torch

from guardrail.watermark import text as text_wm
from guardrail.watermark.text import TextWatermarker, TextWatermarkParams
from guardrail.watermark.text_processors import kgw_green_mask

V = 4096
KEY = bytes(range(32))
LETTERS = "abcdefghijklmnopqrstuvwxyz "
ELIGIBLE = "acseiopxy "  # letters the attack below can replace, and the space
# the homoglyph attack's Cyrillic letters (ord() < V, so each is a token of its own)
CYRILLIC = {"a": "\u0430", "c": "\u0441", "e": "\u0435", "i": "\u0456", "o": "\u043e",
            "p": "\u0440", "s": "\u0455", "x": "\u0445", "y": "\u0443"}


class CharTokenizer:
    bos_token_id = None
    eos_token_id = None

    def __call__(self, text, return_tensors=None, add_special_tokens=False):
        return {"input_ids": torch.tensor([[ord(c) % V for c in text]])}


def _wm():
    return TextWatermarker(KEY, tokenizer=CharTokenizer(), tokenizer_id="chars", vocab_size=V,
                           params=TextWatermarkParams(scheme="kgw"), fpr=1e-4)


def _marked_text(wm, n=300, seed=0, letters=LETTERS):
    """Letters chosen, one after another, from the green list of the one before."""
    rng = np.random.default_rng(seed)
    out = ["a"]
    for _ in range(n):
        green = kgw_green_mask(wm._hashing_key, V, V // 4, ord(out[-1]))
        choices = [c for c in letters if green[ord(c)]] or list(letters)
        out.append(str(rng.choice(choices)))
    return "".join(out)


def _homoglyphs(text, share, seed=1):
    rng = np.random.default_rng(seed)
    return "".join(CYRILLIC[c] if c in CYRILLIC and rng.random() < share else c for c in text)


def test_homoglyph_attacked_mark_is_still_detected():
    wm = _wm()
    text = _marked_text(wm)
    clean = wm.detect_text(text)
    assert clean.detected and "doubled" not in clean.reason
    attacked = _homoglyphs(text, 0.5)
    assert attacked != text
    res = wm.detect_text(attacked)
    assert res.detected is True, res
    assert "look-alike letters read as ASCII" in res.reason and "doubled" in res.reason
    assert res.p_value >= 2 * min(clean.p_value, 1e-300) - 1e-300  # Bonferroni-doubled


def test_without_the_skeleton_the_attack_would_remove_the_mark(monkeypatch):
    wm = _wm()
    text = _marked_text(wm, letters=ELIGIBLE)
    assert wm.detect_text(text).detected
    attacked = _homoglyphs(text, 1.0)
    monkeypatch.setattr(text_wm, "skeleton", lambda t: t)
    assert wm.detect_text(attacked).detected is False


@pytest.mark.parametrize("seed", range(5))
def test_unmarked_text_with_look_alikes_stays_unmarked(seed):
    rng = np.random.default_rng(seed)
    plain = "".join(rng.choice(list(LETTERS), 300))
    res = _wm().detect_text(_homoglyphs(plain, 0.5, seed=seed))
    assert res.detected is False and res.p_value > 1e-4
