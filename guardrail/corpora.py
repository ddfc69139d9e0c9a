"""Human-written text and natural media that ship offline, for evaluations.

Used to measure false-positive rates (of watermark detection and of detectors) on content
nobody here generated:

* text: Python's own documentation topics (``pydoc_data.topics``, always present), Debian's
  ``fortunes`` (``/usr/share/games/fortunes``) and man pages (``/usr/share/man``), when
  installed;
* images: scikit-image's and scikit-learn's sample photographs, plus any folder given.

Every source is optional except pydoc's; what was found is reported by the caller.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["fortunes", "human_texts", "man_pages", "natural_images", "pydoc_topics"]

FORTUNES_DIR = Path("/usr/share/games/fortunes")
MAN_DIR = Path("/usr/share/man")


def _clean(text: str) -> str:
    return " ".join(text.split())


def pydoc_topics(min_words: int = 40) -> Iterator[tuple[str, str]]:
    """Paragraph groups of Python's reference documentation: ``(source, text)``."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        paras = [p for p in re.split(r"\n\s*\n", topics[name]) if p.strip()]
        chunk: list[str] = []
        for para in paras:
            if para.startswith((" ", "\t")) or ">>>" in para:
                continue  # code blocks are not prose
            chunk.append(_clean(para))
            if sum(len(c.split()) for c in chunk) >= min_words:
                yield f"pydoc:{name}", " ".join(chunk)
                chunk = []


def fortunes(min_words: int = 40, root: Path = FORTUNES_DIR) -> Iterator[tuple[str, str]]:
    """Fortune cookies, joined until each item has ``min_words`` words.

    Only the files in ``root`` itself: the language packages (fortunes-de, -it, ...) put
    theirs in subfolders and link some into ``root``; links are skipped so the default
    corpus stays English whatever else is installed. Pass ``root / "de"`` for German.
    """
    if not root.is_dir():
        return
    for file in sorted(p for p in root.iterdir()
                       if p.is_file() and not p.is_symlink() and not p.suffix)[:64]:
        try:
            entries = file.read_text(encoding="utf-8", errors="replace").split("\n%\n")
        except OSError:
            continue
        chunk: list[str] = []
        for entry in entries:
            text = _clean(entry.strip("%\n "))
            if text:
                chunk.append(text)
            if sum(len(c.split()) for c in chunk) >= min_words:
                yield f"fortune:{file.name}", " ".join(chunk)
                chunk = []


_TROFF = re.compile(r"\\f[BIRP]|\\\(..|\\[-e&|^]|\\s[-+]?\d|\\\*.|\\.")


def man_pages(min_words: int = 40, root: Path = MAN_DIR, limit: int = 400) -> Iterator[tuple[str, str]]:
    """Prose paragraphs of installed man pages (troff markup stripped)."""
    if not root.is_dir():
        return
    files = sorted((root / "man1").glob("*.gz"))[:limit] if (root / "man1").is_dir() else []
    for file in files:
        try:
            raw = gzip.decompress(file.read_bytes()).decode("utf-8", errors="replace")
        except (OSError, EOFError):
            continue
        words: list[str] = []
        for line in raw.splitlines():
            if line.startswith((".", "'")):
                if words and line[:3] in (".PP", ".SH", ".TP", ".P", ".LP", ".IP"):
                    if len(words) >= min_words:
                        yield f"man:{file.name}", " ".join(words)
                    words = []
                continue
            words.extend(_TROFF.sub("", line).split())
        if len(words) >= min_words:
            yield f"man:{file.name}", " ".join(words)


def human_texts(*, min_words: int = 40, max_words: int = 400, limit: int | None = None,
                sources: tuple[str, ...] = ("pydoc", "fortunes", "man")) -> list[tuple[str, str]]:
    """Human-written texts from every available source, interleaved, each truncated to
    ``max_words`` words: a list of ``(source, text)``."""
    makers = {"pydoc": pydoc_topics, "fortunes": fortunes, "man": man_pages}
    iters = [makers[s](min_words) for s in sources]
    out: list[tuple[str, str]] = []
    while iters and (limit is None or len(out) < limit):
        for it in list(iters):
            item = next(it, None)
            if item is None:
                iters.remove(it)
                continue
            src, text = item
            out.append((src, " ".join(text.split()[:max_words])))
            if limit is not None and len(out) >= limit:
                break
    return out


def natural_images(extra_dirs: tuple[Path, ...] = ()) -> list[tuple[str, np.ndarray]]:
    """Natural photographs that ship offline, as RGB ``uint8`` arrays: ``(name, array)``."""
    out: list[tuple[str, np.ndarray]] = []
    try:
        from skimage import data

        for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
                     "motorcycle_left", "hubble_deep_field", "retina", "colorwheel"):
            try:
                img = np.asarray(getattr(data, name)())
            except Exception:  # noqa: BLE001 - some sample files are optional downloads
                continue
            if img.ndim == 3 and img.shape[2] >= 3:
                out.append((f"skimage:{name}", np.ascontiguousarray(img[..., :3]).astype(np.uint8)))
    except ImportError:
        pass
    try:
        from sklearn.datasets import load_sample_images

        for fname, img in zip(load_sample_images().filenames, load_sample_images().images,
                              strict=True):
            out.append((f"sklearn:{Path(fname).name}", np.asarray(img, dtype=np.uint8)))
    except ImportError:
        pass
    for folder in extra_dirs:
        from .errors import UnsupportedMediaError
        from .media import decode

        for file in sorted(Path(folder).glob("*")):
            if file.suffix.lower() not in (".jpg", ".jpeg", ".png", ".webp"):
                continue
            try:
                art = decode(file.read_bytes(), name=file.name)
            except UnsupportedMediaError:
                continue
            if art.content.ndim == 3:
                out.append((f"file:{file.name}", np.ascontiguousarray(art.content[..., :3])))
    return out
