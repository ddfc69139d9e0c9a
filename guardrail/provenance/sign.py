"""Signing: C2PA Content Credentials for generated images, audio and text.

Every manifest carries

* a ``c2pa.created`` action with the IPTC digital source type
  ``trainedAlgorithmicMedia`` and the model as ``softwareAgent``;
* when a watermark was embedded: a ``c2pa.watermarked`` action and a
  ``c2pa.soft-binding`` assertion naming the watermark scheme and its id, so the
  credentials can be found again from the watermark once the metadata is stripped;
* ``org.guardrail.generation``: model id and revision, the keyed prompt hash (never the
  prompt), the generation parameters and the guard's stage outcomes;
* ``cawg.training-mining`` (CAWG) with the configured training and data-mining choices;
* a thumbnail only as configured (default: a small 256-px JPEG made by guardrail).

Speed: with c2pa-python's defaults, signing a 1024x1024 JPEG takes ~77 ms on two shared
cores, ~97 % of it spent making c2pa's own 1024-px thumbnail (decode, resize, re-encode;
~80 KB added to the file). guardrail turns c2pa's thumbnail off and adds its own small
one (from the pixels it already has, or a reduced JPEG decode): ~8 ms in all (~2 ms
without a thumbnail). Nothing is verified less: ``verify_after_sign`` stays on (under
1 ms) and the provenance stage verifies every signed output again, trust included. See
:mod:`guardrail.benchmarks.provenance`.

Examples
--------
>>> from guardrail.provenance import ManifestInfo, sign_bytes      # doctest: +SKIP
>>> signed = sign_bytes(png, "image/png", signer=signer,
...                     manifest_info=ManifestInfo(model_id="embedded:digits"))  # doctest: +SKIP
"""

from __future__ import annotations

import io
import logging
from typing import Any

from ..errors import SigningError, UnsupportedMediaError
from ._c2pa import SIGNABLE_MEDIA_TYPES, sniff
from ._c2pa import normalize_media_type as _normalize
from .manifest import ManifestInfo, SignOptions, build_manifest_definition, run_builder
from .signer import ProvenanceSigner
from .text import sign_text

__all__ = ["make_thumbnail", "sign_bytes", "sign_bytes_with_manifest"]

log = logging.getLogger(__name__)


def make_thumbnail(data: bytes | None, *, pixels: Any = None, long_edge: int = 256,
                   quality: int = 70) -> bytes | None:
    """A small JPEG thumbnail from ``pixels`` (HxWxC uint8) or from encoded image bytes.

    JPEGs are decoded at reduced size (DCT scaling), so this stays within a few
    milliseconds for a 1024-px image. Returns ``None`` when the image cannot be read.
    """
    from PIL import Image

    try:
        if pixels is not None:
            img = Image.fromarray(pixels)
        else:
            img = Image.open(io.BytesIO(data or b""))
            if img.format == "JPEG":
                img.draft("RGB", (long_edge, long_edge))
        factor = max(1, min(img.size) // max(1, long_edge) // 2)
        if factor > 1:
            img = img.reduce(factor)
        img.thumbnail((long_edge, long_edge), Image.Resampling.BILINEAR)
        if img.mode != "RGB":
            img = img.convert("RGB")
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        return buf.getvalue()
    except (OSError, ValueError, TypeError, SyntaxError) as exc:
        log.debug("no thumbnail: %s", exc)
        return None


def sign_bytes(
    data: bytes,
    media_type: str,
    *,
    signer: ProvenanceSigner,
    manifest_info: ManifestInfo,
    options: SignOptions | None = None,
    pixels: Any = None,
) -> bytes:
    """Sign an encoded image, audio or text file in memory; return the signed bytes.

    :func:`sign_bytes_with_manifest` also returns the manifest store that was embedded.

    Parameters
    ----------
    data : bytes
        The final encoded file (PNG, JPEG, WebP, WAV, FLAC, MP3 or UTF-8 text).
    media_type : str
        Its media type; it must match what the bytes are.
    signer : ProvenanceSigner
    manifest_info : ManifestInfo
    options : SignOptions, optional
    pixels : numpy.ndarray, optional
        The image's pixels, when at hand: the small thumbnail is made from them
        instead of decoding ``data``.

    Returns
    -------
    bytes
        The signed file. For text with ``options.text_mode == "embedded"``: the UTF-8 text
        (NFC-normalised) followed by the invisible manifest wrapper. For text in
        ``sidecar`` mode use :func:`guardrail.provenance.text.sign_text`, which also returns
        the manifest store.

    Raises
    ------
    UnsupportedMediaError
        An unsupported media type, empty data, or bytes that are not ``media_type``.
    SigningError
        Signing failed (timestamp authority, KMS callback, c2pa).
    DependencyError
        c2pa-python (or c2pa-text for text) is not installed.
    """
    return sign_bytes_with_manifest(data, media_type, signer=signer,
                                    manifest_info=manifest_info, options=options,
                                    pixels=pixels)[0]


def sign_bytes_with_manifest(
    data: bytes,
    media_type: str,
    *,
    signer: ProvenanceSigner,
    manifest_info: ManifestInfo,
    options: SignOptions | None = None,
    pixels: Any = None,
) -> tuple[bytes, bytes]:
    """As :func:`sign_bytes`; returns ``(signed file, C2PA manifest store)``: the manifest
    store (JUMBF, ``application/c2pa``) is what the record store keeps so that the Soft
    Binding Resolution API can serve it after the file's metadata was stripped."""
    options = options or SignOptions()
    mt = _normalize(media_type)
    if mt not in SIGNABLE_MEDIA_TYPES:
        raise UnsupportedMediaError(
            f"cannot sign {media_type!r}: Content Credentials are supported for "
            f"{', '.join(SIGNABLE_MEDIA_TYPES)}")
    if not data:
        raise UnsupportedMediaError("cannot sign an empty file")
    if mt == "text/plain":
        if options.text_mode != "embedded":
            raise UnsupportedMediaError(
                "sidecar signing of text returns two files: use provenance.text.sign_text")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsupportedMediaError("cannot sign text that is not valid UTF-8") from None
        signed_text = sign_text(text, signer=signer, manifest_info=manifest_info,
                                options=options)
        return signed_text.text.encode("utf-8"), signed_text.manifest
    sniffed = sniff(data)
    if sniffed != mt:
        raise UnsupportedMediaError(
            f"cannot sign: the media type says {mt} but the bytes are "
            f"{sniffed or 'not a recognised format'}")
    resources: dict[str, bytes] = {}
    thumb_id = None
    if options.thumbnail == "small" and mt.startswith("image/"):
        thumb = make_thumbnail(data, pixels=pixels, long_edge=options.thumbnail_long_edge,
                               quality=options.thumbnail_quality)
        if thumb:
            thumb_id = "thumbnail.jpg"
            resources[thumb_id] = thumb
    definition = build_manifest_definition(manifest_info, claim_generator=options.claim_generator,
                                           thumbnail_identifier=thumb_id)
    signed, manifest = run_builder(definition, mt, data, signer=signer, options=options,
                                   resources=resources)
    if not signed:
        raise SigningError("c2pa returned an empty file")
    return signed, manifest
