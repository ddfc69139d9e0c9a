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
