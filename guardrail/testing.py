"""Fakes that implement guardrail's protocols, for tests and examples.

They are deterministic and need no model weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ._generator import Generated, GenerationHooks, ModelInfo
from ._types import Modality
from .stages import Stage, StageContext, StageOutcome, StageSkipped

__all__ = [
    "EchoTextGenerator",
    "FakeLSBWatermarker",
    "FailingGenerator",
    "FakeCheck",
    "NoiseAudioGenerator",
    "SolidImageGenerator",
    "speechlike",
]


class EchoTextGenerator:
    """Text generator that answers ``"echo: <prompt>"`` and remembers its hooks."""

    modality = Modality.TEXT

    def __init__(self, *, model_id: str = "fake:echo") -> None:
        self.info = ModelInfo(model_id=model_id, revision="1", device="cpu")
        self.calls: list[tuple[list[str], GenerationHooks | None]] = []

    def generate(self, prompts: Sequence[str], *, seed: int | None = None,
                 params: Mapping[str, Any] | None = None,
                 hooks: GenerationHooks | None = None) -> list[Generated]:
        self.calls.append((list(prompts), hooks))
        return [Generated(content=f"echo: {p}", parameters={"seed": seed, **(params or {})})
                for p in prompts]


class SolidImageGenerator:
    """Image generator returning a seeded noisy ``size x size`` RGB image."""

    modality = Modality.IMAGE

    def __init__(self, *, size: int = 64) -> None:
        self.size = size
        self.info = ModelInfo(model_id="fake:solid", revision="1", device="cpu")

    def generate(self, prompts: Sequence[str], *, seed: int | None = None,
                 params: Mapping[str, Any] | None = None,
                 hooks: GenerationHooks | None = None) -> list[Generated]:
        out = []
        for i, _ in enumerate(prompts):
            rng = np.random.default_rng(None if seed is None else seed + i)
            img = rng.integers(0, 256, size=(self.size, self.size, 3), dtype=np.uint8)
            out.append(Generated(content=img, parameters={"seed": seed}))
        return out


def speechlike(seconds: float, *, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A deterministic speech-like test signal: brown noise (a falling spectrum like
    speech) with a 0.1 s syllable envelope.

    Parameters
    ----------
    seconds : float
        Length of the signal.
    sr : int
        Sample rate, Hz.
    seed : int
        Seed of the noise and the envelope.

    Returns
    -------
    numpy.ndarray
        ``int(seconds * sr)`` float32 samples in [-1, 1].
    """
    rng = np.random.default_rng(seed)
    n, k = int(seconds * sr), sr // 40
    brown = np.cumsum(rng.standard_normal(n + 2 * k))
    brown = (brown - np.convolve(brown, np.ones(k) / k, "same"))[k:n + k]
    env = np.repeat(rng.uniform(0.1, 0.9, n // (sr // 10) + 1), sr // 10)[:n]
    return np.clip(brown / (4.0 * brown.std()) * env, -1.0, 1.0).astype(np.float32)


class NoiseAudioGenerator:
    """Audio generator returning one second of quiet seeded noise at 16 kHz."""

    modality = Modality.AUDIO

    def __init__(self, *, sample_rate: int = 16000) -> None:
        self.sample_rate = sample_rate
        self.info = ModelInfo(model_id="fake:noise", revision="1", device="cpu")

    def generate(self, prompts: Sequence[str], *, seed: int | None = None,
                 params: Mapping[str, Any] | None = None,
                 hooks: GenerationHooks | None = None) -> list[Generated]:
        rng = np.random.default_rng(seed)
        return [Generated(content=(0.1 * rng.standard_normal(self.sample_rate)).astype(np.float32),
                          sample_rate=self.sample_rate) for _ in prompts]


class FailingGenerator:
    """A generator that raises, or returns ``result`` instead of proper outputs."""

    def __init__(self, modality: Modality | str = Modality.TEXT, *,
                 exc: BaseException | None = None, result: Any = None) -> None:
        self.modality = Modality.parse(modality)
        self.info = ModelInfo(model_id="fake:failing", device="cpu")
        self.exc = exc
        self.result = result

    def generate(self, prompts: Sequence[str], *, seed: int | None = None,
                 params: Mapping[str, Any] | None = None,
                 hooks: GenerationHooks | None = None) -> list[Generated]:
        if self.exc is not None:
            raise self.exc
        return self.result(prompts) if callable(self.result) else self.result


class FakeCheck(Stage):
    """A stage whose behaviour is given by a function of the context.

    ``behaviour`` returns ``True``/``False`` (pass/fail), a :class:`StageOutcome`, or
    raises (``StageSkipped`` to say it cannot run).
    """

    def __init__(self, behaviour: Callable[[StageContext], Any], *, slot: str = "output_checks",
                 name: str = "fake_check", on_fail: str | None = None,
                 modalities: Sequence[Modality | str] | None = None,
                 hooks: GenerationHooks | None = None) -> None:
        self.slot = slot
        self.name = name
        super().__init__(on_fail=on_fail, modalities=modalities)
        self.behaviour = behaviour
        self.hooks = hooks
        self.seen: list[StageContext] = []

    def before_generate(self, ctx: StageContext) -> GenerationHooks | None:
        return self.hooks

    def run(self, ctx: StageContext) -> StageOutcome:
        self.seen.append(ctx)
        result = self.behaviour(ctx)
        if isinstance(result, StageOutcome):
            return result
        return StageOutcome(passed=bool(result), reason=None if result else "fake check failed")


def skip_with(reason: str) -> Callable[[StageContext], Any]:
    """A behaviour for :class:`FakeCheck` that cannot run."""

    def behaviour(_ctx: StageContext) -> Any:
        raise StageSkipped(reason)

    return behaviour


class FakeLSBWatermarker:
    """A deliberately fragile image watermark (payload in the blue channel's lowest bits).

    It survives PNG but not JPEG, which makes it useful for testing that self-checks run on
    the final encoded bytes. Not a real scheme.
    """

    scheme = "fake-lsb"
    version = "1"
    modality = Modality.IMAGE
    payload_bits = 16
    fpr = 1e-3
    key_id = "fake-key"

    def embed(self, artifact: Any, payload: int) -> Any:
        from .watermark.base import CannotWatermark

        img = np.array(artifact.content)
        if img.ndim != 3 or img.shape[0] * img.shape[1] < 64:
            raise CannotWatermark("cannot embed: image too small for the fake scheme")
        bits = np.array([(payload >> i) & 1 for i in range(16)] * 4, dtype=np.uint8)
        flat = img[..., 2].reshape(-1)
        flat[:64] = (flat[:64] & 0xFE) | bits
        img[..., 2] = flat.reshape(img.shape[:2])
        return artifact.evolve(content=img)

    def detect(self, artifact: Any) -> Any:
        from ._types import WatermarkResult

        img = np.asarray(artifact.content)
        bits = (img[..., 2].reshape(-1)[:64] & 1).reshape(4, 16)
        agree = int((bits == bits[0]).all(axis=0).sum())
        detected = agree == 16
        payload = sum(int(b) << i for i, b in enumerate(bits[0])) if detected else None
        return WatermarkResult(detected=detected, scheme=self.scheme, score=float(agree),
                               p_value=0.0 if detected else 1.0, fpr=self.fpr,
                               payload=f"{payload:04x}" if payload is not None else None)
