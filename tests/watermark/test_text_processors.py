"""The faster text watermark processors give transformers' own marks (no model needed)."""

import pytest
import torch
from transformers import PretrainedConfig, WatermarkDetector, WatermarkingConfig
from transformers.generation.logits_process import (
    SynthIDTextWatermarkLogitsProcessor,
    TopPLogitsWarper,
    WatermarkLogitsProcessor,
)

from guardrail.watermark import text_processors as tp

V = 4096  # a small vocabulary keeps the test fast; the code does not depend on the size
KEY = 987654321


def test_kgw_processor_adds_the_same_bias_as_transformers():
    torch.manual_seed(0)
    ids = torch.randint(0, V, (5, 12))
    ids[1, -1] = ids[0, -1]  # two sequences with the same context share a cached list
    scores = torch.randn(5, V) * 3
    scores[2, :100] = float("-inf")
    ref = WatermarkLogitsProcessor(V, "cpu", bias=4.0, hashing_key=KEY)(ids, scores)
    fast = tp.KGWProcessor(V, "cpu", bias=4.0, hashing_key=KEY)(ids, scores)
    assert torch.equal(ref, fast)
    assert not torch.equal(fast, scores)


@pytest.mark.parametrize("context_width", [1, 3])
def test_kgw_counts_match_transformers_detector(context_width):
    cfg = WatermarkingConfig(bias=4.0, hashing_key=KEY, context_width=context_width)
    det = WatermarkDetector(PretrainedConfig(vocab_size=V, bos_token_id=1), "cpu", cfg,
                            ignore_repeated_ngrams=True)
    torch.manual_seed(context_width)
    ids = torch.randint(2, 60, (1, 150))  # a small alphabet: many repeated n-grams
    ids[0, 0] = 1
    out = det(ids, return_dict=True)
    assert tp.kgw_counts(ids, hash_key=KEY, vocab_size=V, greenlist_ratio=0.25,
                         context_width=context_width, bos_token_id=1) == (
        int(out.num_tokens_scored[0]), int(out.num_green_tokens[0]))


def test_green_mask_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(tp, "KGW_CACHE_ENTRIES", 3)
    tp._cache.clear()
    masks = [tp.kgw_green_mask(KEY, V, V // 4, t) for t in range(5)]
    assert len(tp._cache) == 3
    assert all(int(m.sum()) == V // 4 for m in masks)
    assert torch.equal(tp.kgw_green_mask(KEY, V, V // 4, 0), masks[0])  # recomputed alike


def test_synthid_processor_matches_transformers_after_top_p():
    keys = list(range(100, 130))
    ref = SynthIDTextWatermarkLogitsProcessor(5, keys, 2**16, 77, 1024, torch.device("cpu"))
    fast = tp.SynthIDProcessor(5, keys, 2**16, 77, 1024, torch.device("cpu"))
    warp = TopPLogitsWarper(0.9)
    torch.manual_seed(1)
    for step in range(6):
        ids = torch.randint(0, V, (3, 10 + step))
        if step == 3:
            ids[0, -4:] = ids[0, -9:-5]  # a repeated context: the scores pass unchanged
        scores = warp(ids, torch.randn(3, V) * 4)
        a, b = ref(ids, scores), fast(ids, scores)
        assert torch.allclose(a.softmax(1), b.softmax(1), atol=1e-6)
        assert not (b.softmax(1) > 0)[~torch.isfinite(scores)].any()
    assert torch.equal(ref.state.context_history, fast.state.context_history)


def test_synthid_processor_matches_transformers_on_full_vocabulary():
    keys = [7, 8, 9]
    ref = SynthIDTextWatermarkLogitsProcessor(3, keys, 2**16, 5, 64, torch.device("cpu"))
    fast = tp.SynthIDProcessor(3, keys, 2**16, 5, 64, torch.device("cpu"))
    torch.manual_seed(2)
    ids = torch.randint(0, V, (2, 8))
    scores = torch.randn(2, V)
    assert torch.allclose(ref(ids, scores), fast(ids, scores), atol=1e-5)


def test_configs_build_the_fast_processors_under_the_original_names():
    kgw = tp.KGWConfig(bias=4.0, hashing_key=KEY)
    synth = tp.SynthIDConfig(ngram_len=5, keys=[1, 2, 3], sampling_table_seed=4)
    assert isinstance(kgw.construct_processor(V, "cpu"), tp.KGWProcessor)
    assert isinstance(synth.construct_processor(V, torch.device("cpu")), tp.SynthIDProcessor)
    assert type(kgw).__name__ == "WatermarkingConfig"
    assert type(synth).__name__ == "SynthIDTextWatermarkingConfig"
