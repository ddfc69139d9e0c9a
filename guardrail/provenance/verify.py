"""Verification: what an asset's Content Credentials say, and whether to believe them.

States (:class:`~guardrail.ProvenanceState`):

``TRUSTED``
    Intact and signed by a certificate that chains to a configured trust anchor.
``VALID_UNTRUSTED``
    Intact (signature, hashes, bindings) but the signer is not trusted here: never
    reported as trusted.
``INVALID``
    Present but failing validation: tampered asset or assertion, bad signature,
    transplanted manifest, unsupported algorithm, ...
``ABSENT``
    No Content Credentials (never had any, or stripped by re-encoding).
``ERROR``
    No verdict could be reached: unreadable or truncated file, unsupported format, a
    name that lies about the content, a remote manifest that cannot be fetched.

``ProvenanceResult.failures`` holds c2pa's exact status codes for the active manifest
(e.g. ``assertion.dataHash.mismatch``, ``claimSignature.mismatch``,
``signingCredential.untrusted``); everything else - signer and issuer, signing time and
timestamp authority, claim generator, actions, ingredients (with their own validation
failures), guardrail's generation assertion - is in ``ProvenanceResult.manifest``.

Verification is offline: OCSP is never fetched, and c2pa's own remote-manifest fetching is
off. A manifest stored remotely is reported as ``ERROR`` with the failure code
``manifest.inaccessible`` and its URL; with ``remote_manifest_fetch`` on, guardrail
fetches it itself, within ``remote_fetch_timeout_s``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import time
import unicodedata
import urllib.error
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._types import ProvenanceResult, ProvenanceState, _jsonable
from ..errors import DependencyError, TextWrapperError
from ..media import MEDIA_TYPES
from ._c2pa import c2pa_module, normalize_media_type, sniff
from .reader import fetch_remote_manifest, read_store
from .text import find_text_wrapper
from .trust import TrustSettings
from .verdict import classify_error, make_result, result_from_store

__all__ = ["TrustSettings", "result_to_dict", "verify_bytes", "verify_path", "verify_text"]

log = logging.getLogger(__name__)

# types guardrail can check against the bytes' magic numbers
_SNIFFABLE = frozenset({"image/png", "image/jpeg", "image/webp", "audio/wav", "audio/flac",
                        "audio/mpeg", "image/gif", "image/tiff"})
_EXTRA_EXTENSIONS = {".gif": "image/gif", ".tif": "image/tiff", ".tiff": "image/tiff",
                     ".avif": "image/avif", ".heic": "image/heic", ".heif": "image/heif",
                     ".mp4": "video/mp4", ".m4a": "audio/mp4", ".mov": "video/quicktime",
                     ".pdf": "application/pdf", ".svg": "image/svg+xml", ".md": "text/plain",
                     ".dng": "image/dng", ".c2pa": "application/c2pa"}
_REMOTE_RE = re.compile(r"remote manifests? from url (\S+)", re.IGNORECASE)


def result_to_dict(result: ProvenanceResult) -> dict[str, Any]:
    """The JSON shape of a :class:`~guardrail.ProvenanceResult` (for ``--json``)."""
    return {"state": result.state.value, "trusted": result.state is ProvenanceState.TRUSTED,
            "reason": result.reason, "failures": list(result.failures),
            "signer": result.signer, "ai_generated": result.ai_generated,
            "manifest": _jsonable(result.manifest) if result.manifest is not None else None}


def _verify_with_c2pa(data: bytes, fmt: str | None, trust: TrustSettings,
                      manifest_data: bytes | None = None) -> ProvenanceResult:
    c2pa = c2pa_module()
    try:
        store, embedded = read_store(fmt, data, manifest_data, trust)
    except c2pa.C2paError as exc:
        match = _REMOTE_RE.search(str(exc))
        if match is None:
            return classify_error(exc, media_type=fmt)
        url = match.group(1)
        return _verify_remote(data, fmt, url, trust)
    return result_from_store(store, media_type=fmt, embedded=embedded)


def _verify_remote(data: bytes, fmt: str | None, url: str,
                   trust: TrustSettings) -> ProvenanceResult:
    manifest = {"remote_url": url, "media_type": fmt}
    if not trust.remote_manifest_fetch:
        return make_result(ProvenanceState.ERROR,
                           f"the Content Credentials are stored remotely at {url} and remote "
                           "fetching is off (verification is offline); they could not be checked "
                           "(set provenance.remote_manifest_fetch = true to fetch them)",
                           failures=("manifest.inaccessible",), manifest=manifest)
    t0 = time.monotonic()
    try:
        remote = fetch_remote_manifest(url, trust.remote_fetch_timeout_s)
    except (OSError, ValueError, TimeoutError, urllib.error.URLError) as exc:
        return make_result(ProvenanceState.ERROR,
                           f"the Content Credentials are stored remotely at {url}, which could not "
                           f"be fetched ({type(exc).__name__}: {exc}; after "
                           f"{time.monotonic() - t0:.1f} s)",
                           failures=("manifest.inaccessible",), manifest=manifest)
    c2pa = c2pa_module()
    try:
        store, _embedded = read_store(fmt, data, remote, trust)
    except c2pa.C2paError as exc:
        res = classify_error(exc, media_type=fmt)
        return make_result(res.state, f"remote manifest {url}: {res.reason}", failures=res.failures,
                           manifest=manifest)
    return result_from_store(store, media_type=fmt, embedded=False, remote_url=url)


# -- public API ---------------------------------------------------------------------------
def _default_trust(trust: TrustSettings | None) -> TrustSettings:
    return trust if trust is not None else TrustSettings()


def verify_bytes(data: bytes, media_type: str | None = None, *,
                 trust: TrustSettings | None = None,
                 sidecar: bytes | None = None) -> ProvenanceResult:
    """Verify the Content Credentials of a file held in memory.

    Parameters
    ----------
    data : bytes
        The file.
    media_type : str, optional
        What the file claims to be (e.g. from its extension). When the bytes are
        something else, the result is ``ERROR`` (the name lies); when omitted, the bytes
        decide.
    trust : TrustSettings, optional
        Trust anchors (default: none, so at best ``VALID_UNTRUSTED``).
    sidecar : bytes, optional
        A separate manifest store (``.c2pa``) for the file.

    Returns
    -------
    ProvenanceResult
        Never raises for bad input: malformed, truncated or unsupported files give
        ``ERROR`` (or ``ABSENT``) with the reason.
    """
    trust = _default_trust(trust)
    try:
        return _verify_bytes(data, media_type, trust, sidecar)
    except DependencyError:
        raise
    except Exception as exc:  # a verifier must answer, not crash (logged below)
        log.debug("verification failed", exc_info=True)
        return make_result(ProvenanceState.ERROR,
                           f"verification failed unexpectedly: {type(exc).__name__}: {exc}")


def _verify_bytes(data: bytes, media_type: str | None, trust: TrustSettings,
                  sidecar: bytes | None) -> ProvenanceResult:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    data = bytes(data)
    declared = normalize_media_type(media_type)
    if not data:
        return make_result(ProvenanceState.ERROR, "the file is empty")
    sniffed = sniff(data)
    if declared and sniffed and declared != sniffed and (
            declared in _SNIFFABLE or (declared == "text/plain" and sniffed in _SNIFFABLE)
            or (sniffed == "text/plain" and declared in _SNIFFABLE)):
        return make_result(
            ProvenanceState.ERROR,
            f"the name says {declared} but the content is {sniffed}; verify the file under "
            "its real type (a renamed file is not what it claims to be)",
            manifest={"declared_media_type": declared, "detected_media_type": sniffed})
    if declared and sniffed is None and declared in _SNIFFABLE:
        return make_result(ProvenanceState.ERROR,
                           f"the name says {declared} but the content is not a {declared} file",
                           manifest={"declared_media_type": declared})
    if sniffed == "text/plain" and (declared is None or declared.startswith("text/")):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return make_result(ProvenanceState.ERROR, "the text is not valid UTF-8")
        return verify_text(text, trust=trust, sidecar=sidecar)
    fmt = sniffed if sniffed and sniffed != "text/plain" else declared
    return _verify_with_c2pa(data, fmt, trust, sidecar)


def verify_path(path: str | os.PathLike[str], *, trust: TrustSettings | None = None,
                sidecar: str | os.PathLike[str] | None = None) -> ProvenanceResult:
    """Verify a file; its extension is the claimed media type.

    A sidecar manifest (``<name>.c2pa``) is used when given, or when it exists next to
    the file and the file has no embedded Content Credentials.
    """
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        return make_result(ProvenanceState.ERROR, f"{str(p)!r}: no such file")
    except IsADirectoryError:
        return make_result(ProvenanceState.ERROR, f"{str(p)!r} is a directory")
    except OSError as exc:
        return make_result(ProvenanceState.ERROR,
                           f"{str(p)!r}: cannot read ({exc.strerror or exc})")
    ext = p.suffix.lower()
    declared = MEDIA_TYPES.get(ext, (None, None))[0] or _EXTRA_EXTENSIONS.get(ext)
    side: bytes | None = None
    side_path = Path(sidecar).expanduser() if sidecar is not None else p.with_suffix(".c2pa")
    if sidecar is not None or (side_path != p and side_path.is_file()):
        try:
            side = side_path.read_bytes()
        except OSError as exc:
            return make_result(ProvenanceState.ERROR,
                               f"sidecar {str(side_path)!r}: cannot read ({exc.strerror or exc})")
    result = verify_bytes(data, declared, trust=trust, sidecar=side if sidecar else None)
    if side is not None and sidecar is None and result.state is ProvenanceState.ABSENT:
        result = verify_bytes(data, declared, trust=trust, sidecar=side)
    return result


def verify_text(text: str | bytes, *, trust: TrustSettings | None = None,
                sidecar: bytes | None = None) -> ProvenanceResult:
    """Verify text: with a sidecar manifest store, or its embedded C2PA text wrapper.

    The text is NFC-normalised (as it was when signed), the wrapper located, and the hard
    binding checked by guardrail: the ``c2pa.hash.data`` exclusion must be exactly the
    wrapper's byte range and the hash of the rest must match. Signature, certificate,
    trust and assertion checks come from c2pa (see :mod:`guardrail.provenance.text`).
    """
    trust = _default_trust(trust)
    try:
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError:
                return make_result(ProvenanceState.ERROR, "the text is not valid UTF-8")
        if sidecar is not None:
            return _verify_with_c2pa(text.encode("utf-8"), "text/plain", trust, sidecar)
        return _verify_embedded_text(text, trust)
    except DependencyError:
        raise
    except Exception as exc:  # a verifier must answer, not crash (logged below)
        log.debug("text verification failed", exc_info=True)
        return make_result(ProvenanceState.ERROR,
                           f"verification failed unexpectedly: {type(exc).__name__}: {exc}")


_HASHES = {"sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}


def _check_text_binding(full: bytes, start: int, length: int,
                        hash_assertion: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """guardrail's check of the text hard binding; returns failure items (empty: OK)."""
    code = "assertion.dataHash.mismatch"
    if not isinstance(hash_assertion, Mapping):
        return [{"code": "claim.hardBindings.missing",
                 "explanation": "the manifest has no c2pa.hash.data assertion for the text"}]
    exclusions = [(int(e.get("start", -1)), int(e.get("length", -1)))
                  for e in hash_assertion.get("exclusions") or []]
    if exclusions != [(start, length)]:
        return [{"code": code, "explanation":
                 f"the data hash excludes {exclusions}, not the text wrapper "
                 f"(bytes {start}..{start + length})"}]
    alg = str(hash_assertion.get("alg") or "sha256").lower()
    if alg not in _HASHES:
        return [{"code": "algorithm.unsupported", "explanation": f"hash algorithm {alg!r}"}]
    expected = hash_assertion.get("hash")
    if isinstance(expected, str):
        try:
            expected = base64.b64decode(expected)
        except ValueError:
            expected = b""
    elif isinstance(expected, list):
        expected = bytes(expected)
    h = _HASHES[alg]()
    h.update(full[:start])
    h.update(full[start + length:])
    if h.digest() != expected:
        return [{"code": code, "explanation":
                 "the text does not match the hash in its Content Credentials (it was edited)"}]
    return []


