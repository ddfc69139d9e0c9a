"""Build generators and guards from the configuration."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from ._generator import Generator, load_generator
from ._types import Modality
from .config import Config
from .pipeline import Guard, Stage
from .store import ReportStore

__all__ = ["generator_from_config", "guard_from_config"]

log = logging.getLogger(__name__)

# keys of [generators.<modality>] that configure loading rather than generation
_LOAD_KEYS = ("model", "device", "dtype", "batch_size")


def generator_from_config(
    config: Config,
    modality: Modality | str,
    *,
    model: str | None = None,
    device: str | None = None,
    progress: bool = True,
) -> Generator:
    """Load the generator for ``modality`` as configured; arguments override the config."""
    modality = Modality.parse(modality)
    section = dict(config.generator(modality.value))
    defaults = {k: v for k, v in section.items() if k not in _LOAD_KEYS}
    options: dict[str, Any] = {
        "device": device or section.get("device") or "auto",
        "dtype": section.get("dtype") or "auto",
        "progress": progress,
        "cache_dir": str(config.cache_dir),
        "batch_size": int(section.get("batch_size", 4)),
        "defaults": defaults,
    }
    name = model or section.get("model") or None
    log.info("loading %s model %s", modality.value, name or "(embedded default)")
    return load_generator(modality, name, **options)


def guard_from_config(
    config: Config,
    modality: Modality | str,
    *,
    model: str | None = None,
    device: str | None = None,
    store: ReportStore | None = None,
    stages: Sequence[Stage] = (),
    progress: bool = True,
) -> Guard:
    """A :class:`Guard` around the configured generator for ``modality``."""
    generator = generator_from_config(config, modality, model=model, device=device,
                                      progress=progress)
    return Guard(generator, store=store, config=config, stages=stages)
