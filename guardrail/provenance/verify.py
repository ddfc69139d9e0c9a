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
import io
import json
import logging
import os
import re
import time
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._types import ProvenanceResult, ProvenanceState
from ..errors import DependencyError
from ..media import MEDIA_TYPES
from ._c2pa import (
    c2pa_context,
    c2pa_module,
    call_with_deadline,
    normalize_media_type,
    sniff,
)
from .keys import CertificateError

__all__ = [
    "AI_SOURCE_TYPES",
    "NON_AI_SOURCE_TYPES",
    "TrustSettings",
    "result_to_dict",
    "verify_bytes",
    "verify_path",
    "verify_text",
]

log = logging.getLogger(__name__)

#: IPTC digital source types that declare generation by a trained model.
AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
#: Types that declare another origin (capture, human creation, non-AI algorithms).
NON_AI_SOURCE_TYPES = frozenset({
    "digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "print",
    "minorHumanEdits", "humanEdits", "digitalCreation", "digitalArt", "screenCapture",
    "virtualRecording", "composite", "compositeCapture", "algorithmicMedia",
    "dataDrivenMedia", "algorithmicallyEnhanced", "compositeSynthetic", "trainedAlgorithmicData",
})
# failure codes that only say "not trusted here"; the rest make a manifest invalid
_UNTRUSTED_ONLY = frozenset({"signingCredential.untrusted", "cawg.x509.credential.untrusted",
                             "timeStamp.untrusted"})
# types guardrail can check against the bytes' magic numbers
_SNIFFABLE = frozenset({"image/png", "image/jpeg", "image/webp", "audio/wav", "audio/flac",
                        "audio/mpeg", "image/gif", "image/tiff"})
_EXTRA_EXTENSIONS = {".gif": "image/gif", ".tif": "image/tiff", ".tiff": "image/tiff",
                     ".avif": "image/avif", ".heic": "image/heic", ".heif": "image/heif",
                     ".mp4": "video/mp4", ".m4a": "audio/mp4", ".mov": "video/quicktime",
                     ".pdf": "application/pdf", ".svg": "image/svg+xml", ".md": "text/plain",
                     ".dng": "image/dng", ".c2pa": "application/c2pa"}
_REMOTE_RE = re.compile(r"remote manifests? from url (\S+)", re.IGNORECASE)
_MAX_REMOTE_BYTES = 16 * 1024 * 1024


# -- trust --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrustSettings:
    """What verification trusts, and whether it may use the network.

    Parameters
    ----------
    anchors_pem : str
        PEM bundle of trust anchors (root certificates). Empty: nothing is trusted, so
        the best possible state is ``VALID_UNTRUSTED``.
    sources : tuple of str
        Where the anchors came from (file names), for reports.
    remote_manifest_fetch : bool
        Fetch manifests stored remotely (off by default: verification is offline).
    remote_fetch_timeout_s : float
        Deadline for such a fetch.
    """

    anchors_pem: str = ""
    sources: tuple[str, ...] = ()
    remote_manifest_fetch: bool = False
    remote_fetch_timeout_s: float = 4.0

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike[str]], *,
                   remote_manifest_fetch: bool = False,
                   remote_fetch_timeout_s: float = 4.0) -> TrustSettings:
        """Trust the root certificates in the given PEM files.

        Raises
        ------
        CertificateError
            A file is missing or holds no PEM certificate.
        """
        from cryptography import x509

        pems, sources = [], []
        for path in paths:
            p = Path(path).expanduser()
            try:
                data = p.read_bytes()
            except OSError as exc:
                raise CertificateError(
                    f"trust anchors {str(p)!r}: cannot read ({exc.strerror or exc})") from None
            try:
                certs = x509.load_pem_x509_certificates(data)
            except ValueError:
                raise CertificateError(
                    f"trust anchors {str(p)!r}: no PEM certificates found") from None
            pems.append("".join(c.public_bytes(_pem_encoding()).decode("ascii") for c in certs))
            sources.append(str(p))
        return cls(anchors_pem="".join(pems), sources=tuple(sources),
                   remote_manifest_fetch=remote_manifest_fetch,
                   remote_fetch_timeout_s=remote_fetch_timeout_s)

    @classmethod
    def from_config(cls, config: Any) -> TrustSettings:
        """The dev root (``provenance.trust_dev_root``, if it exists) plus the PEM bundles
        in ``provenance.trust_anchors``."""
        from .settings import ProvenanceSettings

        return ProvenanceSettings.from_config(config).trust()

    def c2pa_settings(self) -> dict[str, Any]:
        """c2pa settings for reading: trust on, every network fetch off."""
        settings: dict[str, Any] = {
            "verify": {"verify_after_reading": True, "verify_trust": True,
                       "verify_timestamp_trust": True, "ocsp_fetch": False,
                       "remote_manifest_fetch": False},
        }
        if self.anchors_pem:
            settings["trust"] = {"trust_anchors": self.anchors_pem}
        return settings


