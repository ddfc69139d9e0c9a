"""Thin, lazy access to c2pa-python: the import, cached contexts, media-type names.

``import guardrail`` never imports c2pa; the first signature or verification does.
c2pa ``Context`` objects are cached by their settings (creating one costs a few
milliseconds; using one is safe from several threads).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import DependencyError

__all__ = [
    "SIGNABLE_MEDIA_TYPES",
    "c2pa_context",
    "c2pa_module",
    "c2pa_text_module",
    "normalize_media_type",
]

#: Media types guardrail signs (c2pa-python 0.38 / c2pa-rs 0.91 write all of them).
SIGNABLE_MEDIA_TYPES = (
    "image/png", "image/jpeg", "image/webp",
    "audio/wav", "audio/flac", "audio/mpeg",
    "text/plain",
)

_ALIASES = {
    "image/jpg": "image/jpeg", "image/x-png": "image/png", "image/x-webp": "image/webp",
    "audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/vnd.wave": "audio/wav",
    "audio/mp3": "audio/mpeg", "audio/x-mp3": "audio/mpeg", "audio/mpeg3": "audio/mpeg",
    "audio/x-flac": "audio/flac", "text/markdown": "text/plain",
}


def normalize_media_type(media_type: str | None) -> str | None:
    """Lower-case ``media_type`` without parameters, with common aliases resolved."""
    if not media_type:
        return None
    base = media_type.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base) or None


#: c2pa-python's native library, by platform (``libc2pa_c.so`` elsewhere)
_NATIVE_LIBRARY_NAMES = {"darwin": "libc2pa_c.dylib", "win32": "c2pa_c.dll"}
_C2PA_PURPOSE = "Content Credentials (C2PA)"
_IMPORT_LOCK = threading.Lock()


def c2pa_module() -> Any:
    """The ``c2pa`` package, its native library loaded from the installed package only.

    c2pa-python's loader looks for its native library in the current folder (and its
    ``artifacts`` and ``libs`` folders) before its own package folder, so a library
    planted there would run. The first import therefore points ``C2PA_LIBRARY_NAME`` at
    the absolute path of the library inside the installed package (an absolute name is
    the only place the loader then tries) and restores the variable afterwards.

    Raises
    ------
    DependencyError
        c2pa-python is not installed, its package holds no native library, or that
        library cannot be loaded.
    """
    with _IMPORT_LOCK:
        if sys.modules.get("c2pa") is not None:
            return sys.modules["c2pa"]
        library = _packaged_native_library()
        previous = os.environ.get("C2PA_LIBRARY_NAME")
        os.environ["C2PA_LIBRARY_NAME"] = str(library)
        try:
            import c2pa
        except ImportError:
            raise DependencyError("c2pa-python", "provenance", purpose=_C2PA_PURPOSE) from None
        except (OSError, RuntimeError) as exc:
            reason = " ".join(str(exc).split())[:300]
            raise DependencyError(
                "c2pa-python", "provenance",
                purpose=f"{_C2PA_PURPOSE}; its native library {library} did not load: "
                        f"{reason}") from None
        finally:
            if previous is None:
                os.environ.pop("C2PA_LIBRARY_NAME", None)
            else:
                os.environ["C2PA_LIBRARY_NAME"] = previous
    return c2pa


def _packaged_native_library() -> Path:
    """The absolute path of the native library inside the installed ``c2pa`` package."""
    try:
        spec = importlib.util.find_spec("c2pa")
    except (ImportError, ValueError):  # blocked in sys.modules, or a broken installation
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DependencyError("c2pa-python", "provenance", purpose=_C2PA_PURPOSE)
    folder = Path(next(iter(spec.submodule_search_locations))).resolve()
    name = _NATIVE_LIBRARY_NAMES.get(sys.platform, "libc2pa_c.so")
    for candidate in (folder / "libs" / name, folder / name):
        if candidate.is_file():
            return candidate
    raise DependencyError(
        "c2pa-python", "provenance",
        purpose=f"{_C2PA_PURPOSE}; its native library {name} is missing from {folder} and "
                f"guardrail loads it from nowhere else")


def c2pa_text_module() -> Any:
    """The ``c2pa_text`` package (C2PA unstructured-text wrapper), or DependencyError."""
    try:
        import c2pa_text
    except ImportError:
        raise DependencyError("c2pa-text", "provenance",
                              purpose="Content Credentials embedded in text") from None
    return c2pa_text


_CONTEXTS: OrderedDict[str, Any] = OrderedDict()
_LOCK = threading.Lock()
_MAX_CONTEXTS = 16


def c2pa_context(settings: Mapping[str, Any]) -> Any:
    """A (cached) ``c2pa.Context`` built from a settings dict."""
    key = json.dumps(settings, sort_keys=True)
    with _LOCK:
        ctx = _CONTEXTS.get(key)
        if ctx is not None and ctx.is_valid:
            _CONTEXTS.move_to_end(key)
            return ctx
    c2pa = c2pa_module()
    ctx = c2pa.Context.from_dict(dict(settings))
    with _LOCK:
        _CONTEXTS[key] = ctx
        while len(_CONTEXTS) > _MAX_CONTEXTS:
            _CONTEXTS.popitem(last=False)  # dropped, not closed: a reader may still use it
    return ctx


def call_with_deadline(fn: Any, timeout_s: float | None, *, what: str) -> Any:
    """Run ``fn()``; with ``timeout_s``, give up after that many seconds.

    The call runs in a daemon thread so that a hung network request inside c2pa (a
    timestamp authority or a manifest server that accepts the connection and never
    answers) cannot hang the caller; it is abandoned, not killed. Raises
    :class:`TimeoutError` naming ``what``.
    """
    if not timeout_s:
        return fn()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"guardrail-c2pa-{what}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise TimeoutError(f"{what} did not finish within {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def sniff(data: bytes) -> str | None:
    """:func:`guardrail.media.sniff_media_type`, seeing through leading ID3v2 tags.

    c2pa stores the manifest of a FLAC file in an ID3v2 tag placed before the FLAC stream
    (``ID3`` ... ``fLaC``), which the plain sniffer takes for MP3.
    """
    from ..media import sniff_media_type

    found = sniff_media_type(data)
    offset = 0
    for _ in range(4):  # a few stacked tags at most
        if data[offset:offset + 3] != b"ID3" or len(data) < offset + 10:
            break
        size = 0
        for byte in data[offset + 6:offset + 10]:
            size = (size << 7) | (byte & 0x7F)
        offset += 10 + size + (10 if data[offset + 5] & 0x10 else 0)
        if data[offset:offset + 4] == b"fLaC":
            return "audio/flac"
    return found
