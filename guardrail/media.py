"""Media types, encoding of artifacts to file bytes, and atomic file writes."""

from __future__ import annotations

import io
import os
import secrets
from pathlib import Path

import numpy as np

from ._types import Artifact, Modality
from .errors import OutputError, UnsupportedMediaError

__all__ = [
    "DEFAULT_MEDIA_TYPE",
    "MEDIA_TYPES",
    "atomic_write",
    "check_output_path",
    "encode",
    "media_type_for_path",
]

#: file extension -> (media type, modality)
MEDIA_TYPES: dict[str, tuple[str, Modality]] = {
    ".png": ("image/png", Modality.IMAGE),
    ".jpg": ("image/jpeg", Modality.IMAGE),
    ".jpeg": ("image/jpeg", Modality.IMAGE),
    ".webp": ("image/webp", Modality.IMAGE),
    ".wav": ("audio/wav", Modality.AUDIO),
    ".flac": ("audio/flac", Modality.AUDIO),
    ".mp3": ("audio/mpeg", Modality.AUDIO),
    ".txt": ("text/plain", Modality.TEXT),
}

DEFAULT_MEDIA_TYPE = {
    Modality.TEXT: "text/plain",
    Modality.IMAGE: "image/png",
    Modality.AUDIO: "audio/wav",
}

JPEG_QUALITY = 95
WEBP_QUALITY = 95


def media_type_for_path(path: str | os.PathLike[str], modality: Modality) -> str:
    """The media type implied by ``path``'s extension, checked against ``modality``."""
    ext = Path(path).suffix.lower()
    if ext not in MEDIA_TYPES:
        allowed = ", ".join(e for e, (_, m) in MEDIA_TYPES.items() if m == modality)
        raise UnsupportedMediaError(
            f"output {str(path)!r}: unsupported extension {ext or '(none)'!r} for "
            f"{modality.value}; use one of: {allowed}")
    media_type, ext_modality = MEDIA_TYPES[ext]
    if ext_modality != modality:
        allowed = ", ".join(e for e, (_, m) in MEDIA_TYPES.items() if m == modality)
        raise UnsupportedMediaError(
            f"output {str(path)!r}: a {ext} file cannot hold {modality.value}; use one of: {allowed}")
    return media_type


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Fail early, before generating, if ``path`` cannot be written."""
    p = Path(path).expanduser()
    if p.exists() and p.is_dir():
        raise OutputError(f"output {str(p)!r} is a directory; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"output folder {str(parent)!r} does not exist")
    if not parent.is_dir():
        raise OutputError(f"output folder {str(parent)!r} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {str(parent)!r} is not writable")
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputError(f"output {str(p)!r} exists and is not writable")
    return p.absolute()


def atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to a temporary file next to ``path``, fsync, then rename.

    A reader never sees a partial file, and on failure nothing is left behind.
    """
    p = Path(path)
    tmp = p.with_name(f".{p.name}.{secrets.token_hex(6)}.partial")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except OSError as exc:
        raise OutputError(f"cannot write output {str(p)!r}: {exc.strerror or exc}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def encode(artifact: Artifact, media_type: str) -> bytes:
    """Encode an artifact's content as file bytes of ``media_type``."""
    modality = artifact.modality
    content = artifact.content
    if modality is Modality.TEXT:
        if media_type != "text/plain":
            raise UnsupportedMediaError(f"cannot encode text as {media_type}")
        return str(content).encode("utf-8")
    if modality is Modality.IMAGE:
        return _encode_image(np.asarray(content), media_type)
    if modality is Modality.AUDIO:
        if not artifact.sample_rate:
            raise UnsupportedMediaError("audio artifact has no sample rate")
        return _encode_audio(np.asarray(content), int(artifact.sample_rate), media_type)
    raise UnsupportedMediaError(f"cannot encode {modality}")  # pragma: no cover


def _encode_image(arr: np.ndarray, media_type: str) -> bytes:
    from PIL import Image

    if arr.dtype != np.uint8 or arr.ndim not in (2, 3):
        raise UnsupportedMediaError(
            f"image content must be a uint8 HxW or HxWxC array, got {arr.dtype} {arr.shape}")
    img = Image.fromarray(arr)
    buf = io.BytesIO()
    if media_type == "image/png":
        img.save(buf, format="PNG")
    elif media_type == "image/jpeg":
        img.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    elif media_type == "image/webp":
        img.save(buf, format="WEBP", quality=WEBP_QUALITY)
    else:
        raise UnsupportedMediaError(f"cannot encode an image as {media_type}")
    return buf.getvalue()


def _encode_audio(arr: np.ndarray, sample_rate: int, media_type: str) -> bytes:
    import soundfile as sf

    if arr.ndim not in (1, 2) or arr.size == 0:
        raise UnsupportedMediaError(f"audio content must be a non-empty 1-D or 2-D array, got {arr.shape}")
    data = np.clip(np.asarray(arr, dtype=np.float32), -1.0, 1.0)
    buf = io.BytesIO()
    fmt = {"audio/wav": ("WAV", "PCM_16"), "audio/flac": ("FLAC", "PCM_16"),
           "audio/mpeg": ("MP3", "MPEG_LAYER_III")}.get(media_type)
    if fmt is None:
        raise UnsupportedMediaError(f"cannot encode audio as {media_type}")
    try:
        sf.write(buf, data, sample_rate, format=fmt[0], subtype=fmt[1])
    except (sf.LibsndfileError, TypeError, ValueError) as exc:
        raise UnsupportedMediaError(f"cannot encode audio as {media_type}: {exc}") from None
    return buf.getvalue()