def _pem_encoding() -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.PEM


# -- results ------------------------------------------------------------------------------
def _result(state: ProvenanceState, reason: str, *, failures: Sequence[str] = (),
            manifest: Mapping[str, Any] | None = None, signer: str | None = None,
            ai_generated: bool | None = None) -> ProvenanceResult:
    return ProvenanceResult(state=state, failures=tuple(failures), signer=signer,
                            ai_generated=ai_generated, manifest=manifest, reason=reason)


def result_to_dict(result: ProvenanceResult) -> dict[str, Any]:
    """The JSON shape of a :class:`~guardrail.ProvenanceResult` (for ``--json``)."""
    from .._types import _jsonable

    return {"state": result.state.value, "trusted": result.state is ProvenanceState.TRUSTED,
            "reason": result.reason, "failures": list(result.failures),
            "signer": result.signer, "ai_generated": result.ai_generated,
            "manifest": _jsonable(result.manifest) if result.manifest is not None else None}


def _dedupe(codes: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(c for c in codes if c))


def _source_type_name(value: Any) -> str:
    return str(value or "").strip().rstrip("/").rsplit("/", 1)[-1]


def _ai_from_actions(actions: Sequence[Mapping[str, Any]]) -> bool | None:
    names = [_source_type_name(a.get("digitalSourceType")) for a in actions
             if a.get("digitalSourceType")]
    if any(n in AI_SOURCE_TYPES for n in names):
        return True
    if names and all(n in NON_AI_SOURCE_TYPES for n in names):
        return False
    return None


def _recorded_failures(ingredient: Mapping[str, Any]) -> list[str]:
    """Failure codes recorded in an ingredient assertion when it was used."""
    codes = [str(v.get("code", "")) for v in ingredient.get("validation_status") or []
             if isinstance(v, Mapping)]
    recorded = ingredient.get("validation_results") or {}
    if isinstance(recorded, Mapping):
        active = recorded.get("activeManifest") or {}
        codes += [str(v.get("code", "")) for v in active.get("failure") or []
                  if isinstance(v, Mapping)]
    return _dedupe(codes)


