"""The base of the audio generators: the :class:`guardrail.Generator` protocol for audio.

:class:`AudioGenerator` checks prompts and seeds, serialises calls, and turns each raw
model output into ``float32`` audio in ``[-1, 1]``; :mod:`generators.piper` and
:mod:`generators.tts` implement the engines, :mod:`generators.audio` loads them.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from guardrail import Generated, GenerationHooks, Modality, ModelInfo
from guardrail.errors import GenerationError

__all__ = ["AudioGenerator", "dist_version", "number_param"]

log = logging.getLogger(__name__)


class AudioGenerator:
    """Base of the audio generators: the :class:`guardrail.Generator` protocol for audio.

    ``generate`` returns one :class:`~guardrail.Generated` per prompt, in order, whose
    ``content`` is a 1-D ``float32`` array in ``[-1, 1]`` (mono) and whose
    ``sample_rate`` is the model's rate. Multi-channel model output (stereo MusicGen) is
    down-mixed to mono by averaging the channels unless the generator was loaded with
    ``mono=False``; then it is an ``N x C`` array. Output that exceeds ``[-1, 1]`` is
    scaled down by its peak (``parameters["peak_normalized"]``), never clipped.

    Empty or whitespace-only prompts, prompts that yield no tokens / phonemes, and
    empty, all-zero or non-finite output raise :class:`~guardrail.errors.GenerationError`
    naming the prompt index and the model; so does an unknown parameter.

    ``hooks`` are accepted for the protocol and ignored: there is no audio watermark
    that is applied inside generation (the guard watermarks the waveform afterwards).

    Attributes
    ----------
    info : ModelInfo
        Model id, revision, device and dtype.
    sample_rate : int
        Sample rate of every output, in Hz.
    """

    modality = Modality.AUDIO
    info: ModelInfo
    sample_rate: int

    def __init__(self, *, progress: bool = True, mono: bool = True) -> None:
        self.progress = progress
        self.mono = mono
        self._lock = threading.Lock()

    # -- the protocol -----------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[str],
        *,
        seed: int | None = None,
        params: Mapping[str, Any] | None = None,
        hooks: GenerationHooks | None = None,
    ) -> list[Generated]:
        """Synthesise one waveform per prompt.

        Parameters
        ----------
        prompts : sequence of str
            The texts (or music descriptions) to render.
        seed : int, optional
            Base seed: prompt ``i`` uses ``seed + i``. ``None`` draws a random one, which
            is recorded in ``parameters["seed"]``.
        params : mapping, optional
            Model parameters; see :class:`generators.piper.PiperGenerator`
            and :class:`generators.tts.TransformersAudioGenerator` for the names each accepts.
        hooks : GenerationHooks, optional
            Ignored (see the class notes).

        Returns
        -------
        list of Generated
            One per prompt, in order.

        Raises
        ------
        GenerationError
            For an empty prompt, an unknown parameter, or a failed / empty synthesis.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts)
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise GenerationError(
                    f"prompt {i} for {self.info.model_id!r} is a {type(prompt).__name__}, not a string")
            if not prompt.strip():
                raise GenerationError(
                    f"prompt {i} is empty: {self.info.model_id!r} cannot synthesise audio from an "
                    f"empty or whitespace-only text")
        if seed is None:
            seed = int.from_bytes(os.urandom(4), "little")
        elif isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise GenerationError(f"seed must be a non-negative integer, got {seed!r}")
        if hooks is not None and (hooks.watermarking_config is not None or hooks.logits_processors):
            log.debug("audio generators ignore generation hooks")
        if not prompts:
            return []
        with self._lock:
            return self._generate(prompts, seed, dict(params or {}))

    # -- for subclasses ---------------------------------------------------------------
    def _generate(self, prompts: list[str], seed: int, params: dict[str, Any]) -> list[Generated]:
        raise NotImplementedError

    def _progress_bar(self, total: int) -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=f"audio ({self.info.model_id})", unit="prompt",
                    disable=not self.progress or total < 2)

    def _finish(self, audio: Any, index: int, parameters: dict[str, Any]) -> Generated:
        """Turn one raw model output into float32 mono (or N x C) audio in [-1, 1]."""
        what = f"{self.info.model_id!r} produced"
        wave = np.asarray(audio, dtype=np.float32)
        wave = np.squeeze(wave)
        channels = 1
        if wave.ndim == 2:
            # models give (channels, samples); the artifact wants (samples, channels)
            if wave.shape[0] < wave.shape[1]:
                wave = wave.T
            channels = wave.shape[1]
            wave = wave.mean(axis=1) if self.mono else wave
        elif wave.ndim != 1:
            raise GenerationError(f"{what} a {wave.ndim}-D array for prompt {index}; "
                                  f"expected a waveform")
        if wave.size == 0:
            raise GenerationError(f"{what} no audio for prompt {index}")
        if not np.all(np.isfinite(wave)):
            raise GenerationError(f"{what} non-finite samples (NaN/inf) for prompt {index}; "
                                  f"try dtype='float32'")
        peak = float(np.max(np.abs(wave)))
        if peak == 0.0:
            raise GenerationError(f"{what} only silence for prompt {index}")
        normalized = peak > 1.0
        if normalized:
            wave = wave / peak
        wave = np.ascontiguousarray(wave, dtype=np.float32)
        parameters = {**parameters, "channels": channels, "downmixed": channels > 1 and self.mono,
                      "peak_normalized": normalized,
                      "duration_s": round(wave.shape[0] / self.sample_rate, 3)}
        return Generated(content=wave, sample_rate=int(self.sample_rate), parameters=parameters)


def number_param(params: Mapping[str, Any], key: str, default: Any, *, minimum: float,
                 strict: bool = False) -> float:
    """``params[key]`` (or ``default``) as a finite float ``>= minimum`` (``>`` if
    ``strict``); :class:`GenerationError` otherwise."""
    value = params.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise GenerationError(f"{key} must be a number {bound}, got {value!r}")
    return float(value)


def dist_version(dist: str) -> str:
    """The installed version of distribution ``dist``, or ``"unknown"``."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
