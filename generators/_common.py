"""Helpers shared by the generator wrappers: model sources, hub errors, seeds."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from guardrail.errors import ModelLoadError

T = TypeVar("T")

EMBEDDED_PREFIX = "embedded:"


def is_embedded(model: str | None) -> bool:
    return model is None or model == "" or model.startswith(EMBEDDED_PREFIX)


def offline_mode() -> bool:
    """True when the hub must not be contacted (``HF_HUB_OFFLINE`` or ``GUARDRAIL_OFFLINE``)."""
    truthy = {"1", "true", "yes", "on"}
    return (
        os.environ.get("HF_HUB_OFFLINE", "").lower() in truthy
        or os.environ.get("GUARDRAIL_OFFLINE", "").lower() in truthy
    )


def looks_like_path(model: str) -> bool:
    """A model string that names the file system rather than a hub id."""
    return (
        model.startswith(("/", "./", "../", "~"))
        or os.sep in model.strip("/") and Path(os.path.expanduser(model)).exists()
        or Path(os.path.expanduser(model)).exists()
    )


def hub_hint(model: str, kind: str) -> str:
    return (
        f"pass a local directory that holds a {kind} (e.g. --model /models/my-model), or "
        f"fetch {model!r} on a machine with network access "
        f"(`hf download {model} --local-dir DIR`) and pass DIR"
    )


def load_pretrained(model: str, kind: str, loader: Callable[..., T], **kwargs: Any) -> T:
    """Call a ``from_pretrained``-style ``loader`` and turn any failure into
    :class:`ModelLoadError` naming the model and how to provide it.

    Local paths are checked first (existence, directory), hub ids are tried from the local
    cache first and from the hub only when not offline, so that a machine without
    network fails in seconds instead of hanging.
    """
    if looks_like_path(model):
        path = Path(os.path.expanduser(model))
        if not path.exists():
            raise ModelLoadError(model, "the path does not exist", hint=f"check the path to the {kind}")
        if not path.is_dir():
            raise ModelLoadError(
                model,
                "the path is a file, not a model directory",
                hint=f"pass the directory that holds the {kind}'s config and weights",
            )
        if not any((path / m).is_file() for m in ("config.json", "model_index.json")):
            raise ModelLoadError(
                model,
                "the directory holds no config.json or model_index.json, so it is not a saved model",
                hint=f"pass a directory saved with save_pretrained() for a {kind}",
            )
        try:
            return loader(str(path), **kwargs)
        except Exception as exc:
            raise ModelLoadError(
                model,
                f"the directory does not hold a loadable {kind} ({type(exc).__name__}: {_short(exc)})",
                hint=f"pass a directory saved with save_pretrained() for a {kind}",
            ) from exc
    try:
        return loader(model, local_files_only=True, **kwargs)
    except Exception as cached_exc:
        if offline_mode():
            raise ModelLoadError(
                model,
                "not in the local cache and offline mode is on",
                hint=hub_hint(model, kind),
            ) from cached_exc
        if not _is_missing_from_cache(cached_exc):
            raise ModelLoadError(
                model,
                f"found in the local cache but not loadable as a {kind} "
                f"({type(cached_exc).__name__}: {_short(cached_exc)})",
                hint=f"check that {model!r} is a {kind}",
            ) from cached_exc
    reachable, why = hub_reachable()
    if not reachable:
        raise ModelLoadError(
            model, f"not in the local cache, and the model hub is unreachable ({why})",
            hint=hub_hint(model, kind))
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "30")
    try:
        return loader(model, **kwargs)
    except Exception as exc:
        raise ModelLoadError(
            model,
            f"not in the local cache and the hub could not provide it "
            f"({type(exc).__name__}: {_short(exc)})",
            hint=hub_hint(model, kind),
        ) from exc


def hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Can the model hub (``HF_ENDPOINT``) be reached? Decided within ``timeout`` seconds.

    Without this probe, a machine with no network spends close to a minute in the hub
    client's retries before failing.
    """
    import concurrent.futures
    import socket
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme != "http" else 80)

    def connect() -> None:
        with socket.create_connection((host, port), timeout=timeout):
            pass

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        pool.submit(connect).result(timeout=timeout + 0.5)
        return True, ""
    except concurrent.futures.TimeoutError:
        return False, f"no answer from {host}:{port} within {timeout:.0f} s"
    except OSError as exc:
        return False, f"{host}:{port}: {exc.strerror or exc}"
    finally:
        pool.shutdown(wait=False)


def _is_missing_from_cache(exc: BaseException) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    markers = ("local_files_only", "cannot find", "couldn't find", "not found", "offline",
               "does not appear to have", "no such file", "localentrynotfound", "connect")
    return any(m in text for m in markers)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def torch_dtype(dtype: str | None, device: str) -> Any:
    """Map a dtype name to a torch dtype: ``auto`` is float16 on CUDA, float32 on CPU."""
    import torch

    if dtype in (None, "", "auto"):
        return torch.float16 if device.startswith("cuda") else torch.float32
    try:
        value = getattr(torch, dtype)
    except AttributeError:
        value = None
    if not isinstance(value, torch.dtype):
        from guardrail.errors import ConfigError

        raise ConfigError(f"unknown dtype {dtype!r}; use auto, float32, float16 or bfloat16")
    return value


def model_revision(model: str, revision: str | None = None) -> str | None:
    """What identifies the exact weights of ``model``.

    * a hub id loaded from the cache: the commit hash of the cached snapshot;
    * a local directory: ``sha256:`` over each config/weight file's name, size and first
      and last MiB (fast even for multi-GB checkpoints, and changes when the files do).
    """
    path = Path(os.path.expanduser(model))
    if path.is_dir():
        return files_digest(path)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json", revision=revision)
        if not isinstance(cached, str):
            cached = try_to_load_from_cache(model, "model_index.json", revision=revision)
    except Exception:  # noqa: BLE001 - the revision is informative only
        return revision
    if isinstance(cached, str):
        match = re.search(r"snapshots[/\\]([0-9a-f]{40})[/\\]", cached)
        if match:
            return match.group(1)
    return revision


_DIGEST_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".json", ".onnx", ".txt", ".model",
                    ".gguf"}


def files_digest(directory: Path) -> str | None:
    """``sha256:`` over the model files below ``directory`` (see :func:`model_revision`)."""
    digest = hashlib.sha256()
    found = False
    for file in sorted(p for p in Path(directory).rglob("*") if p.is_file()):
        if file.suffix not in _DIGEST_SUFFIXES:
            continue
        found = True
        size = file.stat().st_size
        digest.update(f"{file.relative_to(directory)}\0{size}\0".encode())
        with open(file, "rb") as fh:
            digest.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), os.SEEK_END)
                digest.update(fh.read())
    return "sha256:" + digest.hexdigest()[:32] if found else None
