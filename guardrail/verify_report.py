"""The verification report of ``guardrail verify``: the ``--json`` document and the text a
person reads.

:func:`result_document` is the JSON contract (documented in the README, kept stable; a
web service returns exactly this document); :func:`render_text` is the human output built
from it. Both show what c2patool and the Content Credentials Verify site show first - signer
and issuer, signing time and whether it is time-stamped, the app (claim generator), the AI
source type, actions and ingredients with their own validation state, the trust list used -
and explain each C2PA failure code in one plain sentence (:data:`CODE_MEANINGS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._types import DetectorResult, ProvenanceResult, ProvenanceState
from ._types import WatermarkResult as _WM

__all__ = ["CODE_MEANINGS", "SOURCE_TYPES", "advice", "credentials_state", "detector_line",
           "explain_code", "render_text", "result_document", "watermark_state"]

#: C2PA validation codes guardrail can meet (c2pa-rs 0.91 through c2pa-python, guardrail's
#: own text check) -> what the code means for the person looking at the file
CODE_MEANINGS: dict[str, str] = {
    "signingCredential.untrusted": (
        "the signer's certificate does not chain to a certificate on this verifier's trust "
        "list: the file is intact, but nobody this verifier trusts vouches for who signed it"),
    "signingCredential.invalid": (
        "the signer's certificate is malformed or not allowed to sign Content Credentials: "
        "the signature cannot be relied on"),
    "signingCredential.revoked": (
        "the signer's certificate was revoked by its issuer: do not rely on these credentials"),
    "signingCredential.expired": (
        "the signer's certificate had expired when it signed: the signature cannot be "
        "relied on"),
    "signingCredential.ocsp.skipped": (
        "whether the signer's certificate was revoked was not checked (verification is "
        "offline)"),
    "cawg.x509.credential.untrusted": (
        "the identity assertion (CAWG) is signed by a certificate that is not on the trust "
        "list: the identity it names is not vouched for here"),
    "claimSignature.mismatch": (
        "the signature does not match the signed claim: the credentials were altered or "
        "forged after signing"),
    "claimSignature.missing": "the credentials carry no signature: they cannot be checked",
    "claimSignature.outsideValidity": (
        "the claim was signed outside its certificate's validity period"),
    "assertion.dataHash.mismatch": (
        "the file's content (its pixels, samples or text bytes) was changed after signing"),
    "assertion.dataHash.malformed": "the content hash in the credentials is malformed",
    "assertion.boxesHash.mismatch": "part of the file was changed after signing",
    "assertion.bmffHash.mismatch": "part of the file was changed after signing",
    "assertion.hashedURI.mismatch": (
        "a statement inside the credentials (an assertion such as the actions or an "
        "ingredient) was changed after signing"),
    "assertion.missing": (
        "the credentials refer to a statement that is no longer there: part of them was "
        "removed"),
    "assertion.cbor.invalid": "a statement inside the credentials is malformed",
    "assertion.json.invalid": "a statement inside the credentials is malformed",
    "claim.missing": "the credentials hold no claim: there is nothing to check",
    "claim.malformed": "the credentials' claim is malformed",
    "claim.multiple": "the credentials hold more than one claim where one is allowed",
    "claim.hardBindings.missing": (
        "the credentials are not bound to this file's content: they could belong to any file"),
    "ingredient.manifest.missing": (
        "the credentials of an ingredient (a file this one was made from) are referenced but "
        "missing: that part of its history cannot be checked"),
    "ingredient.manifest.mismatch": (
        "an ingredient's credentials do not match what was recorded when it was used"),
    "ingredient.claimSignature.mismatch": (
        "an ingredient's signature does not match: its history was altered"),
    "ingredient.hashedURI.mismatch": (
        "an ingredient's recorded credentials were changed after they were recorded"),
    "ingredient.unknownProvenance": (
        "this ingredient has no Content Credentials of its own: where it came from is unknown"),
    "manifest.inaccessible": (
        "the credentials are stored on a server and were not fetched (verification is "
        "offline): they were not checked"),
    "manifest.missing": "the credentials that the file points to are missing",
    "manifest.text.corruptedWrapper": (
        "the invisible credentials embedded in the text are damaged"),
    "manifest.text.multipleWrappers": (
        "the text holds more than one set of embedded credentials: it was pieced together"),
    "algorithm.unsupported": (
        "the credentials use a signing or hash algorithm this verifier does not support: "
        "they can be neither confirmed nor called tampered"),
    "algorithm.deprecated": (
        "the credentials use an algorithm that is no longer considered safe"),
    "timeStamp.mismatch": (
        "the time-stamp does not match the signature: the signing time is not proven"),
    "timeStamp.untrusted": (
        "the time-stamp authority is not on the trust list: the signing time is not "
        "independently proven here"),
    "timeStamp.outsideValidity": "the time-stamp was made outside its certificate's validity",
    "general.error": "the credentials could not be checked because of an internal error",
}

#: IPTC digital source types -> plain words
SOURCE_TYPES: dict[str, str] = {
    "trainedAlgorithmicMedia": "created by a trained AI model",
    "compositeWithTrainedAlgorithmicMedia": "combines AI-generated and other content",
    "algorithmicMedia": "created by an algorithm without a trained model",
    "digitalCapture": "captured by a camera or recorder",
    "computationalCapture": "captured with computational processing (e.g. a phone camera)",
    "negativeFilm": "scanned from a film negative",
    "positiveFilm": "scanned from film",
    "print": "scanned from a print",
    "humanEdits": "edited by a person",
    "minorHumanEdits": "lightly edited by a person",
    "digitalCreation": "created by a person with digital tools",
    "digitalArt": "created by a person with digital tools",
    "composite": "a composite of several sources",
    "compositeCapture": "a composite of captured sources",
    "compositeSynthetic": "a composite including synthetic content",
    "screenCapture": "a screen capture",
    "virtualRecording": "a recording of a virtual scene",
    "dataDrivenMedia": "generated from data",
    "algorithmicallyEnhanced": "enhanced by an algorithm",
}

_UNTRUSTED_ONLY = frozenset({"signingCredential.untrusted", "cawg.x509.credential.untrusted",
                             "timeStamp.untrusted"})
#: failure codes that say "this verifier cannot check it", not "it was changed"
_UNSUPPORTED = frozenset({"algorithm.unsupported"})


def credentials_state(p: ProvenanceResult) -> str:
    """The credentials row of the verdict table: ``TRUSTED``, ``TRUSTED+AI``,
    ``VALID_UNTRUSTED``, ``VALID_UNTRUSTED+AI``, ``INVALID``, ``reformatted``,
    ``unsupported``, ``ABSENT`` or ``ERROR``."""
    failures = set(p.failures)
    real = failures - _UNTRUSTED_ONLY
    if p.state in (ProvenanceState.INVALID, ProvenanceState.ERROR) and real \
            and real <= _UNSUPPORTED:
        return "unsupported"
    if p.state is ProvenanceState.INVALID:
        visible = (p.manifest or {}).get("visible_text") if isinstance(p.manifest, Mapping) \
            else None
        if isinstance(visible, Mapping) and visible.get("unchanged") is True \
                and real <= {"assertion.dataHash.mismatch"}:
            return "reformatted"
        return "INVALID"
    if p.state in (ProvenanceState.TRUSTED, ProvenanceState.VALID_UNTRUSTED):
        return p.state.value + ("+AI" if p.ai_generated else "")
    return p.state.value


def watermark_state(wm: _WM | None) -> str:
    """``verified``, ``not found`` or ``not checked``."""
    if wm is None or wm.detected is None:
        return "not checked"
    return "verified" if wm.detected else "not found"


def detector_line(d: DetectorResult) -> str:
    """One detector's result: its decision at its operating point first, then the score."""
    if d.probability is None:
        return f"detector {d.detector}: {d.reason or 'not performed'}"
    decision = "synthetic" if d.decision else "not synthetic"
    if d.operating_fpr is not None:
        point = f"at the operating point (FPR {d.operating_fpr:.1%})"
    elif d.threshold is not None:
        point = f"at the threshold {d.threshold:.2f}"
    else:
        point = "at its operating point"
    return f"detector {d.detector}: {decision} {point}; score {d.probability:.2f}"


