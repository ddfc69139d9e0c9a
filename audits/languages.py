"""Human-written text in several languages that ships offline: Debian's fortune cookies.

Used by the safety-layer fairness audit as the *negatives* (nobody here generated them) for
false-positive rates of text watermark detection and text detectors by language;
:func:`guess_language` checks which of these languages a generated text is in.

=========  ==================  =========================================
language   Debian package      files
=========  ==================  =========================================
``en``     ``fortunes``        ``/usr/share/games/fortunes/<topic>`` (the English topics
                               listed in :data:`ENGLISH_TOPICS`; other packages put Italian
                               files in the same folder)
``de``     ``fortunes-de``     ``/usr/share/games/fortunes/de/*``
``es``     ``fortunes-es``     ``/usr/share/games/fortunes/es/*``
``it``     ``fortunes-it``     ``/usr/share/games/fortunes/it/*``
=========  ==================  =========================================

A fortune is short, so consecutive fortunes of one file are joined until a text has
``min_words`` words; attribution lines (``-- Author``) are kept, as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain, islice, zip_longest
from pathlib import Path

__all__ = ["ENGLISH_TOPICS", "LANGUAGES", "Language", "fortune_texts", "guess_language",
           "missing_languages"]

FORTUNES_DIR = Path("/usr/share/games/fortunes")

#: Topics of Debian's English ``fortunes`` package (offensive ones are not installed).
ENGLISH_TOPICS = (
    "art", "computers", "cookie", "definitions", "disclaimer", "drugs", "education", "ethnic",
    "food", "fortunes", "goedel", "humorists", "kids", "law", "linuxcookie", "literature",
    "love", "magic", "medicine", "men-women", "miscellaneous", "news", "people", "pets",
    "platitudes", "politics", "riddles", "science", "songs-poems", "sports", "startrek",
    "wisdom", "work", "zippy")


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    package: str
    subdir: str | None  # None: the English topics at the top of FORTUNES_DIR


LANGUAGES: dict[str, Language] = {lang.code: lang for lang in (
    Language("en", "English", "fortunes", None),
    Language("de", "German", "fortunes-de", "de"),
    Language("es", "Spanish", "fortunes-es", "es"),
    Language("it", "Italian", "fortunes-it", "it"),
)}


def _files(lang: Language, root: Path) -> list[Path]:
    if lang.subdir is None:
        return [root / t for t in ENGLISH_TOPICS if (root / t).is_file()]
    folder = root / lang.subdir
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix not in (".dat", ".u8") and not p.is_symlink())


def missing_languages(codes: list[str] | tuple[str, ...], *,
                      root: Path = FORTUNES_DIR) -> dict[str, str]:
    """``{code: Debian package}`` for each language whose fortunes are not installed."""
    out = {}
    for code in codes:
        lang = LANGUAGES.get(code)
        if lang is None:
            raise ValueError(f"no human-text corpus for language {code!r}; "
                             f"known: {', '.join(LANGUAGES)}")
        if not _files(lang, root):
            out[code] = lang.package
    return out


def fortune_texts(code: str, *, min_words: int = 40, max_words: int = 200,
                  limit: int | None = None, root: Path = FORTUNES_DIR) -> list[tuple[str, str]]:
    """Texts in language ``code``: ``(source, text)`` with ``source`` ``fortune-<code>:<file>``.

    Files are taken in turn (one text from each, then the next round), so that a small
    ``limit`` still spans several topics. An empty list when the package is not installed.
    """
    if code not in LANGUAGES:
        raise ValueError(f"no human-text corpus for language {code!r}; "
                         f"known: {', '.join(LANGUAGES)}")
    streams = [_chunks(f, min_words, max_words) for f in _files(LANGUAGES[code], root)]
    rounds = chain.from_iterable(zip_longest(*streams))  # one text of each file, then again
    texts = ((f"fortune-{code}:{name}", text) for name, text in
             (item for item in rounds if item is not None))
    return list(islice(texts, limit))


def _chunks(file: Path, min_words: int, max_words: int) -> Iterator[tuple[str, str]]:
    try:
        raw = file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    words: list[str] = []
    for entry in raw.split("\n%\n"):
        words.extend(entry.strip("%\n ").split())
        if len(words) >= min_words:
            yield file.name, " ".join(words[:max_words])
            words = []


_STOPWORDS = {
    "en": "the and of to is in that it was for with as on are be this not have you".split(),
    "de": "der die das und ist nicht ein eine zu den mit sich auf dem ich sie es des".split(),
    "es": "el la de que y en los las un una por con para es se del al lo su".split(),
    "it": "il la di che e non un una per con del della sono gli le si lo ho".split(),
}


def guess_language(text: str) -> str | None:
    """The language (``en``, ``de``, ``es``, ``it``) whose common function words are most
    frequent in ``text`` - a crude check of whether a model answered in the language it was
    asked for; ``None`` for too little evidence."""
    words = re.findall(r"[^\W\d_]+", text.lower())
    counts = {code: sum(w in set(sw) for w in words) for code, sw in _STOPWORDS.items()}
    best = max(counts, key=counts.get)
    ranked = sorted(counts.values(), reverse=True)
    return best if ranked[0] >= 3 and ranked[0] > ranked[1] else None
