"""Fakes that implement guardrail's protocols, for tests and examples.

They are deterministic and need no model weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ._generator import Generated, GenerationHooks, ModelInfo
from ._types import Modality
from .pipeline import Stage, StageContext, StageOutcome, StageSkipped

__all__ = [
    "EchoTextGenerator",
    "FailingGenerator",
    "FakeCheck",
    "NoiseAudioGenerator",
    "SolidImageGenerator",
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
