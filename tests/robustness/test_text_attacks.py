from pathlib import Path

import pytest

from guardrail import Artifact, GenerationMetadata
from guardrail.errors import DependencyError
from guardrail.robustness.attacks import build_attack, build_suite
from guardrail.robustness.text_attacks import (
    deletion,
    insertion,
    paraphrase,
    synonym,
    truncation,
    wordnet_dir,
)
from guardrail.testing import EchoTextGenerator

TEXT = ("The quick brown fox jumps over the lazy dog. It was a bright morning in the large "
        "city, and people walked quickly to their work while the river shone.")


def art(text=TEXT):
    return Artifact(modality="text", content=text, metadata=GenerationMetadata(model_id="m"))


def test_deletion_insertion_truncation_change_the_expected_amount():
    n = len(TEXT.split())
    assert len(deletion(0.2)(art()).content.split()) == n - round(0.2 * n)
    assert len(insertion(0.2)(art()).content.split()) == n + round(0.2 * n)
    assert len(truncation(0.5)(art()).content.split()) == round((1 - 0.5) * n)
    assert deletion(0.0)(art()).content == TEXT
    assert deletion(0.3)(art()).content == deletion(0.3)(art()).content  # seeded


def test_bad_strength_is_refused():
    with pytest.raises(ValueError, match="fraction"):
        deletion(1.5)(art())


@pytest.mark.skipif(not (wordnet_dir() / "index.noun").is_file(),
                    reason="Debian wordnet-base is not installed (CI installs it)")
def test_synonyms_replace_content_words_only():
    out = synonym(1.0)(art()).content
    assert out != TEXT
    for word in ("The", "over", "the", "It", "was", "in", "and", "to", "while"):
        assert f" {word} " in f" {out} " or word in ("The", "It")
    assert len(out.split()) >= len(TEXT.split()) - 2


def test_synonym_attack_without_wordnet_says_how_to_get_it(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("GUARDRAIL_WORDNET_DIR", str(tmp_path))
    with pytest.raises(DependencyError, match="wordnet-base"):
        synonym(0.5)(art())


def test_paraphrase_uses_the_local_generator():
    gen = EchoTextGenerator()
    out = paraphrase(1.0, generator=gen)(art()).content
    assert out.count("echo: Paraphrase this sentence.") == 2
    assert len(gen.calls[-1][0]) == 2


def test_suite_covers_the_issue_attacks():
    names = {a.name for a in build_suite("text")}
    assert {"word_deletion", "synonym", "word_insertion", "truncation"} <= names


def test_paraphrase_through_the_registry_takes_the_lab_model():
    gen = EchoTextGenerator()
    att = build_attack("text", "paraphrase", 1.0, generator=gen)
    assert att.label == "paraphrase(1.0)"
    assert att(art()).content.count("echo: Paraphrase this sentence.") == 2



def test_homoglyph_swaps_the_asked_share_of_eligible_letters_invisibly():
    from guardrail.robustness.text_attacks import HOMOGLYPHS
    from guardrail.textnorm import skeleton

    eligible = sum(ch in HOMOGLYPHS for ch in TEXT)
    out = build_attack("text", "homoglyph", 0.5)(art()).content
    changed = sum(a != b for a, b in zip(TEXT, out, strict=True))
    assert changed == round(0.5 * eligible) and len(out) == len(TEXT)
    assert skeleton(out) == TEXT  # it only looks the same
    assert out == build_attack("text", "homoglyph", 0.5)(art()).content  # seeded
    assert build_attack("text", "homoglyph", 0.0)(art()).content == TEXT


def test_normalise_applies_nfkc_and_collapses_white_space():
    text = "The \ufb01rst\u00a0line\n\n  and  the\tsecond \uff11"
    assert build_attack("text", "normalise", 1)(art(text)).content == \
        "The first line and the second 1"


def test_suite_has_homoglyphs_and_normalisation():
    labels = {a.label for a in build_suite("text")}
    assert {"homoglyph(0.5)", "normalise(1)"} <= labels
