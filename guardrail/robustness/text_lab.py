"""Robustness of text watermarks: generate marked and unmarked text with the same model in
the same run, attack the marked text, detect at the configured false-positive rate (the lab
skeleton of :mod:`guardrail.robustness.harness`).

Measured:

* TPR at the configured FPR and at FPR 1e-4 (a p-value of at most 1e-4; the test is
  exact, so this is its false-positive rate), with Clopper-Pearson intervals, clean and
  after each attack (word deletion, synonym substitution, insertion, truncation,
  homoglyphs, Unicode / white-space normalisation, paraphrase by the local model);
* TPR by output length (the first 16 ... 128 tokens of each marked generation): how often
  the guard's self-check can confirm the mark of a text that long;
* the false-positive rate on unmarked text: human-written text that ships offline and the
  same model's unmarked generations; the human texts also under ``UNMARKED_KEYS`` (a
  key's green lists or g-values are fixed, and frequent contexts recur from text to text,
  so one key's rate on natural text can sit above or below the test's; pooled over keys
  the configured rate must hold);
* quality: perplexity of marked vs unmarked generations under the generating model;
* cost: tokens per second with and without the watermark (same model, same run).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._types import Artifact, GenerationMetadata, Modality
from ..stats import clopper_pearson
from .base import Attack
from .harness import Detection, Marked, rate, run_trials

__all__ = ["TOPICS", "UNMARKED_KEYS", "perplexity", "run_text_lab"]

#: Further keys the human texts are checked under (public: they mark nothing).
UNMARKED_KEYS = tuple(f"guardrail-text-unmarked-check-{i}".encode() for i in range(3))

TOPICS = (
    "a lighthouse keeper", "how bread is made", "the history of maps", "a rainy city at night",
    "why bees matter", "learning to play the violin", "a trip to the mountains",
    "how vaccines work", "the first day at a new school", "an old clock repairer",
    "the life of a river", "building a wooden boat", "a market in the morning",
    "how rain forms", "a robot that learns to paint", "the rules of chess",
    "a letter to a future self", "the moon landing", "a family recipe", "how trains changed towns",
    "a lost cat finding its way home", "the ocean at dawn", "why people keep diaries",
    "the invention of paper", "a night shift at a hospital", "how to plant a garden",
    "a village festival", "the sound of thunder", "a friendship between two neighbours",
    "the water cycle", "an astronaut's morning", "a library after closing time",
    "how glass is made", "a snowstorm in the desert", "the migration of birds",
    "a chef's first restaurant", "the meaning of home", "a bridge engineer's problem",
    "how the heart pumps blood", "a jazz musician's evening", "a fisherman and a storm",
    "the secrets of an old house", "how volcanoes erupt", "a child's first bicycle",
    "the art of letter writing", "a museum guard's favourite painting", "how honey is made",
    "a city without cars", "the history of tea", "a teacher's last lesson",
    "a mountain rescue", "how clocks keep time", "the life of a tree", "a walk through a forest",
    "a street musician", "how the internet works", "a message in a bottle",
    "a desert caravan", "the first snowfall", "a baker's dawn",
)


def _artifact(text: str) -> Artifact:
    return Artifact(modality=Modality.TEXT, content=text,
                    metadata=GenerationMetadata(model_id="robustness-lab"))


LENGTHS = (16, 24, 32, 48, 64, 96, 128)

#: The stricter operating point reported next to the configured one.
STRICT_FPR = 1e-4


def _strict(detections: Sequence[Detection]) -> dict[str, Any]:
    """TPR at :data:`STRICT_FPR` (p-value at most it) with a 95% Clopper-Pearson interval."""
    done = [d for d in detections if d.detected is not None and d.p_value is not None]
    if not done:
        return {"tpr_1e-4": None, "tpr_1e-4_ci": None}
    return _share(sum(d.p_value <= STRICT_FPR for d in done), len(done))


def _share(hits: int, n: int) -> dict[str, Any]:
    """``hits`` of ``n`` as the columns of :func:`_strict`."""
    if not n:
        return {"tpr_1e-4": None, "tpr_1e-4_ci": None}
    lo, hi = clopper_pearson(hits, n)
    return {"tpr_1e-4": hits / n, "tpr_1e-4_ci": f"[{lo:.3f}, {hi:.3f}]"}


def _row(r: dict[str, Any]) -> dict[str, Any]:
    """The columns of a rate in the lab's rows."""
    return {"n": r["n"], "performed": r["performed"], "positive_rate": r["rate"],
            "median_p": r["median_p"], "not_performed": r["not_performed"]}


