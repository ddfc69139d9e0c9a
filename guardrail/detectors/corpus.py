"""Labelled evaluation corpora built offline, for training and evaluating detectors.

Text (``text_corpus``) follows the Fast-DetectGPT evaluation protocol (Bao et al., ICLR
2024, section 4): each human-written passage is cut to a fixed number of tokens; its first
``prefix_tokens`` tokens prompt the text generator, which writes a continuation of exactly
the remaining length. The synthetic sample is prefix + continuation, so both classes have
the same length and the same opening, and differ only in who wrote the rest.

Human text comes from :func:`guardrail.corpora.human_texts` (Python's documentation,
Debian's fortunes and man pages). Generations are raw continuations (no chat template, no
watermark), with the generator's configured sampling parameters.

The folders are written atomically (a temporary folder renamed into place), with a
``corpus.json`` describing the sources, the model and the parameters.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["text_corpus"]


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
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{str(out)!r} exists and is not empty")
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
        synthetic += [p + ("" if p.endswith((" ", "\n")) or g.content.startswith(" ")
                           else " ") + g.content for p, g in zip(batch, gens, strict=True)]
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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".corpus-", dir=out.parent))
    try:
        for label, texts in (("real", human), ("synthetic", synthetic)):
            (tmp / label).mkdir()
            for i, t in enumerate(texts):
                (tmp / label / f"{i:05d}.txt").write_text(t + "\n", encoding="utf-8")
        (tmp / "corpus.json").write_text(json.dumps(desc, indent=2, default=str),
                                         encoding="utf-8")
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {**desc, "path": str(out)}