def _actions_of(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for assertion in manifest.get("assertions") or []:
        label = str(assertion.get("label", ""))
        if label.startswith("c2pa.actions"):
            data = assertion.get("data") or {}
            out.extend(dict(a) for a in data.get("actions") or [] if isinstance(a, Mapping))
    return out


def _assertion(manifest: Mapping[str, Any], label: str) -> Any:
    for assertion in manifest.get("assertions") or []:
        if assertion.get("label") == label:
            return assertion.get("data")
    return None


def _agent(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: value[k] for k in ("name", "version") if k in value} or dict(value)
    return value


def _summarize(store: Mapping[str, Any]) -> tuple[dict[str, Any], bool | None]:
    """Everything but the failure codes, from c2pa's JSON report."""
    label = store.get("active_manifest")
    manifests = store.get("manifests") or {}
    am = manifests.get(label) or {}
    results = store.get("validation_results") or {}
    active = results.get("activeManifest") or {}
    sig = am.get("signature_info") or {}
    tsa, tsa_trusted = None, None
    for item in [*(active.get("success") or []), *(active.get("informational") or []),
                 *(active.get("failure") or [])]:
        code = str(item.get("code", ""))
        if code.startswith("timeStamp."):
            explanation = str(item.get("explanation", ""))
            if ": " in explanation and tsa is None:
                tsa = explanation.split(": ", 1)[1]
            if code == "timeStamp.trusted":
                tsa_trusted = True
            elif code == "timeStamp.untrusted":
                tsa_trusted = False
    actions = _actions_of(am)
    ai = _ai_from_actions(actions)
    if ai is None:  # an edit of a generated asset: look at its parent's manifest
        for ing in am.get("ingredients") or []:
            parent = manifests.get(ing.get("active_manifest") or "") or {}
            if ing.get("relationship") == "parentOf" and parent:
                ai = _ai_from_actions(_actions_of(parent))
                break
    deltas: dict[str, list[dict[str, Any]]] = {}
    for delta in results.get("ingredientDeltas") or []:
        uri = str(delta.get("ingredientAssertionURI", ""))
        fails = (delta.get("validationDeltas") or {}).get("failure") or []
        deltas[uri] = [{"code": f.get("code"), "explanation": f.get("explanation")}
                       for f in fails]
    ingredients = []
    for ing in am.get("ingredients") or []:
        ing_label = str(ing.get("label", ""))
        fails = next((v for uri, v in deltas.items()
                      if ing_label and uri.endswith(f"{label}/c2pa.assertions/{ing_label}")), [])
        ingredients.append({
            "title": ing.get("title"), "format": ing.get("format"),
            "relationship": ing.get("relationship"), "label": ing_label or None,
            "has_manifest": bool(ing.get("active_manifest")),
            "failures": _dedupe(f["code"] for f in fails),
            "recorded_failures": _recorded_failures(ing),
        })
    # what earlier claim generators recorded about the ingredients they used, anywhere in
    # the provenance chain (an invalid ingredient does not invalidate the active manifest)
    history = []
    for m_label, m in manifests.items():
        for ing in m.get("ingredients") or []:
            codes = _recorded_failures(ing)
            if codes:
                history.append({"manifest": m_label, "ingredient": ing.get("title"),
                                "failures": codes})
    generators = [_agent(g) for g in am.get("claim_generator_info") or []]
    wm = _assertion(am, "c2pa.soft-binding")
    tm = _assertion(am, "cawg.training-mining")
    return {
        "label": label,
        "title": am.get("title"),
        "claim_generator": generators or am.get("claim_generator"),
        "signer": {"common_name": sig.get("common_name"), "issuer": sig.get("issuer"),
                   "serial_number": sig.get("cert_serial_number"), "algorithm": sig.get("alg")},
        "signing_time": sig.get("time"),
        "timestamp_authority": tsa,
        "timestamp_trusted": tsa_trusted,
        "actions": [{k: (_agent(v) if k == "softwareAgent" else v) for k, v in a.items()}
                    for a in actions],
        "ingredients": ingredients,
        "ingredient_history_failures": history,
        "assertions": [a.get("label") for a in am.get("assertions") or []],
        "generation": _assertion(am, "org.guardrail.generation"),
        "soft_binding": wm,
        "training_mining": (tm or {}).get("entries") if isinstance(tm, Mapping) else None,
        "validation": {
            "c2pa_state": store.get("validation_state"),
            "failure": [{"code": f.get("code"), "explanation": f.get("explanation")}
                        for f in active.get("failure") or []],
            "informational": _dedupe(str(i.get("code", ""))
                                     for i in active.get("informational") or []),
        },
        "manifests_in_store": len(manifests),
    }, ai


def _state_for(failures: Sequence[str], success: Iterable[str], c2pa_state: str | None
               ) -> ProvenanceState:
    """c2pa's verdict when it has one (it knows which codes are fatal); from the failure
    codes when guardrail re-decided part of the validation (embedded text)."""
    trusted = "signingCredential.trusted" in set(success)
    state = (c2pa_state or "").lower()
    if state == "invalid":
        return ProvenanceState.INVALID
    if state == "trusted":
        return ProvenanceState.TRUSTED if trusted else ProvenanceState.VALID_UNTRUSTED
    if state == "valid":
        return ProvenanceState.VALID_UNTRUSTED
    if any(f not in _UNTRUSTED_ONLY for f in failures):
        return ProvenanceState.INVALID
    if trusted and not failures:
        return ProvenanceState.TRUSTED
    return ProvenanceState.VALID_UNTRUSTED


def _from_store(store: Mapping[str, Any], *, media_type: str | None, embedded: bool | None,
                remote_url: str | None = None, override_failures: list[dict] | None = None,
                drop_codes: Iterable[str] = ()) -> ProvenanceResult:
    summary, ai = _summarize(store)
    active = (store.get("validation_results") or {}).get("activeManifest") or {}
    drop = set(drop_codes)
    failure_items = [f for f in active.get("failure") or [] if f.get("code") not in drop]
    failure_items += override_failures or []
    failures = _dedupe(str(f.get("code", "")) for f in failure_items)
    success = [str(s.get("code", "")) for s in active.get("success") or []]
    c2pa_state = store.get("validation_state")
    if drop or override_failures is not None:
        c2pa_state = None  # guardrail re-decided the hard binding (embedded text)
        summary["validation"]["failure"] = [
            {"code": f.get("code"), "explanation": f.get("explanation")} for f in failure_items]
        summary["validation"]["guardrail_checked"] = ["c2pa.hash.data (text wrapper)"]
    state = _state_for(failures, success, c2pa_state)
    summary.update(media_type=media_type, embedded=embedded, remote_url=remote_url)
    signer = summary["signer"].get("common_name") or summary["signer"].get("issuer")
    who = f"{signer!r}" if signer else "an unnamed signer"
    issuer = summary["signer"].get("issuer")
    if state is ProvenanceState.TRUSTED:
        reason = (f"intact Content Credentials signed by {who}"
                  f"{f' (issued by {issuer!r})' if issuer else ''}, which chains to a "
                  "configured trust anchor")
    elif state is ProvenanceState.VALID_UNTRUSTED:
        reason = (f"the Content Credentials are intact, but the signer {who} does not chain "
                  "to a configured trust anchor, so they are not trusted here "
                  f"({', '.join(failures) or 'signingCredential.untrusted'})")
    else:
        first = next((f for f in failure_items if f.get("code") not in _UNTRUSTED_ONLY),
                     failure_items[0] if failure_items else {})
        reason = ("the Content Credentials do not validate: "
                  f"{first.get('code', 'invalid')} ({first.get('explanation', 'see failures')})")
    return _result(state, reason, failures=failures, manifest=summary, signer=signer,
                   ai_generated=ai)


# -- c2pa reader --------------------------------------------------------------------------
def _reader_json(fmt: str | None, data: bytes, manifest_data: bytes | None,
                 trust: TrustSettings, *, detailed: bool = False
                 ) -> tuple[dict[str, Any], bool | None]:
    """c2pa's JSON report (plus ``_detailed``: the detailed report, when asked) and
    whether the manifest was embedded in the asset."""
    c2pa = c2pa_module()
    ctx = c2pa_context(trust.c2pa_settings())
    reader = c2pa.Reader(fmt, io.BytesIO(data), manifest_data, context=ctx)
    try:
        store = json.loads(reader.json())
        extra = json.loads(reader.detailed_json()) if detailed else None
        try:
            embedded = bool(reader.is_embedded())
        except c2pa.C2paError:
            embedded = None
    finally:
        reader.close()
    if extra is not None:
        store["_detailed"] = extra
    return store, embedded


def _fetch_remote(url: str, timeout_s: float) -> bytes:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url}")

    def get() -> bytes:
        req = urllib.request.Request(url, headers={"Accept": "application/c2pa"})
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            data = resp.read(_MAX_REMOTE_BYTES + 1)
        if len(data) > _MAX_REMOTE_BYTES:
            raise ValueError("the remote manifest is larger than 16 MB")
        return data

    return call_with_deadline(get, timeout_s, what="fetching the remote manifest")


