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


def test_skeleton_maps_look_alike_letters_and_compatibility_forms_to_ascii():
    from guardrail.textnorm import skeleton

    attacked = "T\u04bb\u0435 qu\u0456\u0441k br\u043e\u051dn f\u043ex \u0458um\u0440s"
    assert skeleton(attacked) == "The quick brown fox jumps"
    assert skeleton("\u0391\u0392\u0395 \u03bf\u03c1 \uff21\uff42 \ufb01ne \U0001d41bold") == \
        "ABE op Ab fine bold"
    assert skeleton("lunate \u03f9 \u03f2") == "lunate C c"  # NFKC would make them sigmas
    assert skeleton("x\u200by\ufeff\ufe01") == "xy"  # invisible characters go first


@pytest.mark.parametrize("text", ["plain ASCII text, unchanged.\n\tTabs too.",
                                  "\u00e9t\u00e9 na\u00efve caf\u00e9", "\u4e2d\u6587 \u2014 \u00bd"])
def test_skeleton_keeps_what_has_no_ascii_look_alike(text):
    from guardrail.textnorm import skeleton

    assert skeleton(text) == unicodedata.normalize("NFKC", text)


def test_every_confusable_maps_to_one_ascii_character():
    from guardrail.textnorm import CONFUSABLES, skeleton

    for char, ascii_char in CONFUSABLES.items():
        assert len(ascii_char) == 1 and ascii_char.isascii() and not char.isascii()
        assert skeleton(char) == ascii_char, hex(ord(char))
