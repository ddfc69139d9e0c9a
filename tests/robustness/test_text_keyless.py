"""The watermark-stealing pieces of the text lab's keyless copy attack (no model needed)."""

from __future__ import annotations

import pytest

from guardrail.robustness.text_keyless import StolenBoost, steal

torch = pytest.importorskip("torch")


class _Tok:
    """Words as token ids."""

    vocab = {w: i for i, w in enumerate("a b c d e f g".split())}

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [self.vocab[w] for w in text.split()]}


def test_steal_collects_the_tokens_seen_after_each_context():
    table = steal(["a b c a d", "a b e"], _Tok(), 1)
    assert table == {(0,): {1, 3}, (1,): {2, 4}, (2,): {0}}
    assert steal(["a b c a d"], _Tok(), 2) == {(0, 1): {2}, (1, 2): {0}, (2, 0): {3}}
    with pytest.raises(ValueError, match="at least 1 token"):
        steal(["a b"], _Tok(), 0)


def test_stolen_boost_raises_only_the_favoured_tokens_of_the_current_context():
    proc = StolenBoost({(0,): {1, 3}, (0, 1): {5}}, context=1, boost=4.0)
    ids = torch.tensor([[2, 0], [0, 6]])
    out = proc(ids, torch.zeros(2, 7))
    assert out[0].tolist() == [0, 4, 0, 4, 0, 0, 0]   # after token 0: tokens 1 and 3
    assert out[1].tolist() == [0] * 7                  # after token 6: nothing stolen
    two = StolenBoost({(0, 1): {5}}, context=2, boost=2.0)
    assert two(torch.tensor([[0, 1]]), torch.zeros(1, 7))[0, 5] == 2.0
    assert two(torch.tensor([[1]]), torch.zeros(1, 7)).abs().sum() == 0  # too short


class _Out:
    def __init__(self, content: str):
        self.content = content


class _Gen:
    """Generates, for each prompt, the favoured tokens of the boosted table (no model):
    enough to see which table each row of the lab used."""

    tokenizer = _Tok()

    def generate(self, prompts, *, seed, params, hooks):
        proc = hooks.logits_processors[0]
        favoured = sorted({t for s in proc.table.values() for t in s})
        words = {i: w for w, i in _Tok.vocab.items()}
        return [_Out(" ".join(words[t] for t in favoured) + f" ctx{proc.context}")
                for _ in prompts]


class _WM:
    scheme = "kgw"

    def __init__(self, width: int):
        self.width = width

    def describe(self):
        return {"context_width": self.width}

    def detect_text(self, text: str):
        from guardrail._types import WatermarkResult

        # "detects" exactly the spoofs made with a one-token table
        hit = text.endswith("ctx1")
        return WatermarkResult(detected=hit, scheme="kgw", scheme_version="1",
                               p_value=1e-6 if hit else 0.5, fpr=1e-3)


def test_a_wide_context_scheme_is_also_attacked_with_a_one_token_table():
    """A seed built from several tokens may be decided by one (min-hash): the informed
    attacker also steals one-token pairs; a one-token scheme gets its own rows only."""
    from guardrail.robustness.text_keyless import keyless_text_trials

    marked = ["a b c a d"] * 10
    wide = keyless_text_trials(_Gen(), _WM(4), marked, ["p1", "p2"], params={},
                               estimates=(1,), boosts=(4.0,))
    assert wide["context"] == 4 and wide["contexts"] == [4, 1]
    assert set(wide["copy"]) == {"copy(n=1, boost=4)", "copy(n=1, boost=4, context=1)"}
    assert wide["copy"]["copy(n=1, boost=4)"]["positives"] == 0
    assert wide["copy"]["copy(n=1, boost=4, context=1)"]["positives"] == 2
    assert wide["copy"]["copy(n=1, boost=4, context=1)"]["contexts_stolen"] == 3
    narrow = keyless_text_trials(_Gen(), _WM(1), marked, ["p1"], params={},
                                 estimates=(1,), boosts=(4.0,))
    assert narrow["contexts"] == [1] and list(narrow["copy"]) == ["copy(n=1, boost=4)"]
