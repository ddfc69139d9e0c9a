"""Soft bindings: how guardrail names its watermarks and fingerprints for C2PA.

A C2PA ``c2pa.soft-binding`` assertion names the algorithm of a soft binding (a watermark
or a content fingerprint) in its ``alg`` field and carries the binding's value, base64
encoded, in ``blocks[].value``. The C2PA Soft Binding Resolution API (``guardrail serve``)
looks manifests up by the same ``alg`` and value; the record store indexes them
(:mod:`guardrail._records`) and :mod:`guardrail.provenance.softbinding` writes the assertion. guardrail names its algorithms in
reverse-DNS form with a version, derived from the registered scheme's name:

==========================  ==========================================
scheme / fingerprint        ``alg``
==========================  ==========================================
``guardrail-image``         ``io.guardrail.watermark.image.v1``
``guardrail-image-v2``      ``io.guardrail.watermark.image.v2``
``guardrail-audio``         ``io.guardrail.watermark.audio.v1``
``guardrail-audio-v3``      ``io.guardrail.watermark.audio.v3``
``kgw`` (any other name)    ``io.guardrail.watermark.kgw.v1``
image pHash                 ``io.guardrail.fingerprint.phash.v1``
normalised text SHA-256     ``io.guardrail.fingerprint.text-sha256.v1``
==========================  ==========================================

Examples
--------
>>> watermark_alg("guardrail-image-v2")
'io.guardrail.watermark.image.v2'
>>> fingerprint_binding("phash:00ff00ff00ff00ff")
('io.guardrail.fingerprint.phash.v1', 'AP8A/wD/AP8=')
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["ALG_PREFIX", "FINGERPRINT_ALGS", "decode_value", "encode_value",
           "fingerprint_binding", "watermark_alg", "watermark_binding"]

#: the reverse-DNS prefix of every guardrail algorithm name
ALG_PREFIX = "io.guardrail"
#: content fingerprints (guardrail.fingerprint) by kind, as soft-binding algorithms
FINGERPRINT_ALGS = {"phash": f"{ALG_PREFIX}.fingerprint.phash.v1",
                    "text-sha256": f"{ALG_PREFIX}.fingerprint.text-sha256.v1"}
_OWN = re.compile(r"^guardrail-(?P<what>[a-z0-9]+(?:-[a-z0-9]+)*?)(?:-v(?P<v>\d+))?$")
_UNSAFE = re.compile(r"[^a-z0-9-]+")


def watermark_alg(scheme: str) -> str:
    """The soft-binding algorithm name of the watermark scheme registered as ``scheme``.

    ``guardrail-<what>[-v<N>]`` becomes ``io.guardrail.watermark.<what>.v<N>`` (``v1``
    without a suffix); any other scheme name ``io.guardrail.watermark.<name>.v1``, in
    lower case.
    """
    name = str(scheme).strip().lower()
    m = _OWN.match(name)
    if m:
        return f"{ALG_PREFIX}.watermark.{m['what']}.v{int(m['v'] or 1)}"
    safe = _UNSAFE.sub("-", name).strip("-") or "unnamed"
    return f"{ALG_PREFIX}.watermark.{safe}.v1"


def encode_value(raw: bytes) -> str:
    """A binding value as the API and the assertion carry it: standard base64."""
    return base64.b64encode(raw).decode("ascii")


def decode_value(value: str) -> bytes:
    """The bytes of a base64 binding value (standard or URL-safe alphabet, padding
    optional). Raises ``ValueError`` for anything else."""
    text = str(value).strip()
    if not text or len(text) > 4096 or not re.fullmatch(r"[A-Za-z0-9+/_-]+={0,2}", text):
        raise ValueError("the binding value is not base64")
    text = text.replace("-", "+").replace("_", "/").rstrip("=")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the binding value is not base64") from None


def watermark_binding(watermark: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(alg, base64 value)`` of an embedded watermark (its ``scheme`` and hex
    ``payload``); ``None`` for a mark without an id (a text mark applied while decoding)."""
    scheme, payload = watermark.get("scheme"), watermark.get("payload")
    if not scheme or not payload:
        return None
    text = str(payload).lower().removeprefix("0x")
    try:
        raw = bytes.fromhex(text if len(text) % 2 == 0 else "0" + text)
    except ValueError:
        raw = text.encode("utf-8")
    return watermark_alg(str(scheme)), encode_value(raw)


def fingerprint_binding(fingerprint: str | None) -> tuple[str, str] | None:
    """``(alg, base64 value)`` of a content fingerprint that is looked up by equality
    (image pHash, normalised-text hash); ``None`` for others (the audio envelope is
    matched by correlation, not by value)."""
    if not fingerprint or ":" not in fingerprint:
        return None
    kind, _, rest = str(fingerprint).partition(":")
    if kind not in FINGERPRINT_ALGS:
        return None
    try:
        raw = bytes.fromhex(rest)
    except ValueError:
        return None
    return FINGERPRINT_ALGS[kind], encode_value(raw)
