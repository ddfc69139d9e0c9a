"""The one registry of watermark schemes: name -> modality and builder.

Each builder takes the secret key, the false-positive rate and scheme options, and returns
an object implementing :class:`guardrail.watermark.Watermarker`. Implementations are
imported lazily, so that an unused scheme's dependencies are never needed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from .._types import Modality
from ..errors import ConfigError

__all__ = ["SCHEMES", "SchemeInfo", "build", "schemes_for"]


@dataclass(frozen=True)
class SchemeInfo:
    name: str
    modality: Modality
    target: str  # "module:Class"
    summary: str


SCHEMES: dict[str, SchemeInfo] = {s.name: s for s in (
    SchemeInfo("kgw", Modality.TEXT, "guardrail.watermark.text:TextWatermarker",
               "green-list watermark while decoding (transformers WatermarkingConfig)"),
    SchemeInfo("synthid", Modality.TEXT, "guardrail.watermark.text:TextWatermarker",
               "SynthID-Text tournament sampling (transformers SynthIDTextWatermarkingConfig)"),
    SchemeInfo("guardrail-image", Modality.IMAGE,
               "guardrail.watermark.image:GuardrailImageWatermark",
               "keyed tiled spread-spectrum in luminance with autocorrelation sync, 32-bit id "
               "(convolutional code + CRC-24)"),
    SchemeInfo("dwtDct", Modality.IMAGE, "guardrail.watermark.invisible:DwtDctWatermark",
               "invisible-watermark's DWT-DCT (adapter; detection needs the expected id)"),
    SchemeInfo("dwtDctSvd", Modality.IMAGE, "guardrail.watermark.invisible:DwtDctSvdWatermark",
               "invisible-watermark's DWT-DCT-SVD (adapter; detection needs the expected id)"),
    SchemeInfo("rivaGan", Modality.IMAGE, "guardrail.watermark.invisible:RivaGanWatermark",
               "invisible-watermark's RivaGAN ONNX model (adapter; needs the expected id)"),
    SchemeInfo("guardrail-audio", Modality.AUDIO,
               "guardrail.watermark.audio:GuardrailAudioWatermark",
               "keyed spread-spectrum in the 0.5-7 kHz STFT band with a sync pattern, "
               "32-bit id with CRC-24"),
    SchemeInfo("audioseal", Modality.AUDIO, "guardrail.watermark.registry:_audioseal",
               "Meta's AudioSeal from local checkpoint files (GUARDRAIL_AUDIOSEAL_*)"),
)}


def _audioseal(key: bytes, *, fpr: float, **options: Any) -> Any:
    from .audioseal import AudioSealWatermark

    return AudioSealWatermark(key=key, fpr=fpr, **options)


def register(info: SchemeInfo) -> None:
    """Add a scheme (used by the image and audio modules' entries below)."""
    SCHEMES[info.name] = info


def schemes_for(modality: Modality | str) -> list[str]:
    modality = Modality.parse(modality)
    return [name for name, info in SCHEMES.items() if info.modality is modality]


def build(name: str, *, key: bytes, fpr: float, **options: Any) -> Any:
    """Instantiate scheme ``name`` with ``key`` at false-positive rate ``fpr``."""
    info = SCHEMES.get(name)
    if info is None:
        raise ConfigError(f"unknown watermark scheme {name!r}; known: {', '.join(SCHEMES)}")
    module, cls = info.target.split(":")
    factory = getattr(importlib.import_module(module), cls)
    if info.modality is Modality.TEXT:
        from .text import TextWatermarkParams

        text_opts = {k: options.pop(k) for k in list(options)
                     if k in TextWatermarkParams.__dataclass_fields__}
        options["params"] = TextWatermarkParams(scheme=name, **text_opts)
    wm = factory(key, fpr=fpr, **options)
    if getattr(wm, "key_id", None) is None:
        from ..keys import key_id

        wm.key_id = key_id(key)  # the public id of the key, recorded with every mark
    return wm
