"""The verdict of ``guardrail verify``: what the evidence about one file adds up to.

:class:`VerifyResult` holds the evidence (Content Credentials, watermark, record match,
detectors) and :func:`verdict` applies the rules below, the first that applies deciding
the label. Each piece of evidence is first reduced to one state:

* **credentials**: ``TRUSTED`` or ``VALID_UNTRUSTED``, each declaring AI generation
  (``digitalSourceType`` ``trainedAlgorithmicMedia``) or not; ``INVALID`` (the content or
  the manifest changed after signing); ``reformatted`` (a signed *text* whose visible words
  are unchanged - only its white space or Unicode form changed, which breaks the byte-exact
  signature); ``unsupported`` (a signing or hash algorithm this verifier does not know, e.g.
  ``algorithm.unsupported``); ``ABSENT``; ``ERROR`` (could not be checked);
* **watermark**: ``verified``, ``not found`` or ``not checked`` (no key, no scheme, a file
  too small or a check that failed);
* **record match** (:class:`RecordMatch`): ``match`` (a record found through the watermark
  whose recorded content fingerprint matches this file), ``mismatch`` (records carry this
  watermark id, but none of their content matches: a copied mark), ``no record`` (no
  record carries it: marked outside the guard, or another platform's store), ``not
  checked`` (no verified watermark, no record store here, a picture too smooth for its
  fingerprint to bind it - :func:`guardrail.fingerprint.weak_binding` - ...);
* **detectors**: ``synthetic`` when any detector decides so at its operating point.

====  =====================================================  ===================================
rule  evidence (first that applies)                          label
====  =====================================================  ===================================
R1    credentials INVALID                                    Tampered
R2    credentials reformatted (signed text, same words)      Signed text, reformatted
R3    credentials TRUSTED and declaring AI generation        AI-generated
R4    watermark verified and record match (credentials       AI-generated
      ABSENT, ERROR, unsupported, VALID_UNTRUSTED, or
      TRUSTED without an AI declaration)
R5    credentials VALID_UNTRUSTED declaring AI generation    Likely AI-generated
R6    credentials TRUSTED or VALID_UNTRUSTED, no AI          Signed, not declared AI-generated
      declaration
R7    credentials ERROR or unsupported, or the content       Could not be verified
      could not be read, decoded or checked
R8    a detector decides "synthetic"                         Likely AI-generated
R9    watermark verified, record mismatch / no record /      Watermark without matching record
      not checked
R10   otherwise (content decoded and checked)                No evidence of AI generation found
====  =====================================================  ===================================

So the verdict never rests on a watermark whose content does not match a record: such a
mark (R9) is reported as exactly that - "watermark of this platform's key, no matching
record: possibly marked outside the guard, or copied from another file" - and any other
evidence (credentials, a detector) decides first. A detector alone never yields a certain
label ("Likely"). "No evidence" (R10) is said only of content that was decoded and checked.
The table is tested row by row in ``tests/test_verdict_table.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._types import DetectorResult, Modality, ProvenanceResult, ProvenanceState
from ._types import WatermarkResult as _WM
from .verify_report import (
    advice,
    credentials_state,
    detector_line,
    result_document,
    watermark_state,
)

__all__ = [
    "AI",
    "CLEAN",
    "LABELS",
    "LIKELY_AI",
    "RULES",
    "SIGNED_NOT_AI",
    "TAMPERED",
    "TEXT_REFORMATTED",
    "UNMATCHED_MARK",
    "UNVERIFIED",
    "RecordMatch",
    "VerifyResult",
    "credentials_state",
    "detector_line",
    "verdict",
    "watermark_state",
]

TAMPERED = "Tampered"
TEXT_REFORMATTED = "Signed text, reformatted"
AI = "AI-generated"
LIKELY_AI = "Likely AI-generated"
SIGNED_NOT_AI = "Signed, not declared AI-generated"
UNVERIFIED = "Could not be verified"
UNMATCHED_MARK = "Watermark without matching record"
CLEAN = "No evidence of AI generation found"
#: every label :func:`verdict` gives
LABELS = (TAMPERED, TEXT_REFORMATTED, AI, LIKELY_AI, SIGNED_NOT_AI, UNVERIFIED, UNMATCHED_MARK,
          CLEAN)
#: rule id -> label (the table in the module docstring)
RULES = {"R1": TAMPERED, "R2": TEXT_REFORMATTED, "R3": AI, "R4": AI, "R5": LIKELY_AI,
         "R6": SIGNED_NOT_AI, "R7": UNVERIFIED, "R8": LIKELY_AI, "R9": UNMATCHED_MARK,
         "R10": CLEAN}

#: record-match states
MATCH, MISMATCH, NO_RECORD, NOT_CHECKED = "match", "mismatch", "no record", "not checked"
#: failure codes that only say "not trusted here"
_UNTRUSTED_ONLY = frozenset({"signingCredential.untrusted", "cawg.x509.credential.untrusted",
                             "timeStamp.untrusted"})
_UNMATCHED_SENTENCE = ("watermark of this platform's key, no matching record - possibly "
                       "marked outside the guard or copied from another file")


@dataclass
class RecordMatch:
    """Whether the record found through the watermark matches this file's content.

    ``state`` is ``match``, ``mismatch``, ``no record`` or ``not checked``; ``reason``
    says why in words. ``report_id`` names the matching record (``match``), ``candidates``
    how many records carry the watermark id, ``how`` how they were looked up and
    ``similarity`` the fingerprint comparison of the best candidate (Hamming distance for
    images, envelope correlation for audio).
    """

    state: str = NOT_CHECKED
    reason: str = "no verified watermark"
    report_id: str | None = None
    how: str | None = None
    candidates: int = 0
    similarity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason, "report_id": self.report_id,
                "how": self.how, "candidates": self.candidates, "similarity": self.similarity}


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
    #: the record match (first-class: ``match`` / ``mismatch`` / ``no record`` /
    #: ``not checked`` with the reason)
    record: RecordMatch = field(default_factory=RecordMatch)
    #: the rule of the verdict table that decided (``R1`` ... ``R10``)
    rule: str = ""
    #: what the trust list was (``sources``: anchor files; ``anchors``: how many)
    trust: dict[str, Any] | None = None
    #: what the reader can do next (fits a verifier without the platform's keys)
    advice: list[str] = field(default_factory=list)

    def fail(self, what: str, reason: str) -> None:
        """Record that ``what`` could not be checked because of ``reason`` (a phrase that
        says what failed: it is the summary of a "Could not be verified" verdict)."""
        self.not_checked.append(f"{what}: {reason}")
        self.failed.append(reason)

    def to_dict(self) -> dict[str, Any]:
        """The ``verify --json`` document (documented in the README, kept stable)."""
        return result_document(self)


def _wm_phrase(wm: _WM) -> str:
    version = f" v{wm.scheme_version}" if wm.scheme_version else ""
    return f"{wm.scheme}{version}"


def _evidence(res: VerifyResult) -> list[str]:
    p, wm, rec = res.provenance, res.watermark, res.record
    ev = [f"Content Credentials: {p.state.value}"
          + (f" ({', '.join(p.failures)})" if p.failures else "")
          + (f", signed by {p.signer}" if p.signer else "")
          + (f"; {p.reason}" if p.reason and p.state is not ProvenanceState.TRUSTED else "")]
    if wm is not None and wm.detected is not None:
        p_value = f"p={wm.p_value:.3g}" if wm.p_value is not None else "p=?"
        fpr = f" at false-positive rate {wm.fpr:g}" if wm.fpr is not None else ""
        ev.append(f"watermark {_wm_phrase(wm)}: {'verified' if wm.detected else 'not found'} "
                  f"({p_value}{fpr})" + (f", id {wm.payload}" if wm.payload else ""))
    if watermark_state(wm) == "verified":
        ev.append(f"record: {rec.state}" + (f" - {rec.reason}" if rec.reason else ""))
    ev.extend(detector_line(d) for d in res.detectors if d.probability is not None)
    return ev


def verdict(res: VerifyResult) -> VerifyResult:
    """Apply the rules of the module docstring: fill ``label``, ``summary``, ``rule`` and
    ``evidence``."""
    p, wm, rec = res.provenance, res.watermark, res.record
    res.evidence = _evidence(res)
    cred = credentials_state(p)
    wm_ok = watermark_state(wm) == "verified"
    matched = wm_ok and rec.state == MATCH
    signer = p.signer or "an unnamed signer"
    synthetic = [d for d in res.detectors if d.decision and d.probability is not None]
    record_note = (f"; watermark and record {rec.report_id} match: an edited copy of a "
                   "guardrail output" if matched else
                   "; guardrail's watermark is still present, no matching record"
                   if wm_ok else "")
    if cred == "INVALID":
        rule, summary = "R1", ("Tampered: the content or its credentials changed after signing"
                               + (f" ({', '.join(_real(p.failures))})" if p.failures else "")
                               + record_note)
    elif cred == "reformatted":
        rule = "R2"
        summary = (f"Signed text, reformatted: the visible words are exactly those {signer} "
                   "signed; only white space or the Unicode form changed (as copy-paste "
                   "does), which breaks the byte-exact signature")
        if p.ai_generated:
            summary += "; the credentials declare AI generation"
        if matched:
            summary += f"; watermark and record {rec.report_id} match"
    elif cred == "TRUSTED+AI":
        rule = "R3"
        summary = f"AI-generated: signed by {signer}" + (", watermark verified" if wm_ok else "")
        if wm_ok and rec.state == MATCH:
            summary += f", record {rec.report_id}"
    elif matched:
        rule = "R4"
        if cred == "ABSENT":
            summary = ("AI-generated: credentials stripped, recovered via watermark "
                       f"(report {rec.report_id})")
        else:
            summary = (f"AI-generated: recovered via watermark (report {rec.report_id}); "
                       f"{_cred_phrase(cred, signer)}")
    elif cred == "VALID_UNTRUSTED+AI":
        rule = "R5"
        summary = f"Likely AI-generated: declared by {signer}, a signer that is not trusted here"
    elif cred in ("TRUSTED", "VALID_UNTRUSTED"):
        rule = "R6"
        trusted = "trusted" if cred == "TRUSTED" else "untrusted"
        summary = (f"Signed by {signer} ({trusted}); the credentials do not declare AI "
                   "generation") + (f"; not checked: {res.failed[0]}" if res.failed else "")
        if wm_ok:
            summary += f"; {_UNMATCHED_SENTENCE}"
    elif cred in ("ERROR", "unsupported") or res.failed:
        rule = "R7"
        if cred == "unsupported":
            why = ("the credentials use a signing or hash algorithm this verifier does not "
                   "support, so their signature cannot be checked (neither valid nor tampered)")
        elif cred == "ERROR":
            why = p.reason or "the credentials could not be checked"
        else:
            why = res.failed[0]
        summary = f"Could not be verified: {why}"
        if synthetic:
            summary += f"; {detector_line(synthetic[0])}"
        if wm_ok:
            summary += f"; {_UNMATCHED_SENTENCE}"
    elif synthetic:
        rule = "R8"
        d = synthetic[0]
        summary = ("Likely AI-generated: " + detector_line(d).removeprefix("detector ")
                   + ("" if cred == "ABSENT" else f"; {_cred_phrase(cred, signer)}"))
        if wm_ok:
            summary += f"; {_UNMATCHED_SENTENCE}"
    elif wm_ok:
        rule = "R9"
        summary = f"Watermark without matching record: {_UNMATCHED_SENTENCE} ({rec.reason})"
    else:
        rule = "R10"
        summary = CLEAN
        checked = [d for d in res.detectors if d.probability is not None]
        if checked:
            summary += " (detectors: not synthetic at their operating points)"
    res.rule, res.label, res.summary = rule, RULES[rule], summary
    res.advice = advice(res)
    return res


def _real(failures: tuple[str, ...] | list[str]) -> list[str]:
    """The failure codes that are more than "not trusted here" (all of them if none are)."""
    real = [f for f in failures if f not in _UNTRUSTED_ONLY]
    return real or list(failures)


def _cred_phrase(cred: str, signer: str) -> str:
    return {
        "ERROR": "the credentials could not be checked",
        "unsupported": "the credentials use an unsupported algorithm",
        "VALID_UNTRUSTED": f"signed by {signer}, not trusted here",
        "VALID_UNTRUSTED+AI": f"declared AI-generated by {signer}, not trusted here",
        "TRUSTED": f"signed by {signer}, without an AI declaration",
        "ABSENT": "no credentials",
    }.get(cred, f"credentials {cred}")