def explain_code(code: str, explanation: str | None = None) -> str:
    """One plain sentence for a C2PA validation code (c2pa's own explanation otherwise)."""
    if code in CODE_MEANINGS:
        return CODE_MEANINGS[code]
    if explanation:
        return f"c2pa reports: {explanation}"
    return "a check of the credentials failed (no explanation available for this code)"


def _source_name(value: Any) -> str:
    return str(value or "").strip().rstrip("/").rsplit("/", 1)[-1]


def _agent_name(value: Any) -> str | None:
    if isinstance(value, Mapping):
        parts = [str(value.get("name") or ""), str(value.get("version") or "")]
        return " ".join(p for p in parts if p) or None
    return str(value) if value else None


def _app(manifest: Mapping[str, Any]) -> str | None:
    gen = manifest.get("claim_generator")
    if isinstance(gen, Sequence) and not isinstance(gen, str):
        names = [n for n in (_agent_name(g) for g in gen) if n]
        return ", ".join(names) or None
    return _agent_name(gen)


def _ingredient_state(ing: Mapping[str, Any]) -> str:
    if not ing.get("has_manifest"):
        return "no credentials"
    real = [c for c in ing.get("failures") or [] if c not in _UNTRUSTED_ONLY]
    if real:
        return "invalid"
    recorded = [c for c in ing.get("recorded_failures") or [] if c not in _UNTRUSTED_ONLY]
    if recorded:
        return "invalid when it was used"
    if ing.get("failures"):
        return "valid, signer not trusted here"
    return "valid"


