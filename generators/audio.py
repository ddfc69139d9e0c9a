"""Audio generation: the embedded Piper voice and transformers text-to-audio models.

``load()`` with no model gives the embedded default, ``embedded:piper-joe``: the Piper
neural TTS engine with the ``en_US-joe-medium`` voice (:mod:`generators.piper`). Any
transformers text-to-waveform model loads by hub id or local path: VITS / MMS-TTS
(``VitsModel``), MusicGen, Bark and the other ``AutoModelForTextToWaveform`` models
(:mod:`generators.tts`)::

    gen = load()                                         # Piper, en_US joe voice
    gen = load("facebook/mms-tts-eng", device="cpu")     # VITS from the hub cache
    gen = load("/models/musicgen-small", device="cuda")  # fp16 on CUDA by default
    out = gen.generate(["Hello there."], seed=7, params={"length_scale": 1.1})

Every output is a ``float32`` mono array in ``[-1, 1]`` with its sample rate (see
:class:`AudioGenerator` for the channel policy), and ``parameters`` record what was used.

Seeds: for Piper, prompt ``i`` uses ``seed + i``, reproducibly (the voice graph is made
seedable, see :mod:`generators.piper`); for transformers models prompt ``i`` is generated
after ``torch.manual_seed(seed + i)``. With either engine a call without a seed draws a
random one and records it in ``parameters["seed"]``, so every output can be regenerated.
"""

from __future__ import annotations

import logging
from typing import Any

from ._audio_base import AudioGenerator
from ._common import EMBEDDED_PREFIX, is_embedded
from .piper import EMBEDDED_MODEL, PiperGenerator, load_piper
from .tts import TransformersAudioGenerator, load_transformers

__all__ = [
    "EMBEDDED_MODEL",
    "AudioGenerator",
    "PiperGenerator",
    "TransformersAudioGenerator",
    "load",
]

log = logging.getLogger(__name__)


def load(model: str | None = None, *, device: str | None = None, dtype: str | None = None,
         progress: bool = True, batch_size: int = 1, mono: bool = True,
         revision: str | None = None, seedable: bool = True,
         **options: Any) -> AudioGenerator:
    """Load an audio generator.

    Parameters
    ----------
    model : str, optional
        ``None`` or ``"embedded:piper-joe"`` for the embedded Piper voice; otherwise a hub
        id or a local directory of a transformers text-to-waveform model.
    device : str, optional
        ``cpu``, ``cuda``, ``cuda:1``; default picks CUDA when present. Piper uses CUDA
        only when onnxruntime has the CUDA provider (``onnxruntime-gpu``), else the CPU.
    dtype : str, optional
        ``auto`` (float16 on CUDA, float32 on CPU), ``float32``, ``float16``, ``bfloat16``.
        Piper runs in float32 only.
    progress : bool
        Show a progress bar over prompts (and transformers' loading bars).
    batch_size : int
        Prompts per model call for transformers models (default 1: per-prompt seeds).
    mono : bool
        Down-mix multi-channel output to mono (default); ``False`` keeps ``N x C``.
    revision : str, optional
        Hub branch, tag or commit for hub models.
    seedable : bool
        Piper only: rewrite the voice graph so that seeds make output reproducible
        (default). ``False`` keeps the stock graph (random on every call).
    **options
        Ignored, with a debug log (generator options shared with other modalities).

    Returns
    -------
    AudioGenerator
        A :class:`PiperGenerator` or a :class:`TransformersAudioGenerator`.

    Raises
    ------
    ModelLoadError
        The model cannot be loaded; the message names it and how to provide it.
    DependencyError
        ``piper-tts``, ``onnxruntime``, the voice package or transformers is missing.
    """
    if options:
        log.debug("audio load() ignores options: %s", ", ".join(sorted(options)))
    if is_embedded(model):
        name = EMBEDDED_MODEL if model in (None, "", EMBEDDED_PREFIX) else model
        return load_piper(name, device=device, dtype=dtype, progress=progress, seedable=seedable)
    return load_transformers(model, device=device, dtype=dtype, progress=progress,
                             batch_size=batch_size, mono=mono, revision=revision)
