"""The safety audit's evaluation set: texts by language and photos in everyday variants.

``text``
    negatives: human-written text in each language (Debian's fortunes,
    :mod:`audits.languages`); positives: continuations of the suite's prompts for each
    language, generated through the text Guard with the watermark on.
``image``
    real photographs that ship offline (:func:`audits.faces.face_photos`, any
    ``photo_dirs``), the face photos in every :data:`IMAGE_VARIANTS` edit, each once as it is
    and once watermarked.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from guardrail.errors import SuiteError

__all__ = ["IMAGE_VARIANTS", "image_items", "photos", "text_items"]


def _jpeg(img: np.ndarray, quality: int = 70) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _resize(img: np.ndarray, scale: float) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    return np.asarray(Image.fromarray(img).resize((max(1, int(w * scale)), max(1, int(h * scale))),
                                                  Image.Resampling.LANCZOS))


def _crop(img: np.ndarray, frac: float = 0.8) -> np.ndarray:
    h, w = img.shape[:2]
    dh, dw = int(h * (1 - frac) / 2), int(w * (1 - frac) / 2)
    return img[dh:h - dh, dw:w - dw]


#: everyday edits of a photo (each result is still a real photo)
IMAGE_VARIANTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "original": lambda x: x,
    "mirror": lambda x: x[:, ::-1],
    "crop": _crop,
    "small": lambda x: _resize(x, 0.6),
    "large": lambda x: _resize(x, 1.5),
    "jpeg70": _jpeg,
    "dark": lambda x: (x.astype(np.float32) * 0.7).astype(np.uint8),
    "bright": lambda x: (255 * (x / 255.0) ** 0.7).astype(np.uint8),
    "gray": lambda x: np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8),
}


def photos(spec: Mapping[str, Any]) -> list[tuple[str, np.ndarray, bool]]:
    """``(name, RGB, is_face_photo)`` for the image part."""
    from pathlib import Path

    from guardrail.corpora import natural_images

    from .faces import face_photos

    out = [(f"face:{m['name']}", img, True) for m, img in face_photos()]
    dirs = tuple(Path(d).expanduser() for d in spec.get("photo_dirs", []))
    seen = {n for n, _, _ in out}
    for name, img in natural_images(dirs):
        if name == "skimage:astronaut" or name in seen:
            continue  # already a face photo
        out.append((name, img, name.startswith("file:")))
    return out


def image_items(spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Work items of the image part: every face photo in every variant, the other photos
    as they are; each once unmarked and once watermarked."""
    variants = spec.get("variants") or list(IMAGE_VARIANTS)
    unknown = [v for v in variants if v not in IMAGE_VARIANTS]
    if unknown:
        raise SuiteError(f"unknown image variant(s) {', '.join(unknown)}; known: "
                         f"{', '.join(IMAGE_VARIANTS)}")
    out = []
    for name, _img, is_face in photos(spec):
        for variant in (variants if is_face else ["original"]):
            for marked in (0, 1):
                out.append({"key": f"image:{name}:{variant}:{'marked' if marked else 'plain'}",
                            "part": "image", "photo": name, "variant": variant,
                            "watermarked": marked, "synthetic": 0})
    return out


def text_items(suite: Any, spec: Mapping[str, Any], samples: int,
               limit: int | None) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Work items of the text part and ``{language group: missing Debian package}``."""
    from .languages import fortune_texts, missing_languages

    langs = spec.get("languages") or {}
    groups = suite.attributes.get("language", ())
    if not groups or set(groups) - set(langs):
        raise SuiteError(f"{suite.path or suite.name}: the text part needs attribute "
                         "'language' and text.languages mapping each of its groups to a "
                         "corpus code (en, de, es, it)")
    absent = missing_languages([langs[g] for g in groups])
    missing = {g: absent[langs[g]] for g in groups if langs[g] in absent}
    per_lang = int(spec.get("human_texts_per_language", 40))
    out: list[dict[str, Any]] = []
    for g in groups:
        for i, (src, text) in enumerate(fortune_texts(langs[g], limit=per_lang,
                                                      max_words=int(spec.get("max_words", 80)))):
            out.append({"key": f"text:human:{langs[g]}:{i}", "part": "text", "language": g,
                        "source": src, "text": text, "watermarked": 0, "synthetic": 0})
    items = suite.items()
    if limit:  # keep every language: the first `limit` prompts of each
        by_group: dict[str, list[Any]] = defaultdict(list)
        for it in items:
            by_group[it["group"]].append(it)
        items = [it for g in groups for it in by_group[g][:int(limit)]]
    for s in range(samples):
        for it in items:
            out.append({"key": f"text:gen:{it['prompt_id']}#{s}", "part": "text",
                        "language": it["group"], "prompt": it["prompt"], "sample": s,
                        "watermarked": 1, "synthetic": 1})
    return out, missing
