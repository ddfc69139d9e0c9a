"""Keyless copy attack on the text watermark - watermark stealing (part of the text lab).

The attacker holds marked outputs of one key, runs the same open model (the embedded one
ships with guardrail), has no key, and knows the scheme: a KGW green list (or a SynthID
g-value table) is seeded by the previous ``context`` tokens only. After Jovanovic et al.,
"Watermark Stealing in Large Language Models" (ICML 2024), reduced to what a few outputs
give:

* **estimate** (:func:`steal`): every (previous ``context`` tokens, token) pair that occurs in
  a marked output is taken to be favoured for that context - with the default bias (4) and
  green share (0.25) most sampled tokens are green, so most such pairs are;
* **copy** (:func:`spoof`): the attacker's own, unwatermarked generations on other prompts,
  with ``boost`` added to the logit of every token the estimate favours after the current
  context (a logits processor, no key). The rate is the share of those texts the detector
  calls marked (an image copy's target is at most 1 in 100).

The table is made for the scheme's own context and, when that is wider than one token,
also for one token (rows ``copy(n=..., boost=..., context=1)``): a seed built from several
tokens may still be decided by one of them - KGW's ``selfhash`` seed is the smallest keyed
hash in its window - and one-token pairs are learnt from far fewer outputs than
four-token contexts, so the narrow table is the informed attacker's choice there (as the
wide-band estimate is against a content-bound image mark).

A text's record is found through its normalised text (the text mark carries no id), so a
spoofed text never matches a record: ``guardrail verify`` reports a mark without a matching
record (R9), not "AI-generated". Removal needs no estimate for text: the lab's paraphrase
attack by the local model already removes the mark (docs/ROBUSTNESS.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import product
from typing import Any

from ..stats import clopper_pearson

__all__ = ["BOOSTS", "ESTIMATES", "StolenBoost", "keyless_text_trials", "spoof", "steal"]

#: Numbers of marked outputs the attacker holds, and the logit boosts of the spoof.
ESTIMATES = (1, 10)
BOOSTS = (4.0, 8.0)


def steal(texts: Sequence[str], tokenizer: Any, context: int) -> dict[tuple[int, ...], set[int]]:
    """The favoured tokens per context of ``context`` token ids, from marked ``texts``."""
    if context < 1:
        raise ValueError(f"context must be at least 1 token, got {context}")
    table: dict[tuple[int, ...], set[int]] = {}
    for text in texts:
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        for i in range(context, len(ids)):
            table.setdefault(tuple(ids[i - context:i]), set()).add(int(ids[i]))
    return table


class StolenBoost:
    """A transformers logits processor that adds ``boost`` to the tokens a stolen table
    favours after the last ``context`` tokens of each sequence."""

    def __init__(self, table: dict[tuple[int, ...], set[int]], context: int, boost: float):
        self.table, self.context, self.boost = table, int(context), float(boost)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        if input_ids.shape[1] < self.context:
            return scores
        for i in range(input_ids.shape[0]):
            favoured = self.table.get(tuple(int(t) for t in input_ids[i, -self.context:]))
            if favoured:
                scores[i, sorted(favoured)] += self.boost
        return scores


def spoof(generator: Any, table: dict[tuple[int, ...], set[int]], context: int, boost: float,
          prompts: Sequence[str], *, params: dict[str, Any], seed: int = 0,
          batch_size: int = 8) -> list[str]:
    """The attacker's generations on ``prompts``: unwatermarked, the stolen table boosted."""
    from .._generator import GenerationHooks

    hooks = GenerationHooks(logits_processors=[StolenBoost(table, context, boost)])
    out: list[str] = []
    for b in range(0, len(prompts), batch_size):
        out += [o.content for o in generator.generate(list(prompts[b:b + batch_size]),
                                                       seed=seed + b, params=params,
                                                       hooks=hooks)]
    return out


def _context(watermarker: Any) -> int:
    """Tokens of context that seed the scheme's pseudo-random choice."""
    desc = watermarker.describe()
    return max(1, int(desc.get("context_width") or 1))


def keyless_text_trials(generator: Any, watermarker: Any, marked: Sequence[str],
                        prompts: Sequence[str], *, params: dict[str, Any],
                        estimates: Sequence[int] = ESTIMATES,
                        boosts: Sequence[float] = BOOSTS, seed: int = 0,
                        say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Spoof ``len(prompts)`` texts per (outputs held, boost) and detect them.

    Returns ``{"copy": {label: rate}, "context": h, "contexts": [...]}``; labels such as
    ``copy(n=10, boost=4)`` (the scheme's context ``h``) and, when ``h > 1``,
    ``copy(n=10, boost=4, context=1)``; each rate has ``n`` (texts the detector could test),
    ``positives``, ``rate``, ``ci_low``, ``ci_high``, ``not_performed`` and ``strict``
    (positives at p <= 1e-4).
    """
    note = say or (lambda _m: None)
    h = _context(watermarker)
    contexts = (h,) if h == 1 else (h, 1)
    out: dict[str, Any] = {"copy": {}, "context": h, "contexts": list(contexts)}
    for ctx, n in product(contexts, estimates):
        if n > len(marked):
            note(f"{watermarker.scheme}: stealing from {n} outputs not run: {len(marked)} "
                 "marked outputs held")
            continue
        table = steal(marked[:n], generator.tokenizer, ctx)
        for boost in boosts:
            texts = spoof(generator, table, ctx, boost, prompts, params=params, seed=seed)
            results = [watermarker.detect_text(t) for t in texts]
            done = [r for r in results if r.detected is not None]
            hits = sum(bool(r.detected) for r in done)
            lo, hi = clopper_pearson(hits, len(done))
            label = f"copy(n={n}, boost={boost:g}" + (")" if ctx == h else f", context={ctx})")
            out["copy"][label] = {
                "n": len(done), "positives": hits, "rate": hits / len(done) if done else None,
                "ci_low": lo, "ci_high": hi, "not_performed": len(results) - len(done),
                "strict": sum(r.p_value is not None and r.p_value <= 1e-4 for r in done),
                "contexts_stolen": len(table)}
            note(f"{watermarker.scheme}: {label}: {hits}/{len(done)} spoofed texts detected")
    return out
