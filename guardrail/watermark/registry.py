"""Watermark schemes by name: the entry points of group ``guardrail.watermarks``.

An entry point names a builder ``(key, *, fpr, **options) -> Watermarker``. guardrail's
own builders (registered in its ``pyproject.toml``) are :class:`Scheme` objects defined
here: each carries the scheme's modality and a one-line summary, and imports its
implementation only when it is called, so listing the schemes needs none of their
dependencies. A third-party scheme registers the same way; wrapping its builder in a
:class:`Scheme` makes its modality known to listings.

Examples
--------
>>> "guardrail-image" in registered("image")
True
>>> registered("image")["guardrail-image-v2"].modality.value
'image'
>>> registered()["kgw"].modality.value
'text'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import plugins
from .._types import Modality
from ..errors import ConfigError
from ..keys import key_id
from .base import Watermarker

__all__ = ["Scheme", "build", "registered"]


@dataclass(frozen=True)
class Scheme:
    """A registered watermark scheme: what it marks, what it is, and its builder.

    Parameters
    ----------
    modality
        The modality the scheme marks.
    summary
        One line for listings and documentation.
    factory
        ``(key, *, fpr, **options) -> Watermarker``; imports the implementation.
    """

    modality: Modality
    summary: str
    factory: Callable[..., Watermarker]

    def __call__(self, key: bytes, *, fpr: float, **options: Any) -> Watermarker:
        return self.factory(key, fpr=fpr, **options)


def registered(modality: Modality | str | None = None) -> dict[str, Any]:
    """Every registered scheme builder by name, sorted; only those of ``modality`` if given.

    A builder without a ``modality`` attribute is listed for every modality.
    """
    want = Modality.parse(modality) if modality is not None else None
    out = {}
    for name in plugins.names(plugins.WATERMARKS):
        builder = plugins.load(plugins.WATERMARKS, name)
        if want is None or getattr(builder, "modality", want) is want:
            out[name] = builder
    return out


def build(name: str, *, key: bytes, fpr: float, **options: Any) -> Watermarker:
    """Instantiate scheme ``name`` with ``key`` at false-positive rate ``fpr``.

    Raises
    ------
    ConfigError
        When no scheme of that name is registered (the message lists the known ones).
    """
    known = plugins.names(plugins.WATERMARKS)
    if name not in known:
        raise ConfigError(f"unknown watermark scheme {name!r}; known: {', '.join(known)}")
    wm = plugins.load(plugins.WATERMARKS, name)(key, fpr=fpr, **options)
    if getattr(wm, "key_id", None) is None:
        wm.key_id = key_id(key)  # the public id of the key, recorded with every mark
    return wm


# ------------------------------------------------------------------ guardrail's schemes
def _text(scheme: str, key: bytes, fpr: float, options: dict[str, Any]) -> Watermarker:
    from .text import TextWatermarker, TextWatermarkParams

    fields = TextWatermarkParams.__dataclass_fields__
    params = TextWatermarkParams(scheme=scheme, **{k: options.pop(k) for k in list(options)
                                                   if k in fields})
    return TextWatermarker(key, fpr=fpr, params=params, **options)


def _kgw(key: bytes, *, fpr: float, **options: Any) -> Watermarker:
    return _text("kgw", key, fpr, options)


def _synthid(key: bytes, *, fpr: float, **options: Any) -> Watermarker:
    return _text("synthid", key, fpr, options)


def _guardrail_image(key: bytes, *, fpr: float, **options: Any) -> Watermarker:
    from .image import GuardrailImageWatermark

    return GuardrailImageWatermark(key, fpr=fpr, **options)


def _guardrail_image_v2(key: bytes, *, fpr: float, **options: Any) -> Watermarker:
    from .image_v2 import GuardrailImageWatermarkV2

    return GuardrailImageWatermarkV2(key, fpr=fpr, **options)


def _dwt_dct(key: bytes, *, fpr: float, **options: Any) -> Watermarker:
    from .invisible import DwtDctWatermark

    return DwtDctWatermark(key, fpr=fpr, **options)


def _dwt_dct_svd(key: bytes, *, fpr: float, **options: Any) -> Watermarker:
    from .invisible import DwtDctSvdWatermark

    return DwtDctSvdWatermark(key, fpr=fpr, **options)


def _riva_gan(key: bytes, *, fpr: float, **options: Any) -> Watermarker:
    from .invisible import RivaGanWatermark

    return RivaGanWatermark(key, fpr=fpr, **options)


def _guardrail_audio(key: bytes, *, fpr: float, **options: Any) -> Watermarker:
    from .audio import GuardrailAudioWatermark

    return GuardrailAudioWatermark(key, fpr=fpr, **options)


def _guardrail_audio_v2(key: bytes, *, fpr: float, **options: Any) -> Watermarker:
    from .audio_v2 import GuardrailAudioWatermarkV2

    return GuardrailAudioWatermarkV2(key, fpr=fpr, **options)


def _guardrail_audio_v3(key: bytes, *, fpr: float, **options: Any) -> Watermarker:
    from .audio_v3 import GuardrailAudioWatermarkV3

    return GuardrailAudioWatermarkV3(key, fpr=fpr, **options)


def _audioseal(key: bytes, *, fpr: float, **options: Any) -> Watermarker:
    from .audioseal import AudioSealWatermark

    return AudioSealWatermark(key=key, fpr=fpr, **options)


kgw = Scheme(Modality.TEXT, "green-list watermark while decoding (transformers "
             "WatermarkingConfig)", _kgw)
synthid = Scheme(Modality.TEXT, "SynthID-Text tournament sampling (transformers "
                 "SynthIDTextWatermarkingConfig)", _synthid)
guardrail_image = Scheme(Modality.IMAGE, "keyed tiled spread-spectrum in luminance with "
                         "autocorrelation sync, 32-bit id (convolutional code + CRC-24)",
                         _guardrail_image)
guardrail_image_v2 = Scheme(Modality.IMAGE, "version 2: keyed non-periodic spread-spectrum "
                            "bound to the content (keyed content sign field), low-energy sync "
                            "lattice, crops/rotations/flips searched, 32-bit id (CRC-24)",
                            _guardrail_image_v2)
dwt_dct = Scheme(Modality.IMAGE, "invisible-watermark's DWT-DCT (adapter; detection needs "
                 "the expected id)", _dwt_dct)
dwt_dct_svd = Scheme(Modality.IMAGE, "invisible-watermark's DWT-DCT-SVD (adapter; detection "
                     "needs the expected id)", _dwt_dct_svd)
riva_gan = Scheme(Modality.IMAGE, "invisible-watermark's RivaGAN ONNX model (adapter; needs "
                  "the expected id)", _riva_gan)
guardrail_audio = Scheme(Modality.AUDIO, "keyed spread-spectrum in the 0.5-7 kHz STFT band "
                         "with a sync pattern, 32-bit id with CRC-24", _guardrail_audio)
guardrail_audio_v2 = Scheme(Modality.AUDIO, "version 2: guardrail-audio bound to the content "
                            "(keyed content sign field), speed/tempo/pitch searched, 32-bit "
                            "id (CRC-24)", _guardrail_audio_v2)
guardrail_audio_v3 = Scheme(Modality.AUDIO, "version 3: version 2's content-bound pilot with a "
                            "coherent (keyed-phase) payload layer bound to the content, read "
                            "under noise; 32-bit id (CRC-24), none after speed/tempo/pitch",
                            _guardrail_audio_v3)
audioseal = Scheme(Modality.AUDIO, "Meta's AudioSeal from local checkpoint files "
                   "(GUARDRAIL_AUDIOSEAL_*)", _audioseal)