def _classify_error(exc: Exception, *, media_type: str | None) -> ProvenanceResult:
    text = str(exc)
    low = text.lower()
    kind = type(exc).__name__
    what = media_type or "file"
    if "ManifestNotFound" in kind or "no jumbf data found" in low:
        return _result(ProvenanceState.ABSENT,
                       f"no Content Credentials (no C2PA manifest) in this {what}")
    if "unknown algorithm" in low or "unsupported algorithm" in low:
        return _result(ProvenanceState.INVALID,
                       f"the manifest uses a hash or signature algorithm that C2PA does not "
                       f"define, so it cannot be valid (c2pa: {text})",
                       failures=("algorithm.unsupported",))
    if "prerelease" in low:
        return _result(ProvenanceState.ERROR,
                       "the manifest is in a pre-release (draft) C2PA format that current "
                       f"verifiers no longer accept; it cannot be verified (c2pa: {text})")
    if "NotSupported" in kind or "type is unsupported" in low:
        return _result(ProvenanceState.ERROR,
                       f"unsupported format: Content Credentials cannot be read from this "
                       f"{what} (c2pa: {text})")
    if "could not be parsed" in low or "Io" in kind or "eof" in low:
        return _result(ProvenanceState.ERROR,
                       f"the {what} is truncated or malformed and cannot be checked (c2pa: {text})")
    if any(k in kind for k in ("Verify", "Decoding", "Json", "Manifest")) or "jumd" in low \
            or "jumbf" in low:
        return _result(ProvenanceState.ERROR,
                       f"the Content Credentials in this {what} are truncated or malformed and "
                       f"cannot be checked (c2pa: {text})")
    return _result(ProvenanceState.ERROR, f"c2pa could not verify this {what}: {kind}: {text}")