def _interval(r: dict[str, Any]) -> dict[str, float | None]:
    """A rate's 95% Clopper-Pearson interval, to three decimals."""
    if not r["performed"]:
        return {"ci_low": None, "ci_high": None}
    return {"ci_low": round(r["ci_low"], 3), "ci_high": round(r["ci_high"], 3)}


def perplexity(generator: Any, texts: Sequence[str]) -> float:
    """Mean per-token perplexity of ``texts`` under ``generator.model``."""
    import torch

    model, tok = generator.model, generator.tokenizer
    losses = []
    for text in texts:
        ids = tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        if ids.shape[1] < 2:
            continue
        with torch.inference_mode():
            out = model(ids.to(model.device), labels=ids.to(model.device))
        losses.append(float(out.loss))
    return float(math.exp(np.mean(losses))) if losses else float("nan")


def run_text_lab(
    generator: Any,
    watermarker: Any,
    *,
    attacks: Sequence[Attack],
    n_texts: int = 40,
    new_tokens: int = 200,
    n_human: int = 1000,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool = True,
    n_spoof: int = 16,
    unmarked_keys: Sequence[bytes] | None = None,
) -> dict[str, Any]:
    """Run the lab; returns ``{"rows": [...], "summary": {...}}`` (plain JSON).

    ``n_spoof`` texts per (outputs held, boost) of the keyless copy attack
    (:mod:`guardrail.robustness.text_keyless`; 0: not run), generated on prompts of their
    own, the first 1 and 10 marked texts stolen from. ``unmarked_keys``: further keys the
    human texts are checked under (default :data:`UNMARKED_KEYS` when the watermarker has
    ``with_key``; summary ``fpr_human_keys``, pooled with the lab's own key)."""
    from tqdm.auto import tqdm

    from .._generator import GenerationHooks
    from ..corpora import human_texts

    prompts = [f"Write a few paragraphs about {TOPICS[i % len(TOPICS)]}." for i in range(n_texts)]
    params = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens}
    hooks = GenerationHooks(watermarking_config=watermarker.generation_config())
    marked: list[str] = []
    plain: list[str] = []
    t_marked = t_plain = 0.0
    tok_marked = tok_plain = 0
    batches = range(0, n_texts, batch_size)
    for b in tqdm(batches, desc="generating marked and unmarked text", disable=not progress):
        chunk = prompts[b:b + batch_size]
        t0 = time.perf_counter()
        outs = generator.generate(chunk, seed=seed + b, params=params, hooks=hooks)
        t_marked += time.perf_counter() - t0
        t0 = time.perf_counter()
        outs_plain = generator.generate(chunk, seed=seed + b, params=params)
        t_plain += time.perf_counter() - t0
        marked += [o.content for o in outs]
        plain += [o.content for o in outs_plain]
        tok_marked += sum(int(o.parameters.get("new_tokens", 0)) for o in outs)
        tok_plain += sum(int(o.parameters.get("new_tokens", 0)) for o in outs_plain)

    def detect(text: str, wm: Any = watermarker) -> Detection:
        res = wm.detect_text(text)
        return Detection(detected=res.detected, p_value=res.p_value)

    def rate_of(texts: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
        found = [detect(t) for t in texts]
        return rate(found), _strict(found)

    # the marked texts come marked from generation: "marking" only wraps them
    trials = run_trials(tqdm(marked, desc="attacks", disable=not progress),
                        mark=lambda t: Marked(_artifact(t)), attacks=attacks,
                        detect=lambda _m, artifact: detect(str(artifact.content)))
    rows: list[dict[str, Any]] = []
    clean = trials.rate("none")
    rows.append({"attack": "none", "strength": None, **_row(clean), "tpr": clean["rate"],
                 **_interval(clean), **_strict(trials.detections["none"])})
    # shorter outputs: the first L tokens of a marked generation are what a generation of L
    # tokens would have been, so this is the self-check's pass rate by output length
    tok = generator.tokenizer
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in marked]
    for length in (n for n in LENGTHS if n < new_tokens):
        r, strict = rate_of([tok.decode(x[:length]) for x in ids])
        rows.append({"attack": "first_tokens", "strength": length, **_row(r),
                     "tpr": r["rate"], **_interval(r), **strict})
    for att in attacks:
        if att.label in trials.errors:
            rows.append({"attack": att.name, "strength": att.strength, "n": len(marked),
                         "tpr": None, "error": trials.errors[att.label]})
            continue
        r = trials.rate(att.label)
        rows.append({"attack": att.name, "strength": att.strength, **_row(r), "tpr": r["rate"],
                     **_interval(r), **_strict(trials.detections[att.label])})
    copies: dict[str, Any] = {}
    if n_spoof:
        from .text_keyless import keyless_text_trials

        spoof_prompts = [f"Tell me about {TOPICS[-1 - i % len(TOPICS)]}." for i in range(n_spoof)]
        copies = keyless_text_trials(generator, watermarker, marked, spoof_prompts,
                                     params=params, seed=seed + 7919,
                                     say=(lambda m: tqdm.write(m)) if progress else None)
        for label, r in copies["copy"].items():
            rows.append({"attack": label, "strength": None, "n": r["n"],
                         "performed": r["n"], "positive_rate": r["rate"],
                         "not_performed": r["not_performed"], "tpr": r["rate"],
                         "ci_low": round(r["ci_low"], 3), "ci_high": round(r["ci_high"], 3),
                         "median_p": None, **_share(r["strict"], r["n"])})
    humans = [t for _, t in human_texts(limit=n_human, max_words=int(new_tokens * 0.75))]
    if unmarked_keys is None:
        unmarked_keys = UNMARKED_KEYS if hasattr(watermarker, "with_key") else ()
    keyed = [watermarker, *(watermarker.with_key(k) for k in unmarked_keys)]
    by_key = [[detect(t, wm) for t in tqdm(humans, desc=f"human texts, key {i + 1} of "
                                           f"{len(keyed)}", disable=not progress)]
              for i, wm in enumerate(keyed)]
    fpr_human = rate(by_key[0])
    fpr_plain, _ = rate_of(plain)
    summary = {
        "scheme": watermarker.scheme,
        "config": watermarker.describe(),
        "fpr_target": watermarker.fpr,
        "n_texts": n_texts,
        "new_tokens": new_tokens,
        "tpr_clean": clean["rate"],
        "tpr_by_length": {r["strength"]: r["tpr"] for r in rows
                          if r["attack"] == "first_tokens"},
        "fpr_human": fpr_human["rate"],
        "n_human": fpr_human["performed"],
        "fpr_human_keys": _over_keys(by_key, watermarker.fpr),
        "fpr_unmarked_generations": fpr_plain["rate"],
        "n_unmarked_generations": fpr_plain["performed"],
        "perplexity_marked": perplexity(generator, marked),
        "perplexity_unmarked": perplexity(generator, plain),
        "tokens_per_s_marked": tok_marked / t_marked if t_marked else None,
        "tokens_per_s_unmarked": tok_plain / t_plain if t_plain else None,
    }
    if copies.get("copy"):
        summary["copy_context_tokens"] = copies["context"]
        summary["copy_rate_max"] = max(r["rate"] or 0.0 for r in copies["copy"].values())
        summary["copy<=1/100"] = summary["copy_rate_max"] <= 0.01
    summary["fpr_human_keys<=fpr"] = summary["fpr_human_keys"]["rate"] <= watermarker.fpr
    if summary["tokens_per_s_marked"] and summary["tokens_per_s_unmarked"]:
        summary["speed_ratio"] = summary["tokens_per_s_marked"] / summary["tokens_per_s_unmarked"]
    return {"rows": rows, "summary": summary}


def _over_keys(by_key: Sequence[Sequence[Detection]], fpr: float) -> dict[str, Any]:
    """False positives of the same texts under each key, pooled: ``n_keys``, ``n``,
    ``false_positives``, ``rate`` with its 95 % interval (``ci``), the pooled share at
    p <= 0.01 (a check of the test's calibration with more events than ``fpr`` gives), and
    per key ``n``, ``false_positives`` and ``p<=0.01``."""
    def low_p(ds: Sequence[Detection]) -> int:
        return sum(d.detected is not None and d.p_value is not None and d.p_value <= 0.01
                   for d in ds)

    per = [{"n": (r := rate(ds))["performed"], "false_positives": r["positives"],
            "p<=0.01": low_p(ds)} for ds in by_key]
    pooled = rate([d for ds in by_key for d in ds])
    n = pooled["performed"]
    return {"n_keys": len(per), "n": n, "false_positives": pooled["positives"], "fpr": fpr,
            "rate": pooled["rate"] or 0.0,
            "ci": [pooled["ci_low"], pooled["ci_high"]] if n else [0.0, 1.0],
            "share_p<=0.01": sum(k["p<=0.01"] for k in per) / n if n else None,
            "by_key": per}