def _failure_details(manifest: Mapping[str, Any], failures: Sequence[str], *,
                     reformatted: bool = False) -> list[dict]:
    explained = {str(f.get("code")): f.get("explanation")
                 for f in (manifest.get("validation") or {}).get("failure") or []
                 if isinstance(f, Mapping)}
    out = [{"code": c, "meaning": explain_code(c, explained.get(c)),
            "explanation": explained.get(c)} for c in failures]
    for item in out:
        if reformatted and item["code"] == "assertion.dataHash.mismatch":
            item["meaning"] = ("the text's bytes changed after signing - here only its white "
                               "space or Unicode form: the visible words are the signed ones")
    return out


def provenance_document(res: Any) -> dict[str, Any]:
    """The ``provenance`` object of the JSON document."""
    p = res.provenance
    m: Mapping[str, Any] = p.manifest if isinstance(p.manifest, Mapping) else {}
    signer = m.get("signer") if isinstance(m.get("signer"), Mapping) else {}
    actions = [dict(a) for a in m.get("actions") or [] if isinstance(a, Mapping)]
    source_types = list(dict.fromkeys(_source_name(a.get("digitalSourceType")) for a in actions
                                      if a.get("digitalSourceType")))
    tsa = m.get("timestamp_authority")
    visible = m.get("visible_text") if isinstance(m.get("visible_text"), Mapping) else None
    ingredients = []
    for ing in m.get("ingredients") or []:
        if not isinstance(ing, Mapping):
            continue
        item = dict(ing)
        item["state"] = _ingredient_state(ing)
        codes = dict.fromkeys([*(ing.get("failures") or []),
                               *(ing.get("recorded_failures") or [])])
        item["failure_details"] = [{"code": c, "meaning": explain_code(c)} for c in codes]
        ingredients.append(item)
    return {
        "state": p.state.value, "failures": list(p.failures), "signer": p.signer,
        "ai_generated": p.ai_generated, "reason": p.reason,
        "issuer": signer.get("issuer") or m.get("issuer"),
        "signed_at": m.get("signing_time") or m.get("signed_at"),
        "timestamped": bool(tsa), "timestamp_authority": tsa,
        "timestamp_trusted": m.get("timestamp_trusted"),
        "claim_generator": m.get("claim_generator"), "app": _app(m),
        "digital_source_type": source_types[0] if source_types else None,
        "digital_source_types": source_types,
        "actions": actions or m.get("actions"), "ingredients": ingredients,
        "failure_details": _failure_details(
            m, p.failures, reformatted=credentials_state(p) == "reformatted"),
        "visible_text_unchanged": visible.get("unchanged") if visible else None,
        "trust": res.trust,
        "manifest": m or {},
    }


