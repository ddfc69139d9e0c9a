"""The one invisible-text normaliser."""

from __future__ import annotations

import unicodedata

import pytest

from guardrail.textnorm import INVISIBLE, visible_text


@pytest.mark.parametrize("char", ["\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2060",
                                  "\ufeff", "\ufe00", "\ufe0f", "\U000e0100", "\U000e01ef"])
def test_invisible_characters_are_removed(char):
    assert visible_text(f"wa{char}ter{char}mark") == "watermark"


def test_the_set_is_format_and_variation_characters_only():
    assert len(INVISIBLE) == 5 + 2 + 16 + 240
    for c in INVISIBLE:
        assert unicodedata.category(c) in ("Cf", "Mn"), hex(ord(c))


@pytest.mark.parametrize("text", [
    "bidi \u202aembedding\u202c and \u2066isolate\u2069 controls reorder text",
    "a soft\u00adhyphen shows at a line break",
    "  white space\tand\nlines stay  ",
    "e\u0301 combining marks stay, emoji \U0001f600 too",
])
def test_everything_else_is_kept(text):
    assert visible_text(text) == text


def test_an_embedded_c2pa_wrapper_is_removed():
    # C2PATextManifestWrapper: U+FEFF then one variation selector per manifest byte
    selectors = [chr(0xFE00 + b) if b < 16 else chr(0xE0100 + b - 16) for b in range(256)]
    wrapped = "The visible prose." + "\ufeff" + "".join(selectors)
    assert visible_text(wrapped) == "The visible prose."


def test_the_text_fingerprint_uses_it():
    from guardrail._types import Artifact, GenerationMetadata, Modality
    from guardrail.fingerprint import fingerprint

    def fp(text: str) -> str:
        return fingerprint(Artifact(Modality.TEXT, text, GenerationMetadata("m")))

    assert fp("left\u200e to\u200f right") == fp("left to right")
