"""The verdict table of ``guardrail verify`` (``guardrail/verify_rules.py``, README), row by
row: every combination of credentials state x watermark x record match x detector decision is
built directly and checked against the documented rule, then key rows are checked word for
word."""

from __future__ import annotations

import itertools

import pytest

from guardrail._types import DetectorResult, Modality, ProvenanceResult, ProvenanceState
from guardrail._types import WatermarkResult as WM
from guardrail.verify import LABELS, RecordMatch, VerifyResult, verdict
from guardrail.verify_report import render_text
from guardrail.verify_rules import RULES

S = ProvenanceState
#: credentials row -> (state, ai_generated, failures, manifest)
CREDENTIALS = {
    "TRUSTED+AI": (S.TRUSTED, True, (), {}),
    "TRUSTED": (S.TRUSTED, False, (), {}),
    "VALID_UNTRUSTED+AI": (S.VALID_UNTRUSTED, True, ("signingCredential.untrusted",), {}),
    "VALID_UNTRUSTED": (S.VALID_UNTRUSTED, None, ("signingCredential.untrusted",), {}),
    "INVALID": (S.INVALID, True, ("assertion.dataHash.mismatch",), {}),
    "reformatted": (S.INVALID, True, ("assertion.dataHash.mismatch",),
                    {"visible_text": {"unchanged": True}}),
    "unsupported": (S.ERROR, None, ("algorithm.unsupported",), {}),
    "ABSENT": (S.ABSENT, None, (), {}),
    "ERROR": (S.ERROR, None, ("manifest.inaccessible",), {}),
}
WATERMARK_RECORD = [("verified", "match"), ("verified", "mismatch"),
                    ("verified", "no record"), ("verified", "not checked"),
                    ("not found", "not checked"), ("not checked", "not checked")]
DETECTORS = ["synthetic", "not synthetic", "none"]


def build(cred: str, wm: str, record: str, det: str, *, failed: bool = False) -> VerifyResult:
    state, ai, failures, manifest = CREDENTIALS[cred]
    prov = ProvenanceResult(state=state, ai_generated=ai, failures=failures,
                            signer="Example Signer" if state in (S.TRUSTED, S.VALID_UNTRUSTED,
                                                                 S.INVALID) else None,
                            manifest=manifest or None, reason="why")
    mark = {"verified": WM(True, "guardrail-image", "1", p_value=1e-9, fpr=1e-4,
                           payload="c0ffee01"),
            "not found": WM(False, "guardrail-image", "1", p_value=0.4, fpr=1e-4),
            "not checked": WM(None, "guardrail-image", "?", reason="not performed: no key")}[wm]
    rec = RecordMatch(state=record, reason=f"record {record}",
                      report_id="r123" if record == "match" else None)
    dets = [] if det == "none" else [DetectorResult(
        "probe", "1", probability=0.9 if det == "synthetic" else 0.2,
        decision=det == "synthetic", operating_fpr=0.01)]
    res = VerifyResult(file="f.png", media_type="image/png", modality=Modality.IMAGE,
                       provenance=prov, watermark=mark, record=rec, detectors=dets)
    if failed:
        res.fail("detectors", "the decoder failed")
    return verdict(res)


def expected_rule(cred: str, wm: str, record: str, det: str, failed: bool = False) -> str:
    """The README's table, written out independently of the implementation."""
    matched = wm == "verified" and record == "match"
    if cred == "INVALID":
        return "R1"
    if cred == "reformatted":
        return "R2"
    if cred == "TRUSTED+AI":
        return "R3"
    if matched:
        return "R4"
    if cred == "VALID_UNTRUSTED+AI":
        return "R5"
    if cred in ("TRUSTED", "VALID_UNTRUSTED"):
        return "R6"
    if cred in ("ERROR", "unsupported") or failed:
        return "R7"
    if det == "synthetic":
        return "R8"
    if wm == "verified":
        return "R9"
    return "R10"


ROWS = [(c, w, r, d) for c, (w, r), d in itertools.product(CREDENTIALS, WATERMARK_RECORD,
                                                             DETECTORS)]


@pytest.mark.parametrize(("cred", "wm", "record", "det"), ROWS,
                         ids=["/".join(r) for r in ROWS])
def test_every_row_of_the_table(cred, wm, record, det):
    res = build(cred, wm, record, det)
    rule = expected_rule(cred, wm, record, det)
    assert (res.rule, res.label) == (rule, RULES[rule]), res.summary
    assert res.summary.startswith(res.label) or res.label == RULES["R6"] and \
        res.summary.startswith("Signed by")
    # the verdict never rests on a watermark whose record does not match
    if res.label == "AI-generated" and cred != "TRUSTED+AI":
        assert wm == "verified" and record == "match"
    doc = res.to_dict()
    assert doc["verdict"]["rule"] == rule and doc["record"]["state"] == record
    assert doc["verdict"]["credentials"] == cred
    render_text(doc)  # every row renders


@pytest.mark.parametrize("cred", sorted(CREDENTIALS))
def test_content_that_could_not_be_checked(cred):
    res = build(cred, "not checked", "not checked", "none", failed=True)
    rule = expected_rule(cred, "not checked", "not checked", "none", failed=True)
    assert res.rule == rule and res.label != "No evidence of AI generation found"


def test_every_label_is_reachable_and_listed():
    labels = {build(*row).label for row in ROWS}
    assert labels == set(LABELS) == set(RULES.values())


# -- key rows, word for word -------------------------------------------------------------
def test_copied_mark_on_a_real_photo_is_not_ai_generated():
    for record in ("mismatch", "no record", "not checked"):
        res = build("ABSENT", "verified", record, "not synthetic")
        assert res.label == "Watermark without matching record"
        assert ("watermark of this platform's key, no matching record - possibly marked "
                "outside the guard or copied") in res.summary
        assert any("do not treat the mark alone as proof" in a for a in res.advice)


def test_matched_record_after_stripping():
    res = build("ABSENT", "verified", "match", "none")
    assert res.summary == "AI-generated: credentials stripped, recovered via watermark (report r123)"


def test_unsupported_algorithm_could_not_be_verified_not_tampered():
    res = build("unsupported", "not checked", "not checked", "none")
    assert res.label == "Could not be verified"
    assert "algorithm this verifier does not support" in res.summary
    assert "Tampered" not in res.summary


def test_detector_line_states_the_decision_first_then_the_score():
    res = build("ABSENT", "not found", "not checked", "not synthetic")
    assert "detector probe: not synthetic at the operating point (FPR 1.0%); score 0.20" \
        in res.evidence
    assert res.label == "No evidence of AI generation found"
    res = build("ABSENT", "not found", "not checked", "synthetic")
    assert res.summary == ("Likely AI-generated: probe: synthetic at the operating point "
                           "(FPR 1.0%); score 0.90")


def test_reformatted_text_has_its_own_label_and_explanation():
    res = build("reformatted", "not checked", "not checked", "none")
    assert res.label == "Signed text, reformatted"
    assert "only white space or the Unicode form changed" in res.summary
    edited = build("INVALID", "not checked", "not checked", "none")
    assert edited.label == "Tampered"


def test_untrusted_signer_advice_never_says_keys_init():
    res = build("VALID_UNTRUSTED", "not checked", "not checked", "none")
    res.watermark = WM(None, "guardrail-image", "?", reason="not performed: no watermark key "
                       "of the platform on this machine")
    verdict(res)
    text = render_text(res.to_dict())
    assert "keys init" not in text
    assert "provenance.trust_anchors" in text and "ask that platform" in text
