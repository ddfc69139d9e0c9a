"""Media types, encoding of artifacts to file bytes, and atomic file writes."""

from __future__ import annotations

import io
import os
import secrets
import stat
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ._types import Artifact, Modality
from .config import Limits
from .errors import OutputError, UnsupportedMediaError

__all__ = [
    "DEFAULT_MEDIA_TYPE",
    "MAX_IMAGE_PIXELS",
    "Limits",
    "decode",
    "read_bytes",
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


#: Largest image decoded with the default limits (pixels; ``[limits] max_image_pixels``).
MAX_IMAGE_PIXELS = Limits().max_image_pixels
#: Bytes converted to an array at a time when an image is turned into a numpy array
_BLOCK_BYTES = 4 << 20


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
           metadata: Any = None, limits: Limits | None = None) -> Artifact:
    """Decode file bytes into an artifact (content array or text), checking what they are.

    The bytes' own magic numbers decide the type; a ``media_type`` (e.g. from the file
    extension) that disagrees is reported, not trusted. Images become ``HxWx3`` (or
    ``HxWx4`` with alpha) ``uint8`` arrays: grayscale, palette, CMYK and 16-bit images are
    converted; animated images are refused. Audio becomes ``float32`` samples in
    ``[-1, 1]`` (``N`` or ``N x C``).

    ``limits`` (default: the documented defaults, :class:`~guardrail.config.Limits`) are
    checked before decoding: the size of ``data``; image width, height and pixels from the
    header; audio sample rate, channels, frames and duration from the header; the length
    of a text from its byte count, then its characters.

    Raises
    ------
    UnsupportedMediaError
        Naming the problem: empty, truncated, unsupported or mislabelled data, or a value
        beyond a limit (the message names the field, its value and the limit).
    """
    from ._types import GenerationMetadata

    limits = limits or Limits()
    if not data:
        raise UnsupportedMediaError(f"{name}: the file is empty")
    if len(data) > limits.max_file_bytes:
        raise UnsupportedMediaError(
            f"{name}: {len(data)} bytes, above the limit of {limits.max_file_bytes} bytes "
            "(limits.max_file_bytes)")
    sniffed = sniff_media_type(data)
    if sniffed is None:
        raise UnsupportedMediaError(f"{name}: not a supported image, audio or text file")
    if media_type and media_type != sniffed and not (
            media_type.startswith("text/") and sniffed == "text/plain"):
        raise UnsupportedMediaError(
            f"{name}: the name says {media_type} but the content is {sniffed}")
    md = metadata or GenerationMetadata(model_id="unknown")
    if sniffed.startswith("image/"):
        arr = _decode_image(data, name, limits)
        return Artifact(modality=Modality.IMAGE, content=arr, metadata=md, media_type=sniffed,
                        data=data)
    if sniffed.startswith("audio/"):
        samples, rate = _decode_audio(data, name, limits)
        return Artifact(modality=Modality.AUDIO, content=samples, metadata=md, sample_rate=rate,
                        media_type=sniffed, data=data)
    text = _decode_text(data, name, limits)
    return Artifact(modality=Modality.TEXT, content=text, metadata=md, media_type="text/plain",
                    data=data)


