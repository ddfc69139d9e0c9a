"""Verdicts: the state of Content Credentials, decided from c2pa's report.

:func:`result_from_store` decides the :class:`~guardrail.ProvenanceState` of a manifest
store from its validation codes (see :mod:`guardrail.provenance.verify` for the states)
and says why in words; :func:`classify_error` does the same for a c2pa error raised while
reading (no manifest, an unsupported or malformed file, an unknown algorithm).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._types import ProvenanceResult, ProvenanceState
from .reader import dedupe_codes, summarize_store

__all__ = ["classify_error", "make_result", "result_from_store"]

# failure codes that only say "not trusted here"; the rest make a manifest invalid
_UNTRUSTED_ONLY = frozenset({"signingCredential.untrusted", "cawg.x509.credential.untrusted",
                             "timeStamp.untrusted"})
# failure codes that say "this verifier cannot check it" (ERROR), not "it was changed"
_UNSUPPORTED = frozenset({"algorithm.unsupported"})


def make_result(state: ProvenanceState, reason: str, *, failures: Sequence[str] = (),
                manifest: Mapping[str, Any] | None = None, signer: str | None = None,
                ai_generated: bool | None = None) -> ProvenanceResult:
    """A :class:`~guardrail.ProvenanceResult` (``failures`` as a tuple)."""
    return ProvenanceResult(state=state, failures=tuple(failures), signer=signer,
                            ai_generated=ai_generated, manifest=manifest, reason=reason)


def _state_for(failures: Sequence[str], success: Iterable[str], c2pa_state: str | None
               ) -> ProvenanceState:
    """c2pa's verdict when it has one (it knows which codes are fatal); from the failure
    codes when guardrail re-decided part of the validation (embedded text)."""
    trusted = "signingCredential.trusted" in set(success)
    real = set(failures) - _UNTRUSTED_ONLY
    if real and real <= _UNSUPPORTED:
        return ProvenanceState.ERROR
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


def result_from_store(store: Mapping[str, Any], *, media_type: str | None, embedded: bool | None,
                      remote_url: str | None = None, override_failures: list[dict] | None = None,
                      drop_codes: Iterable[str] = ()) -> ProvenanceResult:
    """The result for c2pa's JSON report ``store``: state, reason, failure codes, summary.

    ``drop_codes`` are left out of c2pa's failures and ``override_failures`` added to them
    when guardrail checked part of the validation itself (the hard binding of embedded
    text); the state is then decided from the failure codes, not from c2pa's verdict.
    """
    summary, ai = summarize_store(store)
    active = (store.get("validation_results") or {}).get("activeManifest") or {}
    drop = set(drop_codes)
    failure_items = [f for f in active.get("failure") or [] if f.get("code") not in drop]
    failure_items += override_failures or []
    failures = dedupe_codes(str(f.get("code", "")) for f in failure_items)
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
    elif state is ProvenanceState.ERROR:
        reason = ("the manifest uses a signing or hash algorithm this verifier does not "
                  "support, so it can be neither confirmed nor called tampered "
                  f"({', '.join(failures)})")
    else:
        first = next((f for f in failure_items if f.get("code") not in _UNTRUSTED_ONLY),
                     failure_items[0] if failure_items else {})
        reason = ("the Content Credentials do not validate: "
                  f"{first.get('code', 'invalid')} ({first.get('explanation', 'see failures')})")
    return make_result(state, reason, failures=failures, manifest=summary, signer=signer,
                       ai_generated=ai)


def classify_error(exc: Exception, *, media_type: str | None) -> ProvenanceResult:
    """The result for a c2pa error raised while reading an asset of ``media_type``."""
    text = str(exc)
    low = text.lower()
    kind = type(exc).__name__
    what = media_type or "file"
    if "ManifestNotFound" in kind or "no jumbf data found" in low:
        return make_result(ProvenanceState.ABSENT,
                           f"no Content Credentials (no C2PA manifest) in this {what}")
    if "unknown algorithm" in low or "unsupported algorithm" in low:
        # not evidence of tampering: this verifier cannot check the signature at all
        return make_result(ProvenanceState.ERROR,
                           "the manifest uses a signing or hash algorithm this verifier does not "
                           f"support, so it can be neither confirmed nor called tampered "
                           f"(c2pa: {text})", failures=("algorithm.unsupported",))
    if "prerelease" in low:
        return make_result(ProvenanceState.ERROR,
                           "the manifest is in a pre-release (draft) C2PA format that current "
                           f"verifiers no longer accept; it cannot be verified (c2pa: {text})")
    if "NotSupported" in kind or "type is unsupported" in low:
        return make_result(ProvenanceState.ERROR,
                           f"unsupported format: Content Credentials cannot be read from this "
                           f"{what} (c2pa: {text})")
    if "could not be parsed" in low or "Io" in kind or "eof" in low:
        return make_result(ProvenanceState.ERROR,
                           f"the {what} is truncated or malformed and cannot be checked "
                           f"(c2pa: {text})")
    if any(k in kind for k in ("Verify", "Decoding", "Json", "Manifest")) or "jumd" in low \
            or "jumbf" in low:
        return make_result(ProvenanceState.ERROR,
                           f"the Content Credentials in this {what} are truncated or malformed and "
                           f"cannot be checked (c2pa: {text})")
    return make_result(ProvenanceState.ERROR, f"c2pa could not verify this {what}: {kind}: {text}")
