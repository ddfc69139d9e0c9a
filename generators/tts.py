"""transformers text-to-waveform models: VITS / MMS-TTS, MusicGen, Bark, ...

Any ``AutoModelForTextToWaveform`` model loads by hub id or local path through
:func:`generators.audio.load`. Prompt ``i`` is generated after
``torch.manual_seed(seed + i)`` (with ``batch_size > 1`` the batch starting at prompt ``i``
uses ``seed + i``, and the result depends on the batch composition).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import numpy as np

from guardrail import Generated, ModelInfo, resolve_device
from guardrail.errors import DependencyError, GenerationError, ModelLoadError

from ._audio_base import AudioGenerator, number_param
from ._common import load_pretrained, looks_like_path, model_revision, torch_dtype

__all__ = ["TransformersAudioGenerator", "load_transformers"]

log = logging.getLogger(__name__)

_KIND = "transformers text-to-speech model"
_VITS_PARAMS = {"speaking_rate", "noise_scale", "noise_scale_duration"}
_COMMON_PARAMS = {"batch_size"}
# generation parameters recorded from the model's generation config when not given
_GENERATE_RECORDED = ("max_new_tokens", "do_sample", "guidance_scale", "temperature", "top_k",
                      "top_p")
_DEFAULT_MAX_NEW_TOKENS = 256  # the transformers text-to-audio pipeline's default


class TransformersAudioGenerator(AudioGenerator):
    """A transformers text-to-waveform model (VITS / MMS-TTS, MusicGen, Bark, ...).

    Parameters accepted by :meth:`generate` (``params``):

    ``batch_size`` (int)
        Prompts per model call (default: the ``batch_size`` given to :func:`load`, 1).
    VITS / MMS-TTS: ``speaking_rate``, ``noise_scale``, ``noise_scale_duration``
        Override the model config's values for the call.
    Models that generate (MusicGen, Bark, ...): any ``generate()`` keyword
        e.g. ``max_new_tokens`` (default 256, about 5 s of MusicGen audio),
        ``do_sample``, ``guidance_scale``, ``temperature``, ``top_k``; the model
        rejects what it does not know. Bark takes its sub-model settings the same way.

    VITS batches are trimmed to each prompt's own length (the last few dozen samples of a
    shorter prompt differ slightly from its unbatched rendering: the decoder sees the
    padding); other models' batched outputs keep the padding the model produced, so
    ``batch_size=1`` (the default) is the safe choice for them.
    """

    def __init__(self, model: Any, tokenizer: Any, processor: Any, info: ModelInfo, *,
                 sample_rate: int, batch_size: int = 1, progress: bool = True,
                 mono: bool = True) -> None:
        super().__init__(progress=progress, mono=mono)
        self.model = model
        self.tokenizer = tokenizer
        self.processor = processor
        self.info = info
        self.sample_rate = int(sample_rate)
        self.batch_size = batch_size
        self.is_vits = model.config.model_type == "vits"
        self.can_generate = bool(getattr(model, "can_generate", lambda: False)())
        self._pipe: Any = None

    def _pipeline(self) -> Any:
        if self._pipe is None:
            from transformers import pipeline

            extra = {"processor": self.processor} if self.processor is not None else {}
            self._pipe = pipeline("text-to-audio", model=self.model, tokenizer=self.tokenizer,
                                  device=self.model.device, **extra)
        return self._pipe

    def _resolve(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        batch_size = params.pop("batch_size", self.batch_size)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise GenerationError(f"batch_size must be a positive integer, got {batch_size!r}")
        if self.is_vits:
            unknown = set(params) - _VITS_PARAMS
            if unknown:
                raise GenerationError(
                    f"unknown parameter(s) for the VITS model {self.info.model_id!r}: "
                    f"{', '.join(sorted(unknown))}; accepted: "
                    f"{', '.join(sorted(_VITS_PARAMS | _COMMON_PARAMS))}")
            cfg = self.model.config
            return batch_size, {
                "speaking_rate": number_param(params, "speaking_rate", cfg.speaking_rate,
                                              minimum=0.0, strict=True),
                "noise_scale": number_param(params, "noise_scale", cfg.noise_scale, minimum=0.0),
                "noise_scale_duration": number_param(params, "noise_scale_duration",
                                                     cfg.noise_scale_duration, minimum=0.0),
            }
        if self.can_generate and self.model.config.model_type != "bark":
            gen_cfg = getattr(self.model, "generation_config", None)
            if "max_new_tokens" not in params:
                default = getattr(gen_cfg, "max_new_tokens", None)
                params["max_new_tokens"] = default or _DEFAULT_MAX_NEW_TOKENS
            for key in _GENERATE_RECORDED:
                value = getattr(gen_cfg, key, None)
                if key not in params and value is not None:
                    params[key] = value
        return batch_size, params

    def _generate(self, prompts: list[str], seed: int, params: dict[str, Any]) -> list[Generated]:
        import torch

        batch_size, p = self._resolve(params)
        if self.is_vits:
            self._check_tokens(prompts)
        results: list[Generated] = []
        with self._progress_bar(len(prompts)) as bar:
            for start in range(0, len(prompts), batch_size):
                chunk = prompts[start:start + batch_size]
                torch.manual_seed(seed + start)
                t0 = time.perf_counter()
                try:
                    waves = self._vits(chunk, p) if self.is_vits else self._via_pipeline(chunk, p)
                except GenerationError:
                    raise
                except Exception as exc:
                    last = start + len(chunk) - 1
                    where = f"prompt {start}" if last == start else f"prompts {start}..{last}"
                    raise GenerationError(
                        f"{self.info.model_id!r} failed on {where}: {type(exc).__name__}: {exc}"
                    ) from exc
                elapsed = time.perf_counter() - t0
                for j, wave in enumerate(waves):
                    parameters = {**p, "seed": seed + start, "batch_size": batch_size,
                                  "generate_s": round(elapsed, 3)}
                    results.append(self._finish(wave, start + j, parameters))
                bar.update(len(chunk))
        return results

    def _check_tokens(self, prompts: list[str]) -> None:
        for i, prompt in enumerate(prompts):
            ids = self.tokenizer(prompt)["input_ids"]
            if len(ids) == 0:
                raise GenerationError(
                    f"prompt {i} has no characters that {self.info.model_id!r} can pronounce "
                    f"(none of them is in its vocabulary)")

    def _vits(self, texts: list[str], p: dict[str, Any]) -> list[np.ndarray]:
        import torch

        enc = self.tokenizer(texts, return_tensors="pt", padding=True)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        model = self.model
        saved = (model.noise_scale, model.noise_scale_duration)
        model.noise_scale, model.noise_scale_duration = p["noise_scale"], p["noise_scale_duration"]
        try:
            with torch.inference_mode():
                out = model(**enc, speaking_rate=p["speaking_rate"])
        finally:
            model.noise_scale, model.noise_scale_duration = saved
        waveform = out.waveform.float().cpu().numpy()
        lengths = out.sequence_lengths
        if lengths is None:
            return list(waveform)
        return [waveform[b, : int(n)] for b, n in enumerate(lengths.tolist())]

    def _via_pipeline(self, texts: list[str], p: dict[str, Any]) -> list[np.ndarray]:
        pipe = self._pipeline()
        key = "generate_kwargs" if self.can_generate else "forward_params"
        kwargs: dict[str, Any] = {key: dict(p)} if p else {}
        if len(texts) > 1:
            kwargs["batch_size"] = len(texts)
        out = pipe(texts, **kwargs)
        if isinstance(out, dict):
            out = [out]
        if len(out) != len(texts):
            raise GenerationError(
                f"{self.info.model_id!r} returned {len(out)} outputs for {len(texts)} prompts")
        return [np.asarray(o["audio"]) for o in out]


def load_transformers(model: str, *, device: str | None, dtype: str | None, progress: bool,
                      batch_size: int, mono: bool,
                      revision: str | None) -> TransformersAudioGenerator:
    """Load a transformers text-to-waveform model by hub id or local path.

    Raises
    ------
    ModelLoadError
        The model cannot be loaded (the message names it and how to provide it), or
        ``batch_size`` is not a positive integer.
    DependencyError
        torch or transformers is not installed.
    """
    t0 = time.perf_counter()
    try:
        import torch  # noqa: F401 - fail early with the extra's name
        import transformers
    except ImportError as exc:
        raise DependencyError(exc.name or "transformers", "audio",
                              purpose=f"the audio model {model!r}") from None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ModelLoadError(model, f"batch_size must be a positive integer, got {batch_size!r}")
    device = resolve_device(device)
    tdtype = torch_dtype(dtype, device)
    if not progress:
        transformers.utils.logging.disable_progress_bar()
    extra = {"revision": revision} if revision else {}
    hf_model, tokenizer, processor = load_pretrained(
        model, _KIND, _hf_loader, weights_dtype=tdtype, **extra)
    hf_model.to(device)
    hf_model.eval()
    sample_rate = _sample_rate(hf_model, processor)
    source = "local" if looks_like_path(model) else "hub"
    rev = model_revision(model, revision)
    info = ModelInfo(
        model_id=model,
        revision=rev,
        device=device,
        dtype=str(tdtype).replace("torch.", ""),
        details={
            "engine": "transformers", "transformers": transformers.__version__,
            "architecture": type(hf_model).__name__, "model_type": hf_model.config.model_type,
            "source": source, "sample_rate": sample_rate,
            "load_ms": round((time.perf_counter() - t0) * 1000, 1),
        },
    )
    gen = TransformersAudioGenerator(hf_model, tokenizer, processor, info, sample_rate=sample_rate,
                                     batch_size=batch_size, progress=progress, mono=mono)
    if sample_rate is None:
        try:
            gen.sample_rate = int(gen._pipeline().sampling_rate)
        except (TypeError, ValueError, AttributeError) as exc:
            raise ModelLoadError(model, "the model does not state its sample rate",
                                 hint="set sampling_rate in its config.json") from exc
        info = ModelInfo(model_id=info.model_id, revision=info.revision, device=info.device,
                         dtype=info.dtype, details={**info.details, "sample_rate": gen.sample_rate})
        gen.info = info
    log.info("loaded %s (%s) on %s in %.2f s", model, type(hf_model).__name__, device,
             time.perf_counter() - t0)
    return gen


def _hf_loader(name: str, *, weights_dtype: Any, local_files_only: bool = False,
               **kwargs: Any) -> tuple[Any, Any, Any]:
    """Load model, tokenizer and processor; any failure propagates to ``load_pretrained``."""
    import transformers
    from transformers import AutoConfig, AutoModelForTextToWaveform, AutoProcessor, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_TEXT_TO_SPECTROGRAM_MAPPING_NAMES

    common = {"local_files_only": local_files_only, **kwargs}
    config = AutoConfig.from_pretrained(name, **common)
    if config.model_type in MODEL_FOR_TEXT_TO_SPECTROGRAM_MAPPING_NAMES:
        raise ValueError(f"{config.model_type} produces spectrograms and needs a separate "
                         f"vocoder; use a text-to-waveform model (VITS/MMS-TTS, MusicGen, Bark)")
    dtype_key = "dtype" if _version_at_least(transformers.__version__, "4.56") else "torch_dtype"
    model = AutoModelForTextToWaveform.from_pretrained(name, config=config,
                                                       **{dtype_key: weights_dtype}, **common)
    tokenizer = processor = None
    tok_error: Exception | None = None
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **common)
    except Exception as exc:  # noqa: BLE001 - some models only ship a processor
        tok_error = exc
    if config.model_type != "vits":
        try:
            processor = AutoProcessor.from_pretrained(name, **common)
        except Exception as exc:  # noqa: BLE001
            log.debug("no processor for %s: %s", name, exc)
        if processor is tokenizer or not hasattr(processor, "tokenizer"):
            processor = None
        elif tokenizer is None:
            tokenizer = processor.tokenizer
    if tokenizer is None:
        raise ValueError(f"no tokenizer could be loaded ({type(tok_error).__name__}: {tok_error})")
    return model, tokenizer, processor


def _sample_rate(model: Any, processor: Any) -> int | None:
    config = model.config
    candidates = [getattr(model, "generation_config", None), config,
                  getattr(config, "audio_encoder", None), getattr(config, "codec_config", None),
                  getattr(processor, "feature_extractor", None)]
    for obj in candidates:
        for attr in ("sample_rate", "sampling_rate"):
            value = getattr(obj, attr, None) if obj is not None else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def _version_at_least(version: str, minimum: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", v)[:3])

    return parts(version) >= parts(minimum)
