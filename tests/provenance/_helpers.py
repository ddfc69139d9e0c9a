"""Media samples and a PNG chunk toolkit for the Content Credentials tests."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np


def pixels(seed: int = 0, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([x * 4 % 256, y * 4 % 256, (x + y) * 2 % 256], axis=-1)
    return np.clip(base + rng.integers(0, 32, base.shape), 0, 255).astype(np.uint8)


def encode_image(fmt: str, seed: int = 0, size: int = 64) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels(seed, size)).save(buf, format=fmt)
    return buf.getvalue()


def encode_audio(fmt: str, subtype: str, seed: int = 0) -> bytes:
    import soundfile as sf

    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, 16000, endpoint=False)
    signal = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.01 * rng.standard_normal(t.size))
    buf = io.BytesIO()
    sf.write(buf, signal.astype(np.float32), 16000, format=fmt, subtype=subtype)
    return buf.getvalue()


MEDIA = {
    "image/png": lambda seed=0: encode_image("PNG", seed),
    "image/jpeg": lambda seed=0: encode_image("JPEG", seed),
    "image/webp": lambda seed=0: encode_image("WEBP", seed),
    "audio/wav": lambda seed=0: encode_audio("WAV", "PCM_16", seed),
    "audio/flac": lambda seed=0: encode_audio("FLAC", "PCM_16", seed),
    "audio/mpeg": lambda seed=0: encode_audio("MP3", "MPEG_LAYER_III", seed),
}


# -- PNG chunks -------------------------------------------------------------------------
def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, i = [], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        out.append((data[i + 4:i + 8], data[i + 8:i + 8 + n]))
        i += 12 + n
    return out


def png_build(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = b"\x89PNG\r\n\x1a\n"
    for kind, body in chunks:
        out += struct.pack(">I", len(body)) + kind + body
        out += struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return out


def png_change_one_pixel(data: bytes) -> bytes:
    """The same PNG (manifest chunk kept) with one pixel's red value changed by one.

    The pixels are decoded, one is changed, and the image data is written back unfiltered
    (filter type 0 on every row), so the decoded image differs in exactly one pixel.
    """
    from PIL import Image

    arr = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
    arr[0, 0, 0] ^= 0x01
    raw = b"".join(b"\x00" + row.tobytes() for row in arr)
    out, done = [], False
    for kind, body in png_chunks(data):
        if kind == b"IHDR":
            assert body[8:10] == b"\x08\x02", "8-bit RGB expected"
        if kind == b"IDAT":
            if not done:
                out.append((b"IDAT", zlib.compress(raw)))
                done = True
        else:
            out.append((kind, body))
    return png_build(out)


def riff_chunk_offset(data: bytes, name: bytes) -> int:
    """Offset of the body of the first top-level RIFF chunk called ``name``."""
    assert data[:4] == b"RIFF"
    i = 12
    while i + 8 <= len(data):
        size = struct.unpack("<I", data[i + 4:i + 8])[0]
        if data[i:i + 4] == name:
            return i + 8
        i += 8 + size + (size & 1)
    raise KeyError(name)
