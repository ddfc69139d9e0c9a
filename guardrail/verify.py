"""``guardrail verify FILE``: every kind of evidence about one file, and one verdict.

Evidence, walked backwards from how guardrail produces an output:

1. **Content Credentials** (C2PA): TRUSTED, VALID_UNTRUSTED, INVALID, ABSENT or ERROR, with
   the signer, whether the asset declares AI generation and the exact failure codes.
2. **Watermark**: guardrail's scheme for the file's modality under the configured key,
   decided at the configured false-positive rate, with the decoded id.
3. **Record recovered through the watermark**: when the credentials are missing (stripped)
   or broken but the mark decodes, the id is looked up in the record store, and a record is
   returned only if its recorded content fingerprint matches this file (pHash for images,
   energy envelope for audio; for text, whose mark carries no id, the normalised text).
4. **Detectors**: every configured synthetic-media detector for the modality.

Verdict rules (first that applies):

=====  ===============================================  ==========================================
rank   evidence                                         label
=====  ===============================================  ==========================================
1      credentials INVALID                              Tampered
2      credentials TRUSTED, declare AI generation       AI-generated
3      our watermark verified (any credentials state    AI-generated
       but INVALID), with or without a recovered record
4      credentials VALID_UNTRUSTED, declare AI          Likely AI-generated (signer not trusted)
5      credentials valid, do not declare AI             Signed, not declared AI-generated
6      a detector decided "synthetic"                   Likely AI-generated
7      credentials ERROR (remote, malformed, damaged),  Could not be verified
       or the content could not be checked (a file
       that cannot be read or decoded: damaged,
       unsupported, special, beyond a ``[limits]``
       value; or a check that failed unexpectedly)
8      otherwise                                        No evidence of AI generation found
=====  ===============================================  ==========================================

A file that could not be decoded never gets rule 8: "No evidence" is said only of content
that was decoded and checked. Credentials that validate on such a file are still reported
(rules 1, 2, 4, 5: they are evidence about these very bytes), with what was not checked.

Strong evidence (a valid signature, a verified watermark) outranks any detector score; a
detector alone never yields a certain label ("Likely", never "AI-generated"). Whatever could
not be checked is listed under the verdict.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._types import Artifact, DetectorResult, Modality, ProvenanceResult, ProvenanceState
from ._types import WatermarkResult as _WM
from .config import Config, Limits
from .errors import DependencyError, GuardrailError, UnsupportedMediaError
from .store import ReportStore

__all__ = ["VerifyResult", "verdict", "verify_file"]

log = logging.getLogger(__name__)

@dataclass
class VerifyResult:
    """Everything ``guardrail verify`` found (see :meth:`to_dict` for the JSON contract)."""

    file: str
    media_type: str | None
    modality: Modality | None
    provenance: ProvenanceResult
    watermark: _WM | None
    recovered: dict[str, Any] | None = None
    detectors: list[DetectorResult] = field(default_factory=list)
    label: str = ""
    summary: str = ""
    evidence: list[str] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)
    #: why the content could not be checked (unreadable or undecodable file, a check that
    #: failed unexpectedly): any entry rules out the clean verdict
    failed: list[str] = field(default_factory=list)

    def fail(self, what: str, reason: str) -> None:
        """Record that ``what`` could not be checked because of ``reason`` (a phrase that
        says what failed: it is the summary of a "Could not be verified" verdict)."""
        self.not_checked.append(f"{what}: {reason}")
        self.failed.append(reason)

    def to_dict(self) -> dict[str, Any]:
        p = self.provenance
        manifest = p.manifest or {}
        wm = self.watermark
        return {
            "file": self.file,
            "media_type": self.media_type,
            "modality": self.modality.value if self.modality else None,
            "provenance": {
                "state": p.state.value, "failures": list(p.failures), "signer": p.signer,
                "ai_generated": p.ai_generated, "reason": p.reason,
                "issuer": manifest.get("issuer"), "signed_at": manifest.get("signing_time")
                or manifest.get("signed_at"), "claim_generator": manifest.get("claim_generator"),
                "actions": manifest.get("actions"), "ingredients": manifest.get("ingredients"),
                "manifest": manifest,
            },
            "watermark": None if wm is None else {
                "detected": wm.detected, "scheme": wm.scheme, "version": wm.scheme_version,
                "p_value": wm.p_value, "fpr": wm.fpr, "payload": wm.payload, "score": wm.score,
                "reason": wm.reason},
            "recovered": self.recovered,
            "detectors": [{"detector": d.detector, "model_version": d.model_version,
                           "probability": d.probability, "decision": d.decision,
                           "threshold": d.threshold, "operating_fpr": d.operating_fpr,
                           "explanation": d.explanation, "reason": d.reason}
                          for d in self.detectors],
            "verdict": {"label": self.label, "summary": self.summary,
                        "evidence": list(self.evidence), "not_checked": list(self.not_checked)},
        }


def _unexpected(exc: BaseException) -> str:
    return f"failed unexpectedly: {type(exc).__name__}: {exc}"


def _provenance(cfg: Config, path: Path, data: bytes, limits: Limits) -> ProvenanceResult:
    try:
        from .provenance.settings import ProvenanceSettings
        from .provenance.verify import verify_path

        trust = ProvenanceSettings.from_config(cfg).trust()
    except GuardrailError as exc:
        return ProvenanceResult(state=ProvenanceState.ERROR, reason=f"not performed: {exc}")
    try:
        return verify_path(path, trust=trust, data=data, limits=limits)
    except DependencyError:
        raise  # c2pa-python is not installed: the install hint, not a verdict
    except Exception as exc:  # verification answers, it does not crash
        log.warning("Content Credentials check failed: %s", exc)
        log.debug("Content Credentials check failed", exc_info=True)
        return ProvenanceResult(state=ProvenanceState.ERROR,
                                reason=f"the Content Credentials check {_unexpected(exc)}")


def _watermark(cfg: Config, art: Artifact, text_generator: Any, res: VerifyResult) -> _WM | None:
    from .factory import watermarker_from_config
    from .watermark.base import not_performed

    scheme = cfg.section("watermark")[f"{art.modality.value}_scheme"]
    try:
        wm = watermarker_from_config(cfg, art.modality, generator=text_generator)
    except GuardrailError as exc:
        return not_performed(scheme, "?", f"not performed: {exc}")
    except Exception as exc:  # noqa: BLE001 - reported as a check that failed
        res.failed.append(f"the watermark check {_unexpected(exc)}")
        return not_performed(scheme, "?", f"not performed: {_unexpected(exc)}")
    try:
        return wm.detect(art)
    except Exception as exc:  # noqa: BLE001 - a detector crash must not crash verification
        log.warning("watermark detection failed: %s", exc)
        res.failed.append(f"the watermark check {_unexpected(exc)}")
        return not_performed(scheme, getattr(wm, "version", "?"),
                             f"not performed: {type(exc).__name__}: {exc}")


def _recover(store: ReportStore, art: Artifact, wm: _WM | None,
             limits: Limits) -> dict[str, Any] | None:
    from .fingerprint import fingerprint, match

    if wm is None or not wm.detected:
        return None  # records are found through a verified watermark only
    observed = fingerprint(art, limits=limits)
    candidates = []
    how = None
    if wm.payload:
        candidates = store.find_by_watermark(wm.scheme, wm.payload)
        how = "watermark id"
    elif art.modality is Modality.TEXT:
        candidates = store.find_by_text_fingerprint(observed)
        how = "text watermark + normalised text"
    for rep in candidates:
        ok, score = match(str(rep.extra.get("fingerprint", "")), observed)
        if ok:
            prov = (rep.extra.get("evidence") or {}).get("provenance") or {}
            return {"report_id": rep.report_id, "how": f"recovered via {how}",
                    "created_at": rep.created_at, "model_id": rep.metadata.model_id,
                    "status": rep.status, "content_match": score,
                    "watermark_id": wm.payload,
                    "manifest": prov.get("manifest_summary") or None,
                    "signer": prov.get("signer")}
    if candidates:
        log.info("watermark id matched %d record(s) but no recorded content matched", len(candidates))
    return None


def verify_file(path: str | Path, cfg: Config, *, store: ReportStore | None = None,
                detectors: list[Any] | None = None, text_generator: Any = None,
                limits: Limits | None = None) -> VerifyResult:
    """Verify one file: credentials, watermark, recovered record, detectors, verdict.

    The file is read once (regular files only, within ``[limits] max_file_bytes``: a FIFO,
    a device, a socket or a directory is refused before anything is read from it); the same
    bytes go to the Content Credentials reader and to the decoder, which checks the other
    ``[limits]`` (``limits`` overrides the configured ones) from the headers before
    decoding. ``detectors`` default to the ones configured in ``[detectors]`` for the
    file's modality.

    Never raises for bad input: a file that cannot be read or decoded, and any check that
    fails unexpectedly, come back as "Could not be verified" (unless the credentials are
    evidence of their own) with what could not be checked. Only a missing c2pa-python
    (:class:`~guardrail.errors.DependencyError`) is raised.
    """
    p = Path(path)
    try:
        limits = limits or Limits.from_config(cfg)
        return _verify_file(p, cfg, store, detectors, text_generator, limits)
    except DependencyError:
        raise
    except Exception as exc:  # the last resort: an answer, never a crash
        log.warning("verification of %s failed: %s", p, exc)
        log.debug("verification of %s failed", p, exc_info=True)
        reason = f"verification {_unexpected(exc)}"
        res = VerifyResult(file=str(p), media_type=None, modality=None, watermark=None,
                           provenance=ProvenanceResult(state=ProvenanceState.ERROR,
                                                       reason=reason))
        res.fail("credentials, watermark and detectors", reason)
        return verdict(res)


def _verify_file(p: Path, cfg: Config, store: ReportStore | None, detectors: list[Any] | None,
                 text_generator: Any, limits: Limits) -> VerifyResult:
    from .media import MEDIA_TYPES, decode, read_bytes

    try:
        data = read_bytes(p, limits=limits)
    except UnsupportedMediaError as exc:
        res = VerifyResult(file=str(p), media_type=None, modality=None, watermark=None,
                           provenance=ProvenanceResult(state=ProvenanceState.ERROR,
                                                       reason=str(exc)))
        res.fail("credentials, watermark and detectors", str(exc))
        return verdict(res)
    prov = _provenance(cfg, p, data, limits)
    declared = MEDIA_TYPES.get(p.suffix.lower(), (None, None))[0]
    art: Artifact | None = None
    try:
        art = decode(data, declared, name=p.name, limits=limits)
    except UnsupportedMediaError as exc:
        decode_error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a decoder crash is a file not checked
        decode_error = f"the decoder {_unexpected(exc)}"
    # the checks below read the decoded content: the file's bytes are not kept (memory)
    del data
    if art is not None and art.modality is not Modality.TEXT:
        art = art.evolve(data=None)
    res = VerifyResult(file=str(p), media_type=art.media_type if art else None,
                       modality=art.modality if art else None, provenance=prov, watermark=None)
    if art is None:
        res.fail("watermark and detectors", f"the content could not be decoded: {decode_error}")
        return verdict(res)
    if art.modality is Modality.TEXT and text_generator is None:
        from .factory import generator_from_config

        try:
            text_generator = generator_from_config(cfg, Modality.TEXT, progress=False)
        except GuardrailError as exc:
            res.not_checked.append(f"text watermark: {exc}")
        except Exception as exc:  # noqa: BLE001 - reported as a check that failed
            res.fail("text watermark", f"loading the text model {_unexpected(exc)}")
    res.watermark = _watermark(cfg, art, text_generator, res)
    if res.watermark is not None and res.watermark.detected is None:
        res.not_checked.append(f"watermark: {res.watermark.reason}")
    if prov.state is not ProvenanceState.TRUSTED and res.watermark is not None \
            and res.watermark.detected:
        owned = store is None
        try:
            store = store or ReportStore(cfg.store_url)
            res.recovered = _recover(store, art, res.watermark, limits)
        except GuardrailError as exc:
            res.not_checked.append(f"record recovery: {exc}")
        except Exception as exc:  # noqa: BLE001 - reported as a check that failed
            res.fail("record recovery", f"record recovery {_unexpected(exc)}")
        finally:
            if owned and store is not None:
                store.close()
    _run_detectors(cfg, art, res, detectors, text_generator)
    return verdict(res)


def _run_detectors(cfg: Config, art: Artifact, res: VerifyResult, detectors: list[Any] | None,
                   text_generator: Any) -> None:
    if detectors is None:
        from .detectors import build_all

        try:
            detectors = build_all(cfg, [art.modality], text_generator=text_generator)
        except GuardrailError as exc:
            res.not_checked.append(f"synthetic-media detectors: {exc}")
            return
        except Exception as exc:  # noqa: BLE001 - reported as a check that failed
            res.fail("synthetic-media detectors", f"building the detectors {_unexpected(exc)}")
            return
    for det in detectors:
        try:
            res.detectors.append(det.detect(art))
        except Exception as exc:  # noqa: BLE001 - one detector failing is reported, not fatal
            name = getattr(det, "name", type(det).__name__)
            res.failed.append(f"detector {name} {_unexpected(exc)}")
            res.detectors.append(DetectorResult(detector=name, model_version=None,
                                                probability=None, decision=None,
                                                reason=f"not performed: {type(exc).__name__}: {exc}"))
    for d in res.detectors:
        if d.probability is None:
            res.not_checked.append(f"detector {d.detector}: {d.reason}")
    if not res.detectors:
        res.not_checked.append("synthetic-media detectors: none configured for "
                               f"{art.modality.value}")


def verdict(res: VerifyResult) -> VerifyResult:
    """Apply the documented rules to fill ``label``, ``summary`` and ``evidence``."""
    p, wm = res.provenance, res.watermark
    ev = res.evidence
    signer = p.signer or "an unnamed signer"
    ev.append(f"Content Credentials: {p.state.value}"
              + (f" ({', '.join(p.failures)})" if p.failures else "")
              + (f", signed by {p.signer}" if p.signer else "")
              + (f"; {p.reason}" if p.reason and p.state is not ProvenanceState.TRUSTED else ""))
    wm_ok = bool(wm is not None and wm.detected)
    if wm is not None and wm.detected is not None:
        ev.append(f"watermark {wm.scheme}: {'verified' if wm.detected else 'not found'} "
                  f"(p={wm.p_value:.3g} at false-positive rate {wm.fpr:g})"
                  + (f", id {wm.payload}" if wm.payload else ""))
    if res.recovered:
        ev.append(f"record {res.recovered['report_id']} {res.recovered['how']}")
    synthetic = [d for d in res.detectors if d.decision]
    for d in res.detectors:
        if d.probability is not None:
            ev.append(f"detector {d.detector}: {d.probability:.2f} probability synthetic"
                      + (f" (operating point at {d.operating_fpr:.1%} false positives)"
                         if d.operating_fpr else ""))
    top = max((d.probability for d in res.detectors if d.probability is not None), default=None)

    if p.state is ProvenanceState.INVALID:
        res.label = "Tampered"
        res.summary = "Tampered: credentials do not match the content" + (
            f" ({', '.join(p.failures)})" if p.failures else "") + (
            "; guardrail's watermark is still present" if wm_ok else "")
    elif p.state is ProvenanceState.TRUSTED and p.ai_generated:
        res.label = "AI-generated"
        res.summary = f"AI-generated: signed by {signer}" + (
            ", watermark verified" if wm_ok else "")
    elif wm_ok:
        res.label = "AI-generated"
        if res.recovered:
            res.summary = ("AI-generated: credentials stripped, recovered via watermark "
                           f"(report {res.recovered['report_id']})")
        else:
            res.summary = "AI-generated: guardrail watermark verified" + (
                ", no credentials" if p.state is ProvenanceState.ABSENT else "")
    elif p.state is ProvenanceState.VALID_UNTRUSTED and p.ai_generated:
        res.label = "Likely AI-generated"
        res.summary = f"Likely AI-generated: declared by {signer}, a signer that is not trusted"
    elif p.state in (ProvenanceState.TRUSTED, ProvenanceState.VALID_UNTRUSTED):
        res.label = "Signed, not declared AI-generated"
        trusted = "trusted" if p.state is ProvenanceState.TRUSTED else "untrusted"
        res.summary = (f"Signed by {signer} ({trusted}); the credentials do not declare AI "
                       "generation") + (f"; not checked: {res.failed[0]}" if res.failed else "")
    elif synthetic:
        res.label = "Likely AI-generated"
        res.summary = f"Likely AI-generated: no credentials, detectors {top:.2f}"
    elif p.state is ProvenanceState.ERROR or res.failed:
        # credentials present but unverifiable (remote, malformed, pre-release), or content
        # that could not be read, decoded or checked: absence of a watermark is no evidence
        res.label = "Could not be verified"
        why = p.reason if p.state is ProvenanceState.ERROR else res.failed[0]
        res.summary = f"Could not be verified: {why or 'the file could not be read'}"
    else:
        res.label = "No evidence of AI generation found"
        res.summary = "No evidence of AI generation found" + (
            f" (detectors {top:.2f})" if top is not None else "")
    return res