def result_document(res: Any) -> dict[str, Any]:
    """The ``verify --json`` document."""
    wm = res.watermark
    return {
        "file": res.file,
        "media_type": res.media_type,
        "modality": res.modality.value if res.modality else None,
        "provenance": provenance_document(res),
        "watermark": None if wm is None else {
            "state": watermark_state(wm),
            "detected": wm.detected, "scheme": wm.scheme, "version": wm.scheme_version,
            "p_value": wm.p_value, "fpr": wm.fpr, "payload": wm.payload, "score": wm.score,
            "reason": wm.reason, "geometry": dict(wm.geometry) if wm.geometry else None},
        "record": res.record.to_dict(),
        "recovered": res.recovered,
        "detectors": [{"detector": d.detector, "model_version": d.model_version,
                       "probability": d.probability, "decision": d.decision,
                       "threshold": d.threshold, "operating_fpr": d.operating_fpr,
                       "explanation": d.explanation, "reason": d.reason,
                       "summary": detector_line(d)}
                      for d in res.detectors],
        "verdict": {"label": res.label, "summary": res.summary, "rule": res.rule,
                    "credentials": credentials_state(res.provenance),
                    "evidence": list(res.evidence), "not_checked": list(res.not_checked),
                    "advice": list(res.advice)},
    }


def advice(res: Any) -> list[str]:
    """What the reader can do next; a verifier without the platform's keys is never told to
    create keys (new keys could not check marks made with the platform's)."""
    out = []
    p = res.provenance
    cred = credentials_state(p)
    wm_reason = (res.watermark.reason or "") if res.watermark is not None else ""
    if "no watermark key" in wm_reason:
        out.append("The watermark can only be checked with the secret key of the platform "
                   "that generated the file: ask that platform to verify it. The Content "
                   "Credentials need no secret and were checked here.")
    if cred.startswith("VALID_UNTRUSTED"):
        out.append(f"The credentials are intact but their signer ({p.signer or 'unnamed'}) "
                   "is not on this verifier's trust list. If you trust that organisation, add "
                   "its root certificate to provenance.trust_anchors.")
    if cred == "INVALID":
        out.append("Ask the publisher for the original file: this copy no longer matches "
                   "its Content Credentials.")
    if cred == "reformatted":
        out.append("The words are the signed ones; to check the signature itself, get the "
                   "text as published (before it was copied or reformatted).")
    if cred == "unsupported":
        out.append("Check the file with a newer C2PA verifier (c2patool, "
                   "contentcredentials.org/verify), which may support its algorithm.")
    if p.state is ProvenanceState.ERROR and "manifest.inaccessible" in p.failures:
        out.append("The credentials are stored remotely: verify with "
                   "provenance.remote_manifest_fetch = true, or on contentcredentials.org.")
    if res.label == "Watermark without matching record":
        out.append("No record of this platform matches the content: do not treat the mark "
                   "alone as proof of AI generation (it may have been copied onto this file).")
    return out


def _line(label: str, value: Any) -> str:
    return f"  {label:<13} {value}"


