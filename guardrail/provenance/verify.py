"""Verification: what an asset's Content Credentials say, and whether to believe them.

States (:class:`~guardrail.ProvenanceState`):

``TRUSTED``
    Intact and signed by a certificate that chains to a configured trust anchor.
``VALID_UNTRUSTED``
    Intact (signature, hashes, bindings) but the signer is not trusted here: never
    reported as trusted.
``INVALID``
    Present but failing validation: tampered asset or assertion, bad signature,
    transplanted manifest, ... (a signed text whose visible words are unchanged - only white
    space or Unicode form differ - is INVALID too, with ``manifest["visible_text"]``
    ``{"unchanged": True}``: see :mod:`guardrail.provenance.text`)
``ABSENT``
    No Content Credentials (never had any, or stripped by re-encoding).
``ERROR``
    No verdict could be reached: unreadable or truncated file, unsupported format, a
    signing or hash algorithm this verifier does not support (``algorithm.unsupported``), a
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

:func:`verify_path` reads a file once, within ``[limits] max_file_bytes``, refusing special
files (FIFOs, devices, sockets, directories) before reading them, and reads its Content
Credentials from those bytes within ``[limits] max_check_seconds``. A file that holds a
C2PA manifest store that c2pa cannot find (damaged boxes) is ``ERROR``, never ``ABSENT``.
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
from ..config import Limits
from ..errors import DependencyError, TextWrapperError, UnsupportedMediaError
from ..media import MEDIA_TYPES, read_bytes
from ._c2pa import c2pa_module, normalize_media_type, sniff
from .reader import fetch_remote_manifest, read_store
from .text import TEXT_DIGEST_LABEL, find_text_wrapper, visible_text_digest
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
#: the JUMBF description of a C2PA manifest store: the type UUID ``c2pa`` +
#: ``0011-0010-8000-00AA00389B71`` (ISO/IEC 19566-5), present in every embedded store
_C2PA_STORE_UUID = bytes.fromhex("6332706100110010800000aa00389b71")


def result_to_dict(result: ProvenanceResult) -> dict[str, Any]:
    """The JSON shape of a :class:`~guardrail.ProvenanceResult` (for ``--json``)."""
    return {"state": result.state.value, "trusted": result.state is ProvenanceState.TRUSTED,
            "reason": result.reason, "failures": list(result.failures),
            "signer": result.signer, "ai_generated": result.ai_generated,
            "manifest": _jsonable(result.manifest) if result.manifest is not None else None}


def _timed_out(exc: TimeoutError, timeout_s: float | None) -> ProvenanceResult:
    return make_result(ProvenanceState.ERROR,
                       f"the Content Credentials could not be checked: {exc} "
                       f"(limits.max_check_seconds = {timeout_s:g})")


def _verify_with_c2pa(data: bytes, fmt: str | None, trust: TrustSettings,
                      manifest_data: bytes | None = None,
                      timeout_s: float | None = None) -> ProvenanceResult:
    c2pa = c2pa_module()
    try:
        store, embedded = read_store(fmt, data, manifest_data, trust, timeout_s=timeout_s)
    except TimeoutError as exc:
        return _timed_out(exc, timeout_s)
    except c2pa.C2paError as exc:
        match = _REMOTE_RE.search(str(exc))
        if match is None:
            return classify_error(exc, media_type=fmt)
        url = match.group(1)
        return _verify_remote(data, fmt, url, trust, timeout_s)
    return result_from_store(store, media_type=fmt, embedded=embedded)


def _verify_remote(data: bytes, fmt: str | None, url: str,
                   trust: TrustSettings, timeout_s: float | None = None) -> ProvenanceResult:
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
        store, _embedded = read_store(fmt, data, remote, trust, timeout_s=timeout_s)
    except TimeoutError as exc:
        return _timed_out(exc, timeout_s)
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
                 sidecar: bytes | None = None,
                 timeout_s: float | None = None) -> ProvenanceResult:
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
    timeout_s : float, optional
        Deadline for reading the Content Credentials (``ERROR`` past it).

    Returns
    -------
    ProvenanceResult
        Never raises for bad input: malformed, truncated or unsupported files give
        ``ERROR`` (or ``ABSENT``) with the reason; a C2PA manifest store that is there but
        cannot be found by c2pa (damaged) is ``ERROR``.
    """
    trust = _default_trust(trust)
    try:
        return _verify_bytes(data, media_type, trust, sidecar, timeout_s)
    except DependencyError:
        raise
    except Exception as exc:  # a verifier must answer, not crash (logged below)
        log.debug("verification failed", exc_info=True)
        return make_result(ProvenanceState.ERROR,
                           f"verification failed unexpectedly: {type(exc).__name__}: {exc}")


