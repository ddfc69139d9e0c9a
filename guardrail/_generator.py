"""The generator protocol, device selection and loading a generator by modality.

guardrail never imports the ``generators`` package: generators are found through the
``guardrail.generators`` entry-point group (:mod:`guardrail.plugins`; one entry per
modality, naming a factory ``(model, **options) -> Generator``), so any distribution can
register its own.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from . import plugins
from ._types import Modality, _frozen_mapping
from .errors import ConfigError, DependencyError, ModelLoadError

__all__ = [
    "Generated",
    "GenerationHooks",
    "Generator",
    "ModelInfo",
    "load_generator",
    "resolve_device",
]

@dataclass(frozen=True)
class ModelInfo:
    """Identity of the loaded model, recorded in every report.

    Parameters
    ----------
    model_id : str
        What the user asked for: hub id, local path, or ``embedded:NAME``.
    revision : str or None
        Commit hash, package version or weights digest.
    device : str
        Where the model runs (``cpu``, ``cuda``, ``cuda:1``).
    dtype : str or None
        Weight dtype (``float32``, ``float16``), when meaningful.
    details : mapping
        Anything else worth recording (source package, architecture, ...).
    """

    model_id: str
    revision: str | None = None
    device: str = "cpu"
    dtype: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "details", _frozen_mapping(self.details))


@dataclass(frozen=True)
class Generated:
    """One output of a generator, before the guard turns it into an artifact.

    ``content`` follows :class:`guardrail.Artifact`: ``str`` for text, ``HxWx3 uint8``
    array for images, ``float32`` array in ``[-1, 1]`` for audio (with ``sample_rate``).
    ``parameters`` are the generation parameters actually used.
    """

    content: Any
    sample_rate: int | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", _frozen_mapping(self.parameters))


@dataclass(frozen=True)
class GenerationHooks:
    """Objects the guard hands to a generator for one call; never recorded.

    ``watermarking_config`` is passed to ``model.generate(watermarking_config=...)`` by
    text generators (transformers' ``WatermarkingConfig`` or
    ``SynthIDTextWatermarkingConfig``). ``logits_processors`` are appended to the
    generation's logits processors.
    """

    watermarking_config: Any = None
    logits_processors: Sequence[Any] = ()


@runtime_checkable
class Generator(Protocol):
    """What the guard needs from a generator.

    Implementations produce one :class:`Generated` per prompt, in order, and raise
    :class:`guardrail.errors.GenerationError` on failure.
    """

    modality: Modality
    info: ModelInfo

    def generate(
        self,
        prompts: Sequence[str],
        *,
        seed: int | None = None,
        params: Mapping[str, Any] | None = None,
        hooks: GenerationHooks | None = None,
    ) -> list[Generated]: ...


def resolve_device(device: str | None = None) -> str:
    """Return the torch device to use.

    ``None`` or ``"auto"`` picks ``cuda`` when a CUDA device is present and ``cpu``
    otherwise; anything else is validated and returned as given.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        if device in (None, "auto", "cpu"):
            return "cpu"
        raise DependencyError("torch", "text", purpose=f"device {device!r}") from None
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was requested but no CUDA device is available")
    return str(dev)


def load_generator(
    modality: Modality | str,
    model: str | None = None,
    **options: Any,
) -> Generator:
    """Load the generator registered for ``modality``.

    Parameters
    ----------
    modality : Modality or str
        ``text``, ``image`` or ``audio``.
    model : str, optional
        Hub id, local path, or ``embedded:NAME``; ``None`` means the embedded default.
    **options
        Passed to the generator factory (``device``, ``dtype``, ...).

    Raises
    ------
    ModalityError
        For an unknown modality.
    ModelLoadError
        When the model cannot be loaded; the message names it and how to provide it.
    """
    modality = Modality.parse(modality)
    if modality.value not in plugins.names(plugins.GENERATORS):
        raise ModelLoadError(
            model or f"default {modality.value} generator",
            f"no generator is registered for modality {modality.value!r} "
            f"(entry-point group {plugins.GENERATORS!r})",
            hint="install the project (pip install -e .) so that its entry points exist",
        )
    factory: Callable[..., Generator] = plugins.load(plugins.GENERATORS, modality.value)
    return factory(model, **options)


def import_optional(module: str, extra: str, purpose: str = "") -> Any:
    """Import ``module`` or raise :class:`DependencyError` naming the extra."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DependencyError(module.split(".")[0], extra, purpose=purpose) from None