def _decode_text(data: bytes, name: str, limits: Limits) -> str:
    chars = limits.max_text_chars
    if len(data) > 4 * chars:  # UTF-8 takes at most 4 bytes a character
        raise UnsupportedMediaError(
            f"{name}: a text of {len(data)} bytes holds more than the limit of {chars} "
            "characters (limits.max_text_chars)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsupportedMediaError(f"{name}: text is not valid UTF-8") from None
    if len(text) > chars:
        raise UnsupportedMediaError(f"{name}: the text has {len(text)} characters, above the "
                                    f"limit of {chars} (limits.max_text_chars)")
    return text


def _check_image_header(img: Any, name: str, limits: Limits) -> None:
    w, h = img.size
    if w <= 0 or h <= 0:
        raise UnsupportedMediaError(f"{name}: the image header declares {w}x{h} pixels")
    if max(w, h) > limits.max_image_side:
        raise UnsupportedMediaError(
            f"{name}: image is {w}x{h}, its longer side above the limit of "
            f"{limits.max_image_side} pixels (limits.max_image_side)")
    if w * h > limits.max_image_pixels:
        raise UnsupportedMediaError(
            f"{name}: image is {w}x{h} = {w * h} pixels, above the limit of "
            f"{limits.max_image_pixels} (limits.max_image_pixels; possible decompression bomb)")
    if getattr(img, "is_animated", False) or getattr(img, "n_frames", 1) > 1:
        raise UnsupportedMediaError(
            f"{name}: animated image with {img.n_frames} frames is not supported")


def _decode_image(data: bytes, name: str, limits: Limits) -> np.ndarray:
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            # the configured limit decides; Pillow's own hard limit (2x its warning) stays
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            _check_image_header(img, name, limits)
            img.load()
            return _image_array(img)
    except UnsupportedMediaError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's hard limit, checked on opening
        raise UnsupportedMediaError(
            f"{name}: refused as a possible decompression bomb, above Pillow's own limit "
            f"whatever limits.max_image_pixels ({limits.max_image_pixels}) says: {exc}") from None
    except (OSError, ValueError, SyntaxError, EOFError, KeyError, IndexError, TypeError,
            ZeroDivisionError, struct.error) as exc:
        raise UnsupportedMediaError(f"{name}: cannot decode image (truncated or corrupt): {exc}") from None


def _image_array(img: Any) -> np.ndarray:
    """``HxWx3`` / ``HxWx4`` ``uint8`` pixels of a loaded image, converted a block of rows at
    a time (no whole-image temporary copies besides the result)."""
    mode = img.mode
    w, h = img.size
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        top = 65535.0 if mode.startswith("I;16") else max(float(img.getextrema()[1]), 1.0)
        out = np.empty((h, w, 3), dtype=np.uint8)
        rows = max(1, _BLOCK_BYTES // (8 * w))
        for y in range(0, h, rows):
            part = np.asarray(img.crop((0, y, w, min(h, y + rows))), dtype=np.float64)
            gray = np.clip(np.rint(part / top * 255.0), 0, 255).astype(np.uint8)
            out[y:y + gray.shape[0]] = gray[:, :, None]
        return out
    target = "RGBA" if mode in ("RGBA", "LA", "PA") or (
        mode == "P" and "transparency" in img.info) else "RGB"
    out = np.empty((h, w, len(target)), dtype=np.uint8)
    rows = max(1, _BLOCK_BYTES // (4 * w))
    for y in range(0, h, rows):
        part = img.crop((0, y, w, min(h, y + rows)))
        if part.mode != target:
            part = part.convert(target)
        block = np.asarray(part, dtype=np.uint8)
        out[y:y + block.shape[0]] = block.reshape(block.shape[0], w, len(target))
    return out


def _check_audio_header(fh: Any, name: str, limits: Limits) -> None:
    rate, channels, frames = int(fh.samplerate), int(fh.channels), int(fh.frames)
    if not limits.min_audio_rate <= rate <= limits.max_audio_rate:
        raise UnsupportedMediaError(
            f"{name}: the header's sample rate {rate} Hz is outside the accepted "
            f"{limits.min_audio_rate}-{limits.max_audio_rate} Hz (limits.min_audio_rate, "
            "limits.max_audio_rate)")
    if not 1 <= channels <= limits.max_audio_channels:
        raise UnsupportedMediaError(
            f"{name}: the header declares {channels} channels; the limit is "
            f"{limits.max_audio_channels} (limits.max_audio_channels)")
    if frames < 0:
        raise UnsupportedMediaError(f"{name}: the header declares {frames} frames")
    if frames * channels > limits.max_audio_samples:
        raise UnsupportedMediaError(
            f"{name}: audio has {frames} frames x {channels} channels = {frames * channels} "
            f"samples, above the limit of {limits.max_audio_samples} (limits.max_audio_samples)")
    if frames / rate > limits.max_audio_seconds:
        raise UnsupportedMediaError(
            f"{name}: audio lasts {frames / rate:.1f} s ({frames} frames at {rate} Hz), above "
            f"the limit of {limits.max_audio_seconds:g} s (limits.max_audio_seconds)")


def _decode_audio(data: bytes, name: str, limits: Limits) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        with sf.SoundFile(io.BytesIO(data)) as fh:
            _check_audio_header(fh, name, limits)
            samples = fh.read(dtype="float32", always_2d=False)
            rate = int(fh.samplerate)
    except UnsupportedMediaError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, EOFError, OSError,
            OverflowError, MemoryError) as exc:
        raise UnsupportedMediaError(f"{name}: cannot decode audio (truncated or corrupt): {exc}") from None
    if samples.size == 0:
        raise UnsupportedMediaError(f"{name}: the audio holds no samples")
    if not np.all(np.isfinite(samples)):
        raise UnsupportedMediaError(f"{name}: the audio holds non-finite samples")
    return samples, rate


#: what a file that is not a regular file is, by its mode
_SPECIAL_FILES = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                  (stat.S_ISSOCK, "a socket"))


def _check_regular(p: Path, st: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = next((k for test, k in _SPECIAL_FILES if test(st.st_mode)), "not a regular file")
        what = "is a directory" if kind == "a directory" else f"is {kind}, not a regular file"
        raise UnsupportedMediaError(f"{p}: {what}; only regular files are read")
    if st.st_size > limit:
        raise UnsupportedMediaError(
            f"{p}: the file is {st.st_size} bytes, above the limit of {limit} bytes "
            "(limits.max_file_bytes)")


def read_bytes(path: str | os.PathLike[str], *, limits: Limits | None = None,
               max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file, refusing anything else before reading it.

    The path is checked with ``stat`` (a FIFO, a device, a socket or a directory is refused
    before it is opened), opened with ``O_NONBLOCK`` (a FIFO swapped in meanwhile cannot
    block the open), checked again on the open descriptor, refused when larger than the
    limit, then read once: at most ``max_bytes + 1`` bytes, so a file that grows while it
    is read is refused too.

    Parameters
    ----------
    path
        The file.
    limits : Limits, optional
        ``max_file_bytes`` is the limit (default: the documented default).
    max_bytes : int, optional
        Overrides ``limits.max_file_bytes``.

    Raises
    ------
    UnsupportedMediaError
        Missing, unreadable, not a regular file, or larger than the limit.
    """
    p = Path(path)
    limit = int(max_bytes if max_bytes is not None else (limits or Limits()).max_file_bytes)
    try:
        _check_regular(p, os.stat(p), limit)
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UnsupportedMediaError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise UnsupportedMediaError(f"{p}: is a directory") from None
    except OSError as exc:
        raise UnsupportedMediaError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        _check_regular(p, st, limit)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(st.st_size + 1) or b""  # None: nothing to read without waiting
            if len(data) > st.st_size:  # growing, or a size the file system does not know
                chunks, total = [data], len(data)
                while total <= limit:
                    chunk = fh.read(min(1 << 20, limit + 1 - total))
                    if not chunk:
                        break
                    chunks.append(chunk)
                    total += len(chunk)
                data = b"".join(chunks)
    except OSError as exc:
        raise UnsupportedMediaError(f"{p}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise UnsupportedMediaError(f"{p}: the file grew past the limit of {limit} bytes "
                                    "(limits.max_file_bytes) while it was read")
    return data


def read_file(path: str | os.PathLike[str], *, limits: Limits | None = None) -> Artifact:
    """Read (:func:`read_bytes`) and decode (:func:`decode`) a media file within ``limits``;
    its extension is the claimed type (checked)."""
    p = Path(path)
    data = read_bytes(p, limits=limits)
    declared = MEDIA_TYPES.get(p.suffix.lower(), (None, None))[0]
    return decode(data, declared, name=p.name, limits=limits)