def _verify_embedded_text(text: str, trust: TrustSettings) -> ProvenanceResult:
    full = unicodedata.normalize("NFC", text)
    try:
        wrapper = find_text_wrapper(full)
    except TextWrapperError as exc:
        return make_result(ProvenanceState.INVALID, f"the embedded Content Credentials are "
                           f"unusable: {exc}", failures=(exc.code,),
                           manifest={"media_type": "text/plain", "embedded": True})
    if wrapper is None:
        return make_result(ProvenanceState.ABSENT,
                           "no Content Credentials in this text (no C2PA text wrapper and no "
                           "sidecar manifest)")
    full_bytes = full.encode("utf-8")
    c2pa = c2pa_module()
    try:
        store, _embedded = read_store("text/plain", full_bytes, wrapper.manifest, trust,
                                      detailed=True)
    except c2pa.C2paError as exc:
        res = classify_error(exc, media_type="text/plain")
        if res.state is ProvenanceState.ABSENT:  # a wrapper whose content is not a manifest
            return make_result(ProvenanceState.INVALID,
                               f"the text wrapper does not hold a C2PA manifest ({exc})",
                               failures=("manifest.text.corruptedWrapper",))
        return res
    detailed = store.pop("_detailed", {}) or {}
    dm = (detailed.get("manifests") or {}).get(detailed.get("active_manifest") or "") or {}
    hash_assertion = (dm.get("assertion_store") or {}).get("c2pa.hash.data")
    ours = _check_text_binding(full_bytes, wrapper.start, wrapper.length, hash_assertion)
    result = result_from_store(store, media_type="text/plain", embedded=True,
                               override_failures=ours,
                               drop_codes=("assertion.dataHash.mismatch",))
    manifest = dict(result.manifest or {})
    manifest["text_wrapper"] = {"start": wrapper.start, "length": wrapper.length,
                                "manifest_bytes": len(wrapper.manifest)}
    return make_result(result.state, result.reason or "", failures=result.failures,
                       manifest=manifest, signer=result.signer, ai_generated=result.ai_generated)
