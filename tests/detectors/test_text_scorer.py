"""Fast-DetectGPT and Binoculars criteria with a tiny random Llama and a character
tokenizer: computed in chunks of positions, on the visible text only."""

import pytest
import torch

from guardrail.detectors import text as text_det
from guardrail.detectors.text import BinocularsScorer, FastDetectGPTScorer

V = 512


class CharTokenizer:
    bos_token_id = 1

    def __call__(self, text, add_special_tokens=False, truncation=False, max_length=None,
                 return_tensors=None):
        ids = [2 + ord(c) % (V - 2) for c in text]
        if truncation and max_length:
            ids = ids[:max_length]
        return {"input_ids": torch.tensor([ids]) if return_tensors == "pt" else ids}


def _model(seed):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512)
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def scorer():
    return FastDetectGPTScorer(_model(0), CharTokenizer(), min_tokens=4, max_tokens=300)


TEXT = ("Detectors score the prose a reader sees; the credentials travel with it but are "
        "not part of it, and neither are zero-width characters. ") * 2


def _reference(model, ids):
    with torch.no_grad():
        logits = model(input_ids=ids).logits[:, :-1].float()
    labels = ids[:, 1:]
    lp = torch.log_softmax(logits, dim=-1)
    p = lp.exp()
    ll = lp.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    mu = (p * lp).sum(-1)
    var = (p * lp.square()).sum(-1) - mu.square()
    return float((ll.sum() - mu.sum()) / var.sum().sqrt())


def test_chunked_criterion_equals_the_whole_text_formula(scorer, monkeypatch):
    ids = scorer._ids(TEXT)
    assert ids.shape[1] > 2 * text_det.CHUNK_POSITIONS  # several chunks
    ref = _reference(scorer.model, ids)
    assert scorer.criterion(TEXT) == pytest.approx(ref, rel=1e-5, abs=1e-6)
    monkeypatch.setattr(text_det, "CHUNK_POSITIONS", 7)
    assert scorer.criterion(TEXT) == pytest.approx(ref, rel=1e-5, abs=1e-6)


def test_credential_characters_do_not_change_the_score(scorer):
    selectors = "".join(chr(0xFE00 + b % 16) for b in range(300))
    wrapped = TEXT + "\ufeff" + selectors
    zero_width = TEXT.replace(" ", " \u200b", 20)
    assert scorer.criterion(wrapped) == scorer.criterion(TEXT)
    assert scorer.criterion(zero_width) == scorer.criterion(TEXT)
    scorer.check(wrapped)  # the length check sees the visible text too
    from guardrail.detectors.base import NotPerformed

    with pytest.raises(NotPerformed):
        scorer.check("ab" + "\ufeff" + selectors)


def test_binoculars_chunked_equals_whole_text():
    obs, perf = _model(1), _model(2)
    sc = BinocularsScorer(obs, perf, CharTokenizer(), min_tokens=4, max_tokens=300)
    ids = sc._ids(TEXT)
    with torch.no_grad():
        lo = obs(input_ids=ids).logits[:, :-1].float()
        lpf = perf(input_ids=ids).logits[:, :-1].float()
    lp_perf = torch.log_softmax(lpf, dim=-1)
    log_ppl = -lp_perf.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1).mean()
    x_ent = -(torch.softmax(lo, dim=-1) * lp_perf).sum(-1).mean()
    assert sc.criterion(TEXT) == pytest.approx(float(-(log_ppl / x_ent)), rel=1e-5)
    assert sc.criterion(TEXT + "\ufeff\ufe03") == sc.criterion(TEXT)