def _verify_with_c2pa(data: bytes, fmt: str | None, trust: TrustSettings,
                      manifest_data: bytes | None = None) -> ProvenanceResult:
    c2pa = c2pa_module()
    try:
        store, embedded = _reader_json(fmt, data, manifest_data, trust)
    except c2pa.C2paError as exc:
        match = _REMOTE_RE.search(str(exc))
        if match is None:
            return _classify_error(exc, media_type=fmt)
        url = match.group(1)
        return _verify_remote(data, fmt, url, trust)
    return _from_store(store, media_type=fmt, embedded=embedded)


def _verify_remote(data: bytes, fmt: str | None, url: str,
                   trust: TrustSettings) -> ProvenanceResult:
    manifest = {"remote_url": url, "media_type": fmt}
    if not trust.remote_manifest_fetch:
        return _result(ProvenanceState.ERROR,
                       f"the Content Credentials are stored remotely at {url} and remote "
                       "fetching is off (verification is offline); they could not be checked "
                       "(set provenance.remote_manifest_fetch = true to fetch them)",
                       failures=("manifest.inaccessible",), manifest=manifest)
    t0 = time.monotonic()
    try:
        remote = _fetch_remote(url, trust.remote_fetch_timeout_s)
    except (OSError, ValueError, TimeoutError, urllib.error.URLError) as exc:
        return _result(ProvenanceState.ERROR,
                       f"the Content Credentials are stored remotely at {url}, which could not "
                       f"be fetched ({type(exc).__name__}: {exc}; after "
                       f"{time.monotonic() - t0:.1f} s)",
                       failures=("manifest.inaccessible",), manifest=manifest)
    c2pa = c2pa_module()
    try:
        store, _embedded = _reader_json(fmt, data, remote, trust)
    except c2pa.C2paError as exc:
        res = _classify_error(exc, media_type=fmt)
        return _result(res.state, f"remote manifest {url}: {res.reason}", failures=res.failures,
                       manifest=manifest)
    return _from_store(store, media_type=fmt, embedded=False, remote_url=url)


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
        return _result(ProvenanceState.ERROR,
                       f"verification failed unexpectedly: {type(exc).__name__}: {exc}")


