"""Labelled evaluation corpora built offline, for training and evaluating detectors.

Text (``text_corpus``) follows the Fast-DetectGPT evaluation protocol (Bao et al., ICLR
2024, section 4): each human-written passage is cut to a fixed number of tokens; its first
``prefix_tokens`` tokens prompt the text generator, which writes a continuation of exactly
the remaining length. The synthetic sample is prefix + continuation, so both classes have
the same length and the same opening, and differ only in who wrote the rest.

Human text comes from :func:`guardrail.corpora.human_texts` (Python's documentation,
Debian's fortunes and man pages). Generations are raw continuations (no chat template, no
watermark), with the generator's configured sampling parameters.

:func:`guard_corpus` is what a calibration of the guard's own detector is made from: the
synthetic half is what the guard actually releases (the generator's defaults), in four
equal parts - chat answers to prompts and continuations of human openings, each without
and with the KGW watermark - and the human half is passages cut to lengths drawn between
``min_tokens`` and ``max_tokens``. Two corpora made with ``skip`` set past each other
share no human passage, no opening and no prompt (a calibration set and a held-out
evaluation set).

The folders are written atomically (a temporary folder renamed into place), with a
``corpus.json`` describing the sources, the model and the parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["GUARD_PARTS", "guard_corpus", "guard_prompts", "text_corpus"]

#: The four parts of a :func:`guard_corpus`'s synthetic half (file name prefixes).
GUARD_PARTS = ("chat", "chat-kgw", "continuation", "continuation-kgw")

_TOPICS = (
    "a lighthouse", "baking bread", "old maps", "rainy cities", "bees", "the violin",
    "mountain hiking", "vaccines", "starting school", "clock repair", "rivers", "wooden boats",
    "morning markets", "rain", "robots that paint", "chess", "writing letters", "the moon",
    "family recipes", "railways", "lost cats", "the ocean", "keeping a diary", "paper",
    "night shifts", "gardening", "village festivals", "thunderstorms", "neighbours",
    "the water cycle", "astronauts", "libraries", "glass making", "deserts", "bird migration",
    "opening a restaurant", "moving house", "bridges", "the human heart", "jazz", "fishing",
    "old houses", "volcanoes", "learning to cycle", "museums", "honey", "cities without cars",
    "tea", "teachers", "mountain rescue", "clocks", "trees", "forests", "street music",
    "the internet", "saving money", "sleep", "running a marathon", "photography", "recycling")
_TEMPLATES = (
    "Write a short paragraph about {}.", "Explain {} in simple terms.",
    "What should I know about {}?", "Describe {} to a friend.",
    "Give me three tips about {}.", "Tell me a short story about {}.",
    "Why do people care about {}?", "Write a few sentences about the history of {}.")


def guard_prompts() -> list[str]:
    """The 480 prompts of :func:`guard_corpus`, in a fixed order (every template and topic
    mixed early)."""
    import random

    prompts = [t.format(topic) for t in _TEMPLATES for topic in _TOPICS]
    random.Random(0).shuffle(prompts)
    return prompts


def _token_chunks(tokenizer: Any, texts: list[tuple[str, str]], length: int
                  ) -> list[tuple[str, list[int]]]:
    out = []
    for src, text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= length:
            out.append((src, ids[:length]))
    return out


def text_corpus(generator: Any, out_dir: str | os.PathLike[str], *, samples: int = 250,
                length_tokens: int = 128, prefix_tokens: int = 30, batch_size: int = 16,
                skip: int = 0, seed: int = 0, progress: bool = True,
                sources: tuple[str, ...] = ("pydoc", "fortunes", "man")) -> dict[str, Any]:
    """Write ``out_dir/real/*.txt`` (human) and ``out_dir/synthetic/*.txt`` (generated)
    of equal token length; returns the corpus description (also ``corpus.json``).

    ``skip`` passes over the first passages, so that two corpora (one to calibrate on,
    one to evaluate on) share no human text.

    Raises
    ------
    InputError
        ``out_dir`` exists and is not empty, or too few human passages are long enough.
    """
    from tqdm.auto import tqdm

    from ..corpora import human_texts

    if prefix_tokens >= length_tokens:
        raise InputError("prefix_tokens must be smaller than length_tokens")
    out = _empty_folder(out_dir)
    tok = generator.tokenizer
    # passages of >= length_tokens tokens; ask for more words than needed, then cut tokens
    pool = human_texts(min_words=length_tokens, max_words=4 * length_tokens,
                       limit=(skip + samples) * 3, sources=sources)
    chunks = _token_chunks(tok, pool, length_tokens)[skip:skip + samples]
    if len(chunks) < samples:
        raise InputError(f"only {len(chunks)} human passages of {length_tokens} tokens are "
                         f"available offline (asked for {samples}); install Debian's fortunes "
                         "and man pages, or ask for fewer samples")
    human = [tok.decode(ids, skip_special_tokens=True).strip() for _, ids in chunks]
    prefixes = [tok.decode(ids[:prefix_tokens], skip_special_tokens=True) for _, ids in chunks]
    new = length_tokens - prefix_tokens
    params = {"use_chat_template": False, "max_new_tokens": new, "min_new_tokens": new}
    synthetic: list[str] = []
    bar = tqdm(total=len(prefixes), desc="generating", unit="text", disable=not progress)
    for start in range(0, len(prefixes), batch_size):
        batch = prefixes[start:start + batch_size]
        gens = generator.generate(batch, seed=seed + start, params=params)
        synthetic += [_join(p, g.content) for p, g in zip(batch, gens, strict=True)]
        bar.update(len(batch))
    bar.close()
    info = getattr(generator, "info", None)
    desc = {"protocol": "Fast-DetectGPT (Bao et al. 2024): human passage cut to "
                        f"{length_tokens} tokens; its first {prefix_tokens} tokens prompt the "
                        "model, which continues for the remaining tokens",
            "samples": samples, "skip": skip, "length_tokens": length_tokens, "prefix_tokens": prefix_tokens,
            "human_sources": dict(Counter(src for src, _ in chunks)),
            "model": getattr(info, "model_id", None), "revision": getattr(info, "revision", None),
            "generation_params": {**getattr(generator, "defaults", {}), **params},
            "seed": seed}
    _write(out, {label: {f"{i:05d}.txt": t for i, t in enumerate(texts)}
                 for label, texts in (("real", human), ("synthetic", synthetic))}, desc)
    return {**desc, "path": str(out)}


def guard_corpus(generator: Any, out_dir: str | os.PathLike[str], *, samples: int = 400,
                 min_tokens: int = 32, max_tokens: int = 160, prefix_tokens: int = 30,
                 skip: int = 0, seed: int = 0, watermark: dict[str, Any] | None = None,
                 human_samples: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Write ``human_samples`` human texts to ``out_dir/real`` and ``samples`` texts the
    guard would release to ``out_dir/synthetic`` (the four :data:`GUARD_PARTS`, a quarter
    each); returns the corpus description (also ``corpus.json``).

    Parameters
    ----------
    generator
        The guard's text generator; its default generation parameters are used.
    samples : int
        Synthetic texts (a multiple of 4).
    human_samples : int, optional
        Human texts (default ``samples``): human text costs no generation, so a corpus
        for measuring false-positive rates can hold more of it.
    min_tokens, max_tokens : int
        Each human passage is cut to a length drawn uniformly from this range (seeded).
    prefix_tokens : int
        Tokens of a human opening that a continuation starts from.
    skip : int
        Human passages (and ``skip // 2`` prompts) passed over, so that corpora made with
        ``skip`` past each other's ``max(samples, human_samples)`` share no text or prompt.
    watermark : dict, optional
        KGW parameters (``greenlist_ratio``, ``bias``, ``seeding_scheme``,
        ``context_width``); the key is derived from ``seed`` (any key gives the same
        statistics). Default: guardrail's defaults.
    """
    import numpy as np
    from tqdm.auto import tqdm
    from transformers import WatermarkingConfig

    from .._generator import GenerationHooks
    from ..corpora import human_texts

    if samples <= 0 or samples % 4:
        raise InputError(f"samples must be a positive multiple of 4, got {samples}")
    n_human = samples if human_samples is None else int(human_samples)
    span = max(samples, n_human)
    if not 0 < prefix_tokens < min_tokens <= max_tokens:
        raise InputError("need 0 < prefix_tokens < min_tokens <= max_tokens")
    out = _empty_folder(out_dir)
    tok = generator.tokenizer
    pool = human_texts(min_words=max_tokens, max_words=4 * max_tokens,
                       limit=(skip + span) * 3)
    chunks = _token_chunks(tok, pool, max_tokens)[skip:skip + span]
    if len(chunks) < span:
        raise InputError(f"only {len(chunks)} human passages of {max_tokens} tokens are "
                         f"available offline after skipping {skip} (asked for {span})")
    rng = np.random.default_rng([seed, skip])
    lengths = rng.integers(min_tokens, max_tokens + 1, size=n_human)
    human = [tok.decode(ids[:n], skip_special_tokens=True).strip()
             for (_, ids), n in zip(chunks, lengths, strict=False)]
    quarter = samples // 4
    prompts = guard_prompts()
    first = skip // 2
    if first + 2 * quarter > len(prompts):
        raise InputError(f"only {len(prompts)} prompts; skip + samples may be at most "
                         f"{2 * len(prompts)}")
    chat_prompts = prompts[first:first + 2 * quarter]
    # continuations start from the openings of this corpus's own passages (paired, as in
    # the Fast-DetectGPT protocol), so no opening comes from another corpus
    openings = [tok.decode(ids[:prefix_tokens], skip_special_tokens=True)
                for _, ids in chunks[::-1][:2 * quarter]]
    kgw = {"greenlist_ratio": 0.25, "bias": 4.0, "seeding_scheme": "lefthash",
           "context_width": 1, **(watermark or {})}
    digest = hashlib.sha256(f"guard-corpus:{seed}".encode()).digest()
    marked = GenerationHooks(watermarking_config=WatermarkingConfig(
        hashing_key=int.from_bytes(digest[:6], "big") | 1, **kgw))
    parts: dict[str, list[str]] = {}
    bar = tqdm(total=4 * quarter, desc="generating", unit="text", disable=not progress)
    for k, part in enumerate(GUARD_PARTS):
        hooks = marked if part.endswith("-kgw") else None
        half = slice(0, quarter) if k % 2 == 0 else slice(quarter, 2 * quarter)
        if part.startswith("chat"):
            gens = generator.generate(chat_prompts[half], seed=seed + 1000 * k, hooks=hooks,
                                      params={"use_chat_template": True})
            parts[part] = [g.content for g in gens]
        else:
            batch = openings[half]
            gens = generator.generate(batch, seed=seed + 1000 * k, hooks=hooks,
                                      params={"use_chat_template": False})
            parts[part] = [_join(p, g.content) for p, g in zip(batch, gens, strict=True)]
        bar.update(quarter)
    bar.close()
    info = getattr(generator, "info", None)
    desc = {"protocol": "guard outputs: a quarter each of chat answers and of continuations "
                        f"of {prefix_tokens}-token human openings, without and with KGW, "
                        "with the generator's default parameters; human passages cut to "
                        f"{min_tokens}-{max_tokens} tokens (uniform, seeded)",
            "kind": "guard", "samples": samples, "human_samples": n_human, "skip": skip,
            "seed": seed,
            "min_tokens": min_tokens, "max_tokens": max_tokens, "prefix_tokens": prefix_tokens,
            "prompts": [first, first + 2 * quarter], "parts": list(GUARD_PARTS),
            "human_sources": dict(Counter(src for src, _ in chunks[:n_human])),
            "model": getattr(info, "model_id", None), "revision": getattr(info, "revision", None),
            "dtype": getattr(info, "dtype", None),
            "generation_params": dict(getattr(generator, "defaults", {})),
            "watermark": {"scheme": "kgw", **kgw, "key": f"derived from seed {seed}"}}
    texts = {"real": {f"{i:05d}.txt": t for i, t in enumerate(human)},
             "synthetic": {f"{part}-{i:05d}.txt": t for part, ts in parts.items()
                           for i, t in enumerate(ts)}}
    _write(out, texts, desc)
    return {**desc, "path": str(out)}


def _empty_folder(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir`` as a path; refused when it exists and is not empty."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{str(out)!r} exists and is not empty")
    return out


def _join(prefix: str, continuation: str) -> str:
    sep = "" if prefix.endswith((" ", "\n")) or continuation.startswith(" ") else " "
    return prefix + sep + continuation


def _write(out: Path, texts: dict[str, dict[str, str]], desc: dict[str, Any]) -> None:
    """Write the folders and ``corpus.json`` atomically (a temporary folder renamed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".corpus-", dir=out.parent))
    try:
        for label, files in texts.items():
            (tmp / label).mkdir()
            for name, t in files.items():
                (tmp / label / name).write_text(t + "\n", encoding="utf-8")
        (tmp / "corpus.json").write_text(json.dumps(desc, indent=2, default=str),
                                         encoding="utf-8")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