def render_text(doc: Mapping[str, Any]) -> str:
    """The human-readable report for a ``verify --json`` document."""
    v, p = doc["verdict"], doc["provenance"]
    out = [v["summary"], ""]
    state_words = {
        "TRUSTED": "intact, signed by a signer on the trust list",
        "VALID_UNTRUSTED": "intact, but the signer is not on this verifier's trust list",
        "INVALID": "present, but they do not validate",
        "ABSENT": "none in this file",
        "ERROR": "present or expected, but they could not be checked"}
    if v.get("credentials") == "reformatted":
        state_words["INVALID"] = ("the signature no longer matches the bytes, but the visible "
                                  "words are the signed ones")
    if v.get("credentials") == "unsupported":
        state_words[p["state"]] = "present, but signed with an algorithm this verifier " \
            "does not support"
    out.append(f"Content Credentials: {p['state']} - {state_words.get(p['state'], '')}")
    if p["state"] not in ("ABSENT",) and (p.get("signer") or p.get("issuer")):
        who = p.get("signer") or "unnamed"
        out.append(_line("signed by", who + (f" (issuer: {p['issuer']})" if p.get("issuer")
                                             else "")))
    if p.get("signed_at"):
        if p.get("timestamped"):
            trusted = {True: "trusted", False: "not trusted here"}.get(p.get("timestamp_trusted"),
                                                                       "trust unknown")
            stamp = f", time-stamped by {p['timestamp_authority']} ({trusted})"
        else:
            stamp = " (the signer's own clock; not time-stamped)"
        out.append(_line("signed at", f"{p['signed_at']}{stamp}"))
    elif p["state"] in ("TRUSTED", "VALID_UNTRUSTED", "INVALID"):
        out.append(_line("signed at", "unknown (not time-stamped)"))
    if p.get("app"):
        out.append(_line("app", p["app"]))
    if p.get("digital_source_type"):
        name = p["digital_source_type"]
        out.append(_line("AI source", f"{name} ({SOURCE_TYPES.get(name, 'as declared')})"))
    elif p["state"] in ("TRUSTED", "VALID_UNTRUSTED"):
        out.append(_line("AI source", "not declared"))
    actions = [str(a.get("action")) for a in p.get("actions") or [] if isinstance(a, Mapping)]
    if actions:
        out.append(_line("actions", ", ".join(actions)))
    for ing in p.get("ingredients") or []:
        fails = "; ".join(f"{f['code']}: {f['meaning']}" for f in ing.get("failure_details") or []
                          if f["code"] not in _UNTRUSTED_ONLY)
        out.append(_line("ingredient", f"{ing.get('title') or '(untitled)'} "
                                       f"({ing.get('relationship') or 'ingredient'}): "
                                       f"{ing['state']}" + (f" - {fails}" if fails else "")))
    trust = p.get("trust")
    if p["state"] != "ABSENT" and isinstance(trust, Mapping):
        sources = trust.get("sources") or []
        out.append(_line("trust list", ", ".join(sources) if sources
                         else "empty (no certificate is trusted here)"))
    for f in p.get("failure_details") or []:
        out.append(f"  ! {f['code']}: {f['meaning']}")
    if p["state"] == "ERROR" and p.get("reason"):
        out.append(_line("why", p["reason"]))
    wm = doc.get("watermark")
    if wm is None:
        out.append("Watermark: not checked")
    else:
        version = f" v{wm['version']}" if wm.get("version") else ""
        if wm["state"] == "not checked":
            out.append(f"Watermark: not checked - {wm.get('reason') or 'no reason given'}")
        else:
            p_value = f"p = {wm['p_value']:.3g}" if wm.get("p_value") is not None else ""
            fpr = f" at a false-positive rate of {wm['fpr']:g}" if wm.get("fpr") else ""
            out.append(f"Watermark: {wm['state']} ({wm['scheme']}{version}; {p_value}{fpr})"
                       + (f", id {wm['payload']}" if wm.get("payload") else ""))
    rec = doc["record"]
    out.append(f"Record: {rec['state']}" + (f" - {rec['reason']}" if rec.get("reason") else ""))
    if rec["state"] == "match":
        out.append(f"  guardrail reports show {rec['report_id']}")
    dets = doc.get("detectors") or []
    if dets:
        out.append("Detectors:")
        out.extend(f"  - {d['summary'].removeprefix('detector ')}" for d in dets)
    # the watermark and record lines above already say why they were not checked
    rest = [line for line in v["not_checked"]
            if not line.startswith(("watermark:", "record match:"))]
    if rest:
        out.append("Not checked:")
        out.extend(f"  - {line}" for line in rest)
    if v.get("advice"):
        out.append("What you can do:")
        out.extend(f"  - {line}" for line in v["advice"])
    return "\n".join(out)