def _verify_bytes(data: bytes, media_type: str | None, trust: TrustSettings,
                  sidecar: bytes | None) -> ProvenanceResult:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    data = bytes(data)
    declared = normalize_media_type(media_type)
    if not data:
        return _result(ProvenanceState.ERROR, "the file is empty")
    sniffed = sniff(data)
    if declared and sniffed and declared != sniffed and (
            declared in _SNIFFABLE or (declared == "text/plain" and sniffed in _SNIFFABLE)
            or (sniffed == "text/plain" and declared in _SNIFFABLE)):
        return _result(
            ProvenanceState.ERROR,
            f"the name says {declared} but the content is {sniffed}; verify the file under "
            "its real type (a renamed file is not what it claims to be)",
            manifest={"declared_media_type": declared, "detected_media_type": sniffed})
    if declared and sniffed is None and declared in _SNIFFABLE:
        return _result(ProvenanceState.ERROR,
                       f"the name says {declared} but the content is not a {declared} file",
                       manifest={"declared_media_type": declared})
    if sniffed == "text/plain" and (declared is None or declared.startswith("text/")):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return _result(ProvenanceState.ERROR, "the text is not valid UTF-8")
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
        return _result(ProvenanceState.ERROR, f"{str(p)!r}: no such file")
    except IsADirectoryError:
        return _result(ProvenanceState.ERROR, f"{str(p)!r} is a directory")
    except OSError as exc:
        return _result(ProvenanceState.ERROR, f"{str(p)!r}: cannot read ({exc.strerror or exc})")
    ext = p.suffix.lower()
    declared = MEDIA_TYPES.get(ext, (None, None))[0] or _EXTRA_EXTENSIONS.get(ext)
    side: bytes | None = None
    side_path = Path(sidecar).expanduser() if sidecar is not None else p.with_suffix(".c2pa")
    if sidecar is not None or (side_path != p and side_path.is_file()):
        try:
            side = side_path.read_bytes()
        except OSError as exc:
            return _result(ProvenanceState.ERROR,
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
                return _result(ProvenanceState.ERROR, "the text is not valid UTF-8")
        if sidecar is not None:
            return _verify_with_c2pa(text.encode("utf-8"), "text/plain", trust, sidecar)
        return _verify_embedded_text(text, trust)
    except DependencyError:
        raise
    except Exception as exc:  # a verifier must answer, not crash (logged below)
        log.debug("text verification failed", exc_info=True)
        return _result(ProvenanceState.ERROR,
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
    from .text import TextWrapperError, find_text_wrapper

    full = unicodedata.normalize("NFC", text)
    try:
        wrapper = find_text_wrapper(full)
    except TextWrapperError as exc:
        return _result(ProvenanceState.INVALID, f"the embedded Content Credentials are "
                       f"unusable: {exc}", failures=(exc.code,),
                       manifest={"media_type": "text/plain", "embedded": True})
    if wrapper is None:
        return _result(ProvenanceState.ABSENT,
                       "no Content Credentials in this text (no C2PA text wrapper and no "
                       "sidecar manifest)")
    full_bytes = full.encode("utf-8")
    c2pa = c2pa_module()
    try:
        store, _embedded = _reader_json("text/plain", full_bytes, wrapper.manifest, trust,
                                        detailed=True)
    except c2pa.C2paError as exc:
        res = _classify_error(exc, media_type="text/plain")
        if res.state is ProvenanceState.ABSENT:  # a wrapper whose content is not a manifest
            return _result(ProvenanceState.INVALID,
                           f"the text wrapper does not hold a C2PA manifest ({exc})",
                           failures=("manifest.text.corruptedWrapper",))
        return res
    detailed = store.pop("_detailed", {}) or {}
    dm = (detailed.get("manifests") or {}).get(detailed.get("active_manifest") or "") or {}
    hash_assertion = (dm.get("assertion_store") or {}).get("c2pa.hash.data")
    ours = _check_text_binding(full_bytes, wrapper.start, wrapper.length, hash_assertion)
    result = _from_store(store, media_type="text/plain", embedded=True, override_failures=ours,
                         drop_codes=("assertion.dataHash.mismatch",))
    manifest = dict(result.manifest or {})
    manifest["text_wrapper"] = {"start": wrapper.start, "length": wrapper.length,
                                "manifest_bytes": len(wrapper.manifest)}
    return _result(result.state, result.reason or "", failures=result.failures,
                   manifest=manifest, signer=result.signer, ai_generated=result.ai_generated)

