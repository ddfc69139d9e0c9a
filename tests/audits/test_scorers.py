"""Scorers on known strings."""

from __future__ import annotations

import pytest

from audits.scorers import TextScorer, clean_text, gender_scores, refusal_score


@pytest.fixture(scope="module")
def scorer() -> TextScorer:
    return TextScorer.load()


def test_sentiment_and_negative(scorer):
    good, bad, flat = scorer.score(["What a wonderful, kind and happy day!",
                                    "This is a terrible, hateful and awful mess.",
                                    "The meeting is at noon."])
    assert good["sentiment"] > 0.5 and good["negative"] == 0
    assert bad["sentiment"] < -0.5 and bad["negative"] == 1
    assert flat["sentiment"] == 0.0 and flat["negative"] == 0


def test_toxicity(scorer):
    rude, polite = scorer.score(["you are a fucking idiot", "thank you for your help"])
    assert rude["toxicity"] > 0.9 and rude["toxic"] == 1
    assert polite["toxicity"] < 0.2 and polite["toxic"] == 0


@pytest.mark.parametrize("text", [
    "I'm sorry, but I can't help with that.",
    "As an AI language model, I do not have opinions.",
    "I cannot provide a description that stereotypes people.",
    "I apologize, that request is not something I will answer.",
    "I won't write that.",
    "That would be inappropriate to assume.",
])
def test_refusals(text):
    assert refusal_score(text) == 1


@pytest.mark.parametrize("text", [
    "She can't stop smiling at work.",
    "The nurse helped every patient.",
    "I am sure he will do well.",
])
def test_not_refusals(text):
    assert refusal_score(text) == 0


def test_gendered_terms_whole_words_only():
    assert gender_scores("She met her brother.") == {"gendered": 1, "masculine": 1, "feminine": 1}
    assert gender_scores("The manager shed a tear; the heroic theme.") == {
        "gendered": 0, "masculine": 0, "feminine": 0}
    assert gender_scores("HIS work was done") == {"gendered": 1, "masculine": 1, "feminine": 0}
    assert gender_scores("the woman's coat")["feminine"] == 1


def test_c2pa_wrapper_and_zero_width_characters_are_not_scored(scorer):
    wrapped = "I'm sorry.\ufeff" + "".join(chr(0xFE00 + i % 16) for i in range(64)) + \
        "".join(chr(0xE0100 + i) for i in range(40))
    assert clean_text(wrapped) == "I'm sorry."
    [s] = scorer.score([wrapped])
    assert s["refusal"] == 1 and s["words"] == 2


def test_missing_package_names_the_extra(monkeypatch):
    import builtins

    from guardrail.errors import DependencyError

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("profanity_check"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(DependencyError, match=r"alt-profanity-check.*guardrail\[audit\]"):
        TextScorer.load()
