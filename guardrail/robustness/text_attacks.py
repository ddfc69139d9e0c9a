"""Text attacks: word deletion, synonym substitution, insertion, truncation, paraphrase,
homoglyphs and Unicode / white-space normalisation.

Each attack is seeded (the strength and the text decide which words change), so a
robustness run is reproducible.

Synonyms come from WordNet 3.0 as shipped by Debian's ``wordnet-base`` package
(``/usr/share/wordnet``; override with ``GUARDRAIL_WORDNET_DIR``): for each word, the other
lemmas of its most frequent sense. Without those files the synonym attack cannot run and
says so. Paraphrase rewrites each sentence with a local language model (any
:class:`guardrail.Generator` for text, e.g. the embedded SmolLM2), never a remote service.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from .._types import Artifact, Modality
from ..errors import DependencyError
from .base import Attack, attack

__all__ = [
    "HOMOGLYPHS",
    "deletion",
    "homoglyph",
    "insertion",
    "normalise",
    "paraphrase",
    "synonym",
    "truncation",
    "wordnet_synonyms",
]

_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
# frequent English function and filler words, for insertion
_FILLERS = ("the", "a", "of", "and", "to", "in", "that", "it", "is", "was", "for", "on", "as",
            "with", "very", "really", "just", "also", "then", "so", "indeed", "quite")


# function words are never replaced: WordNet's senses for them ("in" -> "inch") are nonsense
_STOPWORDS = frozenset("""a about above after again against all am an and any are as at be
because been before being below between both but by can could did do does doing down during
each few for from further had has have having he her here hers herself him himself his how i
if in into is it its itself just me more most my myself no nor not now of off on once only or
other our ours ourselves out over own same she should so some such than that the their theirs
them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself
yourselves one two also may might must shall well much many""".split())


def _rng(text: str, name: str, strength: Any) -> np.random.Generator:
    seed = hashlib.sha256(f"{name}:{strength}:{text}".encode()).digest()[:8]
    return np.random.default_rng(int.from_bytes(seed, "big"))


def _with_text(artifact: Artifact, text: str) -> Artifact:
    return artifact.evolve(content=text, data=None, media_type=None)


def _check_fraction(strength: Any, name: str) -> float:
    value = float(strength)
    if not 0 <= value <= 1:
        raise ValueError(f"{name}: strength must be a fraction in [0, 1], got {strength!r}")
    return value


@attack("word_deletion", Modality.TEXT)
def deletion(artifact: Artifact, strength: float) -> Artifact:
    """Delete a ``strength`` fraction of the words (white-space separated)."""
    frac = _check_fraction(strength, "word_deletion")
    words = str(artifact.content).split()
    n_drop = int(round(frac * len(words)))
    if n_drop == 0:
        return artifact
    drop = set(_rng(artifact.content, "del", frac).choice(len(words), n_drop, replace=False).tolist())
    return _with_text(artifact, " ".join(w for i, w in enumerate(words) if i not in drop))


@attack("word_insertion", Modality.TEXT)
def insertion(artifact: Artifact, strength: float) -> Artifact:
    """Insert common filler words: ``strength`` x (number of words) insertions."""
    frac = _check_fraction(strength, "word_insertion")
    words = str(artifact.content).split()
    rng = _rng(artifact.content, "ins", frac)
    for _ in range(int(round(frac * len(words)))):
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(_FILLERS)))
    return _with_text(artifact, " ".join(words))


@attack("truncation", Modality.TEXT)
def truncation(artifact: Artifact, strength: float) -> Artifact:
    """Keep only the first ``1 - strength`` fraction of the words."""
    frac = _check_fraction(strength, "truncation")
    words = str(artifact.content).split()
    keep = max(0, int(round((1 - frac) * len(words))))
    return _with_text(artifact, " ".join(words[:keep]))


def wordnet_dir() -> Path:
    return Path(os.environ.get("GUARDRAIL_WORDNET_DIR", "/usr/share/wordnet"))


@functools.lru_cache(maxsize=2)
def _wordnet(root: str) -> dict[str, tuple[str, ...]]:
    """word -> synonyms of its most frequent sense, from WordNet's index/data files."""
    base = Path(root)
    synonyms: dict[str, tuple[str, ...]] = {}
    for pos in ("noun", "verb", "adj", "adv"):
        index, data = base / f"index.{pos}", base / f"data.{pos}"
        if not index.is_file() or not data.is_file():
            raise DependencyError(
                "WordNet data files", "robustness",
                purpose=f"the synonym attack (no {index}; on Debian: apt-get install "
                        "wordnet-base, or set GUARDRAIL_WORDNET_DIR)")
        first_sense: dict[str, int] = {}
        with open(index, encoding="latin-1") as fh:
            for line in fh:
                if line.startswith(" "):
                    continue  # licence header
                parts = line.split()
                lemma, n_synsets = parts[0], int(parts[2])
                offsets = parts[-n_synsets:]
                if "_" not in lemma and lemma.isalpha():
                    first_sense[lemma] = int(offsets[0])
        wanted = {}
        for lemma, off in first_sense.items():
            wanted.setdefault(off, []).append(lemma)
        with open(data, "rb") as fh:
            for off, lemmas in wanted.items():
                fh.seek(off)
                parts = fh.readline().decode("latin-1").split()
                count = int(parts[3], 16)
                words = [parts[4 + 2 * i].split("(")[0].lower() for i in range(count)]
                for lemma in lemmas:
                    alts = tuple(w for w in words if w != lemma and "_" not in w and w.isalpha())
                    if alts and lemma not in synonyms:
                        synonyms[lemma] = alts
    return synonyms


