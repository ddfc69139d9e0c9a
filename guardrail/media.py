"""Media types, encoding of artifacts to file bytes, and atomic file writes."""

from __future__ import annotations

import io
import os
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from ._types import Artifact, Modality
from .errors import OutputError, UnsupportedMediaError

__all__ = [
    "DEFAULT_MEDIA_TYPE",
    "MAX_IMAGE_PIXELS",
    "decode",
    "read_file",
    "sniff_media_type",
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


#: Largest image guardrail will decode (pixels); larger files are refused as possible
#: decompression bombs instead of being expanded in memory.
MAX_IMAGE_PIXELS = 64 * 1024 * 1024
#: Largest audio guardrail will decode (samples per channel x channels).
MAX_AUDIO_SAMPLES = 96_000 * 60 * 30 * 2


def sniff_media_type(data: bytes) -> str | None:
    """The media type that the bytes themselves declare (magic numbers), or ``None``."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith((b"RIFF", b"RF64")) and data[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"fLaC"):
        return "audio/flac"
    if head.startswith(b"ID3") and len(data) >= 10:
        # an ID3v2 tag may precede FLAC (C2PA stores its manifest there) as well as MP3
        size = ((data[6] & 0x7F) << 21) | ((data[7] & 0x7F) << 14) | ((data[8] & 0x7F) << 7) \
            | (data[9] & 0x7F)
        after = 10 + size + (10 if data[5] & 0x10 else 0)
        return "audio/flac" if data[after:after + 4] == b"fLaC" else "audio/mpeg"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff"
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < 4090:  # not just a multi-byte character cut at the boundary
            return None
    return "text/plain"


def decode(data: bytes, media_type: str | None = None, *, name: str = "input",
           metadata: Any = None) -> Artifact:
    """Decode file bytes into an artifact (content array or text), checking what they are.

    The bytes' own magic numbers decide the type; a ``media_type`` (e.g. from the file
    extension) that disagrees is reported, not trusted. Images become ``HxWx3`` (or
    ``HxWx4`` with alpha) ``uint8`` arrays: grayscale, palette, CMYK and 16-bit images are
    converted; animated images and images above :data:`MAX_IMAGE_PIXELS` are refused.
    Audio becomes ``float32`` samples in ``[-1, 1]`` (``N`` or ``N x C``).

    Raises
    ------
    UnsupportedMediaError
        Naming the problem: empty, truncated, unsupported or mislabelled data.
    """
    from ._types import GenerationMetadata

    if not data:
        raise UnsupportedMediaError(f"{name}: the file is empty")
    sniffed = sniff_media_type(data)
    if sniffed is None:
        raise UnsupportedMediaError(f"{name}: not a supported image, audio or text file")
    if media_type and media_type != sniffed and not (
            media_type.startswith("text/") and sniffed == "text/plain"):
        raise UnsupportedMediaError(
            f"{name}: the name says {media_type} but the content is {sniffed}")
    md = metadata or GenerationMetadata(model_id="unknown")
    if sniffed.startswith("image/"):
        arr = _decode_image(data, name)
        return Artifact(modality=Modality.IMAGE, content=arr, metadata=md, media_type=sniffed,
                        data=data)
    if sniffed.startswith("audio/"):
        samples, rate = _decode_audio(data, name)
        return Artifact(modality=Modality.AUDIO, content=samples, metadata=md, sample_rate=rate,
                        media_type=sniffed, data=data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsupportedMediaError(f"{name}: text is not valid UTF-8") from None
    return Artifact(modality=Modality.TEXT, content=text, metadata=md, media_type="text/plain",
                    data=data)


def _decode_image(data: bytes, name: str) -> np.ndarray:
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_IMAGE_PIXELS:
                raise UnsupportedMediaError(
                    f"{name}: image is {w}x{h} = {w * h} pixels, above the limit of "
                    f"{MAX_IMAGE_PIXELS} (possible decompression bomb)")
            if getattr(img, "n_frames", 1) > 1:
                raise UnsupportedMediaError(
                    f"{name}: animated image with {img.n_frames} frames is not supported")
            img.load()
    except UnsupportedMediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnsupportedMediaError(f"{name}: refused as a possible decompression bomb: {exc}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise UnsupportedMediaError(f"{name}: cannot decode image (truncated or corrupt): {exc}") from None
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr16 = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(arr16.max()), 1.0)
        gray = np.clip(np.rint(arr16 / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        return np.asarray(img.convert("RGBA"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _decode_audio(data: bytes, name: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as fh:
            if fh.frames * max(fh.channels, 1) > MAX_AUDIO_SAMPLES:
                raise UnsupportedMediaError(
                    f"{name}: audio has {fh.frames} frames x {fh.channels} channels, above the "
                    f"limit of {MAX_AUDIO_SAMPLES} samples")
            samples = fh.read(dtype="float32", always_2d=False)
            rate = int(fh.samplerate)
    except UnsupportedMediaError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, EOFError) as exc:
        raise UnsupportedMediaError(f"{name}: cannot decode audio (truncated or corrupt): {exc}") from None
    if samples.size == 0:
        raise UnsupportedMediaError(f"{name}: the audio holds no samples")
    if not np.all(np.isfinite(samples)):
        raise UnsupportedMediaError(f"{name}: the audio holds non-finite samples")
    return samples, rate


def read_file(path: str | os.PathLike[str]) -> Artifact:
    """Read and decode a media file; its extension is the claimed type (checked)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise UnsupportedMediaError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise UnsupportedMediaError(f"{p}: is a directory") from None
    except OSError as exc:
        raise UnsupportedMediaError(f"{p}: cannot read: {exc.strerror}") from None
    declared = MEDIA_TYPES.get(p.suffix.lower(), (None, None))[0]
    return decode(data, declared, name=p.name)
