"""The one extension mechanism: Python entry points.

Every kind of extension - generators, watermark schemes, detectors, attacks, audit runners
and CLI verbs - is found the same way: an entry point in the group for its kind, named by
the name users type, pointing at a ``module:attribute`` that builds it. guardrail's own
implementations are registered in its ``pyproject.toml`` exactly as a third-party package
registers its own::

    [project.entry-points."guardrail.detectors"]
    my-detector = "my_package.detector:build"

Nothing is imported until it is asked for by name, so an unused plug-in's dependencies are
never needed.

Examples
--------
>>> from guardrail import plugins
>>> "text" in plugins.names(plugins.GENERATORS)
True
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Any

from .errors import ConfigError

__all__ = [
    "ATTACKS",
    "AUDITS",
    "CLI",
    "DETECTORS",
    "GENERATORS",
    "GROUPS",
    "WATERMARKS",
    "entry_point",
    "load",
    "names",
    "refresh",
]

GENERATORS = "guardrail.generators"
WATERMARKS = "guardrail.watermarks"
DETECTORS = "guardrail.detectors"
ATTACKS = "guardrail.attacks"
AUDITS = "guardrail.audits"
CLI = "guardrail.cli"

#: every extension group, with what its entry points must name
GROUPS: dict[str, str] = {
    GENERATORS: "a factory (model, **options) -> Generator, by modality",
    WATERMARKS: "a builder (key, *, fpr, **options) -> Watermarker, by scheme name",
    DETECTORS: "a builder (config, arg, **options) -> Detector, by detector name",
    ATTACKS: "an attack factory (strength, **options) -> Attack, named <modality>.<name>",
    AUDITS: "an audit runner run(suite, ctx) -> Evaluation, by suite kind",
    CLI: "register(subparsers): adds one top-level verb",
}


#: entry points by group, read once per ``sys.path`` (reading every installed package's
#: metadata costs milliseconds, and verify looks schemes up for every file)
_CACHE: dict[tuple[str, tuple[str, ...]], dict[str, metadata.EntryPoint]] = {}


def _group(group: str) -> dict[str, metadata.EntryPoint]:
    if group not in GROUPS:
        raise ValueError(f"unknown extension group {group!r}; known: {', '.join(GROUPS)}")
    key = (group, tuple(sys.path))
    found = _CACHE.get(key)
    if found is None:
        if len(_CACHE) > 64:
            _CACHE.clear()
        found = _CACHE[key] = {ep.name: ep for ep in metadata.entry_points(group=group)}
    return found


def refresh() -> None:
    """Forget the entry points read so far (after installing a package in this process
    into a folder already on ``sys.path``)."""
    _CACHE.clear()


def names(group: str) -> list[str]:
    """The names registered in ``group``, sorted."""
    return sorted(_group(group))


def entry_point(group: str, name: str) -> metadata.EntryPoint:
    """The entry point ``name`` of ``group``; ConfigError naming the known ones if absent."""
    eps = _group(group)
    ep = eps.get(name)
    if ep is None:
        known = ", ".join(sorted(eps)) or "none"
        raise ConfigError(
            f"no {group.rpartition('.')[2].rstrip('s')} named {name!r} is registered "
            f"(entry-point group {group!r}; known: {known}). Install the package that "
            "provides it, or the project itself (pip install -e .) so that its entry points "
            "exist.")
    return ep


def load(group: str, name: str) -> Any:
    """Import and return what entry point ``name`` of ``group`` names."""
    return entry_point(group, name).load()