def wordnet_synonyms(word: str) -> tuple[str, ...]:
    """Synonyms of ``word`` (most frequent sense), lower case; empty if none are known."""
    return _wordnet(str(wordnet_dir())).get(word.lower(), ())


@attack("synonym", Modality.TEXT)
def synonym(artifact: Artifact, strength: float) -> Artifact:
    """Replace a ``strength`` fraction of the words that have a WordNet synonym."""
    frac = _check_fraction(strength, "synonym")
    text = str(artifact.content)
    table = _wordnet(str(wordnet_dir()))
    matches = [m for m in _WORD.finditer(text)
               if m.group(0).lower() in table and m.group(0).lower() not in _STOPWORDS]
    n = int(round(frac * len(matches)))
    if n == 0:
        return artifact
    rng = _rng(text, "syn", frac)
    chosen = sorted(rng.choice(len(matches), n, replace=False).tolist())
    out, last = [], 0
    for i in chosen:
        m = matches[i]
        alts = table[m.group(0).lower()]
        repl = str(alts[int(rng.integers(0, len(alts)))])
        if m.group(0)[0].isupper():
            repl = repl.capitalize()
        out.append(text[last:m.start()])
        out.append(repl)
        last = m.end()
    out.append(text[last:])
    return _with_text(artifact, "".join(out))


def paraphrase(strength: float, *, generator: Any, seed: int = 0,
               max_new_tokens: int = 80) -> Attack:
    """A paraphrase attack by a local text generator (not watermarked).

    Each sentence is rewritten by the model with the instruction "Paraphrase"; ``strength``
    is the fraction of sentences rewritten (1.0 = all). Registered as ``text.paraphrase``:
    the lab passes its own model as ``generator``.
    """

    def fn(artifact: Artifact, strength: float) -> Artifact:
        frac = _check_fraction(strength, "paraphrase")
        text = str(artifact.content)
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
        n = int(round(frac * len(sentences)))
        if n == 0:
            return artifact
        idx = sorted(_rng(text, "para", frac).choice(len(sentences), n, replace=False).tolist())
        prompts = [f"Paraphrase this sentence. Reply with the paraphrase only.\n\n{sentences[i]}"
                   for i in idx]
        outs = generator.generate(prompts, seed=seed, params={"max_new_tokens": max_new_tokens})
        for i, out in zip(idx, outs, strict=True):
            new = str(out.content).strip().split("\n")[0].strip()
            if new:
                sentences[i] = new
        return _with_text(artifact, " ".join(sentences))

    return Attack(name="paraphrase", strength=strength, modality=Modality.TEXT, fn=fn)


#: ASCII letter -> the Cyrillic (or, where Cyrillic has none, Greek) letter drawn like it.
HOMOGLYPHS: dict[str, str] = {
    "a": "\u0430", "c": "\u0441", "d": "\u0501", "e": "\u0435", "h": "\u04bb", "i": "\u0456",
    "j": "\u0458", "l": "\u04cf", "o": "\u043e", "p": "\u0440", "q": "\u051b", "s": "\u0455",
    "w": "\u051d", "x": "\u0445", "y": "\u0443", "v": "\u03bd",
    "A": "\u0410", "B": "\u0412", "C": "\u0421", "E": "\u0415", "H": "\u041d", "I": "\u0406",
    "J": "\u0408", "K": "\u041a", "M": "\u041c", "N": "\u039d", "O": "\u041e", "P": "\u0420",
    "S": "\u0405", "T": "\u0422", "X": "\u0425", "Y": "\u04ae", "Z": "\u0396",
}


@attack("homoglyph", Modality.TEXT)
def homoglyph(artifact: Artifact, strength: float) -> Artifact:
    """Replace a ``strength`` fraction of the eligible letters (those in :data:`HOMOGLYPHS`)
    by the Cyrillic or Greek letter that looks the same."""
    frac = _check_fraction(strength, "homoglyph")
    text = str(artifact.content)
    eligible = [i for i, ch in enumerate(text) if ch in HOMOGLYPHS]
    n_swap = int(round(frac * len(eligible)))
    if n_swap == 0:
        return artifact
    chars = list(text)
    for j in _rng(text, "homoglyph", frac).choice(len(eligible), n_swap, replace=False):
        i = eligible[int(j)]
        chars[i] = HOMOGLYPHS[chars[i]]
    return _with_text(artifact, "".join(chars))


@attack("normalise", Modality.TEXT)
def normalise(artifact: Artifact, strength: float = 1) -> Artifact:
    """Unicode NFKC, then every run of white space (line breaks included) collapsed to one
    space, as a text pasted through a form or a normalising editor comes out (``strength``
    is ignored; it is there for the attack label)."""
    text = unicodedata.normalize("NFKC", str(artifact.content))
    return _with_text(artifact, " ".join(text.split()))
