"""Faster, equivalent versions of transformers' text watermark logits processors.

Both schemes stay exactly the ones of transformers (the same green lists, the same
g-values, so texts marked by either implementation are detected by either); only the
per-token work changes:

* **KGW** (``lefthash``): the green list of a context is a ``torch.randperm`` of the whole
  vocabulary seeded by the previous token (about 1.5 ms for 49,152 tokens), recomputed by
  transformers for every sequence at every step and for every n-gram at detection. Here
  each green list is computed once per previous token and kept, bit-packed (6 KB for
  49,152 tokens), in a process-wide LRU cache shared by generation and detection
  (:data:`KGW_CACHE_ENTRIES` entries, at most about 25 MB). The bias is then added to the
  whole batch in one vectorised operation. ``selfhash`` falls back to transformers.
* **SynthID-Text**: transformers computes a g-value for every vocabulary entry and
  tournament layer at every step (``batch x vocabulary x depth`` 64-bit hashes, 1.5
  million per sequence for SmolLM2 and depth 30). The watermark runs after the sampling
  filters (temperature, top-p, top-k), so a token whose score is ``-inf`` has probability
  zero before and after the tournament; here the g-values are computed only for the tokens
  that some sequence of the batch can still sample (all tokens under greedy decoding), and
  the per-layer key hashing is folded into one multiply-add. The scores of the remaining
  tokens are the same as transformers' up to float rounding; the filtered-out tokens keep
  the lowest finite score, as in transformers.

:class:`KGWConfig` and :class:`SynthIDConfig` are transformers watermarking configs whose
``construct_processor`` builds these processors, so they go to ``model.generate`` like the
originals (their class names are the originals', which generators record).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from transformers import SynthIDTextWatermarkingConfig, WatermarkingConfig
from transformers.generation.logits_process import (
    SynthIDTextWatermarkLogitsProcessor,
    WatermarkLogitsProcessor,
)

__all__ = ["KGW_CACHE_ENTRIES", "KGWConfig", "KGWProcessor", "SynthIDConfig",
           "SynthIDProcessor", "kgw_green_mask", "kgw_counts"]

#: Green lists kept by the process-wide KGW cache (bit-packed: vocabulary / 8 bytes each).
KGW_CACHE_ENTRIES = 4096

_LCG_MULTIPLIER = 6364136223846793005  # transformers' SynthID hash (newlib/musl LCG)
_cache: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()
_cache_lock = threading.Lock()


def _wrap64(x: int) -> int:
    """``x`` as a signed 64-bit integer (two's complement wrap-around)."""
    x &= (1 << 64) - 1
    return x - (1 << 64) if x >= 1 << 63 else x


def kgw_green_mask(hash_key: int, vocab_size: int, greenlist_size: int,
                   last_token: int) -> torch.Tensor:
    """The KGW ``lefthash`` green list after ``last_token``, as a boolean mask.

    Identical to transformers' ``WatermarkLogitsProcessor._get_greenlist_ids``: the first
    ``greenlist_size`` entries of ``torch.randperm(vocab_size)`` drawn from a CPU generator
    seeded with ``hash_key * last_token``.
    """
    key = (int(hash_key), int(vocab_size), int(last_token))
    with _cache_lock:
        packed = _cache.get(key)
        if packed is not None:
            _cache.move_to_end(key)
    if packed is None:
        rng = torch.Generator(device="cpu")
        rng.manual_seed((int(hash_key) * int(last_token)) % (2**64 - 1))
        green = torch.randperm(int(vocab_size), generator=rng)[:int(greenlist_size)]
        mask = np.zeros(int(vocab_size), dtype=bool)
        mask[green.numpy()] = True
        packed = np.packbits(mask)
        with _cache_lock:
            _cache[key] = packed
            while len(_cache) > KGW_CACHE_ENTRIES:
                _cache.popitem(last=False)
    return torch.from_numpy(np.unpackbits(packed, count=int(vocab_size)).view(bool))


class KGWProcessor(WatermarkLogitsProcessor):
    """transformers' KGW processor with cached green lists and a batched bias (``lefthash``)."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if self.seeding_scheme != "lefthash" or input_ids.shape[-1] < self.context_width:
            return super().__call__(input_ids, scores)
        masks = torch.stack([kgw_green_mask(self.hash_key, self.vocab_size, self.greenlist_size,
                                            t) for t in input_ids[:, -1].tolist()])
        bias = torch.zeros(masks.shape, dtype=scores.dtype)
        bias.masked_fill_(masks, self.bias)
        return scores + bias.to(scores.device)


def kgw_counts(ids: torch.Tensor, *, hash_key: int, vocab_size: int, greenlist_ratio: float,
               context_width: int, bos_token_id: int | None) -> tuple[int, int]:
    """``(scored, green)`` of one tokenised text, each distinct n-gram counted once.

    The same counts as transformers' ``WatermarkDetector(ignore_repeated_ngrams=True)``
    for the ``lefthash`` scheme (a leading BOS token is dropped; n-grams are
    ``context_width + 1`` tokens; the green list is seeded by the token before the last).
    """
    seq = ids.reshape(-1).tolist()
    if seq and bos_token_id is not None and seq[0] == bos_token_id:
        seq = seq[1:]
    n = context_width + 1
    ngrams = {tuple(seq[i:i + n]) for i in range(len(seq) - n + 1)}
    size = int(vocab_size * greenlist_ratio)
    masks: dict[int, torch.Tensor] = {}
    green = 0
    for gram in ngrams:
        prev = gram[-2]
        if prev not in masks:
            masks[prev] = kgw_green_mask(hash_key, vocab_size, size, prev)
        green += bool(masks[prev][gram[-1]])
    return len(ngrams), green


class KGWConfig(WatermarkingConfig):
    """transformers' ``WatermarkingConfig`` building a :class:`KGWProcessor`."""

    def construct_processor(self, vocab_size: int, device: Any) -> KGWProcessor:
        return KGWProcessor(vocab_size=vocab_size, device=device,
                            greenlist_ratio=self.greenlist_ratio, bias=self.bias,
                            hashing_key=self.hashing_key, seeding_scheme=self.seeding_scheme,
                            context_width=self.context_width)


KGWConfig.__name__ = KGWConfig.__qualname__ = "WatermarkingConfig"


class SynthIDProcessor(SynthIDTextWatermarkLogitsProcessor):
    """transformers' SynthID-Text processor, scoring only the tokens that can be sampled."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # ((h + k) * M + 1) == h * M + (k * M + 1) in 64-bit wrap-around arithmetic
        self._key_offsets = torch.tensor([_wrap64(int(k) * _LCG_MULTIPLIER + 1)
                                          for k in self.keys.tolist()], dtype=torch.long,
                                         device=self.device)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if self.debug_mode:
            return super().__call__(input_ids, scores)
        self._check_input_ids_shape(input_ids)
        batch_size = scores.shape[0]
        if self.state is None:
            self._init_state(batch_size)
        else:
            self.state.context = torch.concat((self.state.context, input_ids[:, -1:]), dim=1)
            self.state.context = self.state.context[:, 1:]
        self.state.num_calls += 1
        if self.skip_first_ngram_calls and self.state.num_calls < self.ngram_len:
            return scores
        ones = torch.ones(batch_size, device=self.device, dtype=torch.long)
        context_hash = self.accumulate_hash(ones, self.state.context)
        live = torch.isfinite(scores)
        cols = live.any(dim=0).nonzero().squeeze(1)
        sub = scores[:, cols]
        h = (context_hash[:, None] + cols[None, :]) * _LCG_MULTIPLIER + 1
        h = h[:, :, None] * _LCG_MULTIPLIER + self._key_offsets[None, None, :]
        table = self.sampling_table
        g = table[h % table.shape[0]].to(sub.dtype)  # (batch, candidates, depth)
        probs = torch.softmax(sub, dim=1)
        for i in range(g.shape[2]):
            g_i = g[:, :, i]
            probs = probs * (1 + g_i - (g_i * probs).sum(dim=1, keepdim=True))
        floor = torch.finfo(scores.dtype).min
        log_probs = torch.log(probs)
        log_probs = torch.where(torch.isfinite(log_probs), log_probs, floor)
        updated = torch.full_like(scores, floor)
        updated[:, cols] = log_probs
        context_hash = context_hash[:, None]
        repeated = (self.state.context_history == context_hash).any(dim=1, keepdim=True)
        self.state.context_history = torch.concat((context_hash, self.state.context_history),
                                                  dim=1)[:, :-1]
        return torch.where(repeated, scores, updated)


class SynthIDConfig(SynthIDTextWatermarkingConfig):
    """transformers' ``SynthIDTextWatermarkingConfig`` building a :class:`SynthIDProcessor`."""

    def construct_processor(self, vocab_size: int, device: Any) -> SynthIDProcessor:
        return SynthIDProcessor(ngram_len=self.ngram_len, keys=self.keys,
                                sampling_table_size=self.sampling_table_size,
                                sampling_table_seed=self.sampling_table_seed,
                                context_history_size=self.context_history_size, device=device,
                                skip_first_ngram_calls=self.skip_first_ngram_calls,
                                debug_mode=self.debug_mode)


SynthIDConfig.__name__ = SynthIDConfig.__qualname__ = "SynthIDTextWatermarkingConfig"
