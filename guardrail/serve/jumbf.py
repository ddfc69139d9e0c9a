"""The active manifest of a C2PA manifest store (JUMBF), for ``returnActiveManifest``.

A manifest store is a JUMBF superbox (``jumb``) labelled ``c2pa`` whose children after its
description box (``jumd``) are the manifests, oldest first: the active manifest is the
last. :func:`active_manifest_store` returns a manifest store holding only that manifest
(the same bytes when the store holds one manifest, as guardrail's own outputs do).
"""

from __future__ import annotations

import struct

__all__ = ["JumbfError", "active_manifest_store", "boxes"]


class JumbfError(ValueError):
    """The bytes are not a C2PA manifest store."""


def boxes(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[bytes, int, int]]:
    """``(type, start, end)`` of each ISO BMFF box in ``data[start:end]``."""
    end = len(data) if end is None else end
    out = []
    pos = start
    while pos < end:
        if end - pos < 8:
            raise JumbfError("truncated box header")
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        header = 8
        if size == 1:
            if end - pos < 16:
                raise JumbfError("truncated box header")
            size = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise JumbfError("box size out of range")
        out.append((kind, pos, pos + size))
        pos += size
    return out


def _label(data: bytes, jumd_start: int, jumd_end: int) -> str:
    # jumd: 8-byte header, 16-byte type UUID, 1 toggle byte, then a NUL-terminated label
    body = data[jumd_start + 8:jumd_end]
    if len(body) < 17:
        return ""
    toggles = body[16]
    if not toggles & 0x02:
        return ""
    label = body[17:].split(b"\0", 1)[0]
    return label.decode("utf-8", "replace")


def active_manifest_store(store: bytes) -> bytes:
    """A manifest store holding only the active (last) manifest of ``store``.

    Raises
    ------
    JumbfError
        ``store`` is not a C2PA manifest store, or holds no manifest.
    """
    top = boxes(store)
    if len(top) != 1 or top[0][0] != b"jumb":
        raise JumbfError("not a JUMBF superbox")
    _, s, e = top[0]
    children = boxes(store, s + 8, e)
    if not children or children[0][0] != b"jumd" or _label(store, *children[0][1:]) != "c2pa":
        raise JumbfError("not a C2PA manifest store")
    manifests = [c for c in children[1:] if c[0] == b"jumb"]
    if not manifests:
        raise JumbfError("the manifest store holds no manifest")
    if len(manifests) == 1:
        return store[s:e]
    _, d0, d1 = children[0]
    _, m0, m1 = manifests[-1]
    body = store[d0:d1] + store[m0:m1]
    return struct.pack(">I4s", 8 + len(body), b"jumb") + body