def _verify_bytes(data: bytes, media_type: str | None, trust: TrustSettings,
                  sidecar: bytes | None, timeout_s: float | None = None) -> ProvenanceResult:
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
        return verify_text(text, trust=trust, sidecar=sidecar, timeout_s=timeout_s)
    fmt = sniffed if sniffed and sniffed != "text/plain" else declared
    result = _verify_with_c2pa(data, fmt, trust, sidecar, timeout_s)
    if result.state is ProvenanceState.ABSENT and sidecar is None and _C2PA_STORE_UUID in data:
        return make_result(
            ProvenanceState.ERROR,
            f"the {fmt or 'file'} holds a C2PA manifest store that c2pa could not find or read "
            "(its boxes or the file around them are damaged); the Content Credentials cannot "
            "be checked", manifest={"media_type": fmt, "damaged_manifest_store": True})
    return result


def verify_path(path: str | os.PathLike[str], *, trust: TrustSettings | None = None,
                sidecar: str | os.PathLike[str] | None = None, data: bytes | None = None,
                limits: Limits | None = None) -> ProvenanceResult:
    """Verify a file; its extension is the claimed media type.

    A sidecar manifest (``<name>.c2pa``) is used when given, or when it exists next to
    the file and the file has no embedded Content Credentials.

    Parameters
    ----------
    path
        The file (read with :func:`guardrail.media.read_bytes`: regular files only, at
        most ``limits.max_file_bytes``) - unless its bytes are given as ``data``.
    data : bytes, optional
        The file's bytes, already read (the file is then not read again).
    limits : Limits, optional
        File-size limit and the deadline for reading the credentials (default: the
        documented defaults).

    Returns
    -------
    ProvenanceResult
        Never raises for bad input: a missing, special, oversized or unreadable file is
        ``ERROR`` with the reason.
    """
    limits = limits or Limits()
    p = Path(path).expanduser()
    if data is None:
        try:
            data = read_bytes(p, limits=limits)
        except UnsupportedMediaError as exc:
            return make_result(ProvenanceState.ERROR, str(exc))
    ext = p.suffix.lower()
    declared = MEDIA_TYPES.get(ext, (None, None))[0] or _EXTRA_EXTENSIONS.get(ext)
    side: bytes | None = None
    side_path = Path(sidecar).expanduser() if sidecar is not None else p.with_suffix(".c2pa")
    if sidecar is not None or (side_path != p and side_path.is_file()):
        try:
            side = read_bytes(side_path, limits=limits)
        except UnsupportedMediaError as exc:
            return make_result(ProvenanceState.ERROR, f"sidecar: {exc}")
    timeout = limits.max_check_seconds
    result = verify_bytes(data, declared, trust=trust, sidecar=side if sidecar else None,
                          timeout_s=timeout)
    if side is not None and sidecar is None and result.state is ProvenanceState.ABSENT:
        result = verify_bytes(data, declared, trust=trust, sidecar=side, timeout_s=timeout)
    return result


def verify_text(text: str | bytes, *, trust: TrustSettings | None = None,
                sidecar: bytes | None = None, timeout_s: float | None = None
                ) -> ProvenanceResult:
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
            result = _verify_with_c2pa(text.encode("utf-8"), "text/plain", trust, sidecar,
                                       timeout_s)
        else:
            result = _verify_embedded_text(text, trust, timeout_s)
        return _with_visible_text(result, text)
    except DependencyError:
        raise
    except Exception as exc:  # a verifier must answer, not crash (logged below)
        log.debug("text verification failed", exc_info=True)
        return make_result(ProvenanceState.ERROR,
                           f"verification failed unexpectedly: {type(exc).__name__}: {exc}")


def _with_visible_text(result: ProvenanceResult, text: str) -> ProvenanceResult:
    """Compare the visible text with the digest signed in ``org.guardrail.text``: adds
    ``manifest["visible_text"]`` = ``{"unchanged", "signed", "observed"}`` when the manifest
    carries one (a text whose words are the signed ones but whose bytes changed is
    *reformatted*, not edited)."""
    manifest = result.manifest
    signed = (manifest or {}).get("text_digest") if isinstance(manifest, Mapping) else None
    if not isinstance(signed, Mapping) or not signed.get("visible_text_digest"):
        return result
    observed = visible_text_digest(text)
    unchanged = observed == signed["visible_text_digest"]
    new = dict(manifest or {})
    new["visible_text"] = {"unchanged": unchanged, "signed": signed["visible_text_digest"],
                           "observed": observed, "assertion": TEXT_DIGEST_LABEL}
    reason = result.reason or ""
    if result.state is ProvenanceState.INVALID and unchanged:
        reason += ("; the visible words are exactly the signed ones: only white space or the "
                   "Unicode form changed")
    return make_result(result.state, reason, failures=result.failures, manifest=new,
                       signer=result.signer, ai_generated=result.ai_generated)


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


def _verify_embedded_text(text: str, trust: TrustSettings,
                          timeout_s: float | None = None) -> ProvenanceResult:
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
                                      detailed=True, timeout_s=timeout_s)
    except TimeoutError as exc:
        return _timed_out(exc, timeout_s)
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
