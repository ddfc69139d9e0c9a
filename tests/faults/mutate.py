"""Byte-level damage for the fault suite: pure functions of the input bytes and explicit
parameters, so that the hypothesis strategies and the corpus generator share them and every
damaged file can be made again from its description.

Locators find the fields that set the cost of decoding (PNG ``IHDR``, the WAV ``fmt ``
chunk, RIFF and ``data`` chunk sizes, JPEG ``SOF`` dimensions, FLAC ``STREAMINFO``) and the
Content Credentials (JUMBF boxes inside PNG ``caBX``, JPEG ``APP11``, RIFF ``C2PA``, ID3
``GEOB``; the C2PA text wrapper of variation selectors at the end of a text).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

__all__ = [
    "JUMBF_TYPES",
    "Field",
    "c2pa_region",
    "decode_text_wrapper",
    "fields",
    "flip_bits",
    "insert",
    "jumbf_boxes",
    "overwrite",
    "png_chunks",
    "png_with_size",
    "replace_text_wrapper",
    "riff_chunks",
    "set_field",
    "truncate",
]

PNG_SIG = b"\x89PNG\r\n\x1a\n"
#: JUMBF box types whose 4-byte length (LBox) precedes the type
JUMBF_TYPES = (b"jumb", b"jumd", b"cbor", b"json", b"bidb", b"bfdb", b"c2sh")


# -- generic damage ------------------------------------------------------------------------
def truncate(data: bytes, n: int) -> bytes:
    """The first ``n`` bytes (``n`` is clipped to the data)."""
    return data[: max(0, min(n, len(data)))]


def flip_bits(data: bytes, bits: list[int]) -> bytes:
    """``data`` with each bit index in ``bits`` (modulo the data's bit length) inverted."""
    if not data:
        return data
    out = bytearray(data)
    for b in bits:
        b %= len(out) * 8
        out[b // 8] ^= 1 << (b % 8)
    return bytes(out)


def insert(data: bytes, offset: int, chunk: bytes) -> bytes:
    """``chunk`` inserted at ``offset`` (clipped)."""
    offset = max(0, min(offset, len(data)))
    return data[:offset] + chunk + data[offset:]


def overwrite(data: bytes, offset: int, value: bytes) -> bytes:
    """``value`` written over ``data`` at ``offset`` (the data keeps its length when it can)."""
    offset = max(0, min(offset, len(data)))
    return data[:offset] + value + data[offset + len(value):]


# -- container structure -------------------------------------------------------------------
def png_chunks(data: bytes) -> list[tuple[int, int, bytes]]:
    """``(offset, length, type)`` of every PNG chunk that fits in the data."""
    out: list[tuple[int, int, bytes]] = []
    if not data.startswith(PNG_SIG):
        return out
    pos = len(PNG_SIG)
    while pos + 8 <= len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        ctype = data[pos + 4:pos + 8]
        out.append((pos, length, ctype))
        pos += 12 + length
    return out


def riff_chunks(data: bytes) -> list[tuple[int, bytes, int]]:
    """``(offset, id, size)`` of the top-level chunks of a RIFF (WAV, WebP) file."""
    out: list[tuple[int, bytes, int]] = []
    if not data.startswith((b"RIFF", b"RF64")):
        return out
    pos = 12
    while pos + 8 <= len(data):
        cid = data[pos:pos + 4]
        size = struct.unpack("<I", data[pos + 4:pos + 8])[0]
        out.append((pos, cid, size))
        pos += 8 + size + (size & 1)
    return out


def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """``(offset of the marker, marker byte, segment length)`` up to the start of scan."""
    out: list[tuple[int, int, int]] = []
    if not data.startswith(b"\xff\xd8"):
        return out
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xD9:
            break
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        out.append((pos, marker, length))
        if marker == 0xDA:
            break
        pos += 2 + length
    return out


def _flac_streaminfo(data: bytes) -> int | None:
    """Offset of the 34-byte FLAC STREAMINFO body (after an ID3 tag, if any)."""
    at = data.find(b"fLaC")
    if at < 0 or at + 8 + 34 > len(data):
        return None
    return at + 8


def jumbf_boxes(data: bytes) -> list[tuple[int, bytes, int]]:
    """``(offset of LBox, type, LBox)`` of every plausible JUMBF box in the data."""
    out = []
    for t in JUMBF_TYPES:
        start = 0
        while True:
            at = data.find(t, start)
            if at < 0:
                break
            start = at + 1
            if at < 4:
                continue
            lbox = struct.unpack(">I", data[at - 4:at])[0]
            if 8 <= lbox <= len(data) - (at - 4) or lbox == 1:
                out.append((at - 4, t, lbox))
    return sorted(out)


def c2pa_region(data: bytes) -> tuple[int, int] | None:
    """``(start, end)`` of the Content Credentials in the data: the outermost JUMBF
    superbox, or ``None`` when there is none."""
    boxes = [b for b in jumbf_boxes(data) if b[1] == b"jumb"]
    if not boxes:
        return None
    off, _, lbox = boxes[0]
    return off, min(len(data), off + max(lbox, 8))


# -- named header fields -------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """A header field: where it is, its width in bytes and its byte order."""

    name: str
    offset: int
    width: int
    big_endian: bool
    #: PNG chunk (offset, length) whose CRC must be recomputed after a change, if any
    crc_chunk: tuple[int, int] | None = None


def fields(data: bytes) -> list[Field]:
    """Every header field of the data that this module knows how to set."""
    out: list[Field] = []
    for off, length, ctype in png_chunks(data):
        if ctype == b"IHDR" and off + 8 + 13 <= len(data):
            out += [Field("png.width", off + 8, 4, True, (off, length)),
                    Field("png.height", off + 12, 4, True, (off, length)),
                    Field("png.bit_depth", off + 16, 1, True, (off, length)),
                    Field("png.color_type", off + 17, 1, True, (off, length))]
        out.append(Field(f"png.{ctype.decode('latin-1')}.length", off, 4, True))
    chunks = riff_chunks(data)
    if chunks:
        out.append(Field("riff.size", 4, 4, False))
    for off, cid, _size in chunks:
        name = cid.decode("latin-1").strip()
        out.append(Field(f"riff.{name}.size", off + 4, 4, False))
        if cid == b"fmt " and off + 8 + 16 <= len(data):
            body = off + 8
            out += [Field("wav.format", body, 2, False), Field("wav.channels", body + 2, 2, False),
                    Field("wav.rate", body + 4, 4, False),
                    Field("wav.byte_rate", body + 8, 4, False),
                    Field("wav.block_align", body + 12, 2, False),
                    Field("wav.bits", body + 14, 2, False)]
    for off, marker, _length in _jpeg_segments(data):
        out.append(Field(f"jpeg.{marker:02X}.length", off + 2, 2, True))
        if marker in (0xC0, 0xC1, 0xC2) and off + 9 <= len(data):
            out += [Field("jpeg.sof.height", off + 5, 2, True),
                    Field("jpeg.sof.width", off + 7, 2, True),
                    Field("jpeg.sof.components", off + 9, 1, True)]
    si = _flac_streaminfo(data)
    if si is not None:
        # 20 bits rate | 3 bits channels-1 | 5 bits bps-1 | 36 bits total samples
        out += [Field("flac.rate_channels_bps", si + 10, 4, True),
                Field("flac.total_samples_low", si + 14, 4, True)]
    for off, t, _lbox in jumbf_boxes(data):
        out.append(Field(f"jumbf.{t.decode()}.lbox", off, 4, True))
    return out


def set_field(data: bytes, field: Field, value: int) -> bytes:
    """``data`` with ``field`` set to ``value`` (masked to its width); PNG CRCs fixed."""
    value &= (1 << (8 * field.width)) - 1
    raw = value.to_bytes(field.width, "big" if field.big_endian else "little")
    out = overwrite(data, field.offset, raw)
    if field.crc_chunk is not None:
        off, length = field.crc_chunk
        end = off + 8 + length
        if end + 4 <= len(out):
            crc = zlib.crc32(out[off + 4:end]) & 0xFFFFFFFF
            out = overwrite(out, end, struct.pack(">I", crc))
    return out


def png_with_size(width: int, height: int, *, idat: bytes | None = None,
                  color_type: int = 0, bit_depth: int = 8) -> bytes:
    """A PNG whose IHDR declares ``width x height``, with ``idat`` (default: a few bytes
    of compressed zeros) as its only image data; CRCs are correct."""
    def chunk(ctype: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + ctype + body
                + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width & 0xFFFFFFFF, height & 0xFFFFFFFF, bit_depth,
                       color_type, 0, 0, 0)
    body = idat if idat is not None else zlib.compress(b"\x00" * 64)
    return PNG_SIG + chunk(b"IHDR", ihdr) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


# -- the C2PA text wrapper -----------------------------------------------------------------
_ZWNBSP = "\ufeff"


def _vs_to_byte(ch: str) -> int | None:
    cp = ord(ch)
    if 0xFE00 <= cp <= 0xFE0F:
        return cp - 0xFE00
    if 0xE0100 <= cp <= 0xE01EF:
        return cp - 0xE0100 + 16
    return None


def _byte_to_vs(b: int) -> str:
    return chr(0xFE00 + b) if b < 16 else chr(0xE0100 + b - 16)


def decode_text_wrapper(text: str) -> tuple[int, int, bytes] | None:
    """``(start, end, payload bytes)`` of the first run of variation selectors after a
    U+FEFF in ``text`` (character indices), or ``None``."""
    at = text.find(_ZWNBSP)
    while at >= 0:
        end = at + 1
        payload = bytearray()
        while end < len(text) and (v := _vs_to_byte(text[end])) is not None:
            payload.append(v)
            end += 1
        if payload:
            return at, end, bytes(payload)
        at = text.find(_ZWNBSP, at + 1)
    return None


def replace_text_wrapper(text: str, payload: bytes) -> str:
    """``text`` with its wrapper's bytes replaced by ``payload`` (re-encoded as variation
    selectors); unchanged when it has no wrapper."""
    found = decode_text_wrapper(text)
    if found is None:
        return text
    start, end, _ = found
    return text[:start] + _ZWNBSP + "".join(_byte_to_vs(b) for b in payload) + text[end:]
