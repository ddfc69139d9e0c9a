import numpy as np
import pytest

from guardrail import (
    Artifact,
    GenerationMetadata,
    Modality,
    ProvenanceState,
    Report,
    StageRecord,
    StageStatus,
)
from guardrail.errors import ModalityError


def test_modality_parse_accepts_names_and_rejects_unknown():
    assert Modality.parse(" Image ") is Modality.IMAGE
    with pytest.raises(ModalityError, match="unknown modality 'video'"):
        Modality.parse("video")


def test_artifact_is_immutable_and_evolve_returns_a_new_one():
    arr = np.zeros((4, 4, 3), dtype=np.uint8)
    art = Artifact(modality="image", content=arr, metadata=GenerationMetadata(model_id="m"))
    arr[0, 0, 0] = 9  # the caller's array is copied, not shared
    assert art.content[0, 0, 0] == 0
    with pytest.raises(ValueError):
        art.content[0, 0, 0] = 1  # read-only
    with pytest.raises(AttributeError):
        art.content = arr  # frozen dataclass
    new = art.evolve(data=b"png", media_type="image/png")
    assert art.data is None and new.data == b"png"
    assert new.content_hash != art.content_hash


def test_metadata_mappings_are_read_only():
    md = GenerationMetadata(model_id="m", parameters={"steps": 2})
    with pytest.raises(TypeError):
        md.parameters["steps"] = 3


def test_report_json_shape():
    rep = Report(report_id="r1", created_at="2026-01-01T00:00:00+00:00", modality="text",
                 status="ok", metadata=GenerationMetadata(model_id="m"),
                 stages=[StageRecord(stage="generate", status="ok", duration_ms=1.23456)])
    d = rep.to_dict()
    assert d["report_id"] == "r1" and d["modality"] == "text"
    assert d["stages"] == [{"stage": "generate", "status": "ok", "duration_ms": 1.235,
                            "reason": None, "details": {}}]
    assert rep.stage("generate").status is StageStatus.OK
    assert rep.stage("watermark") is None


def test_evidence_is_typed_and_stored_in_the_report_shape():
    from guardrail import DetectorResult, Evidence, ProvenanceEvidence, WatermarkEvidence

    ev = Evidence()
    assert ev.to_dict() == {}
    ev.watermark = WatermarkEvidence(scheme="kgw", version="1", fpr=1e-3, key_id="k",
                                     settings={"context_width": 1})
    ev.detectors = (DetectorResult(detector="d", model_version=None, probability=0.7,
                                   decision=True, threshold=0.5),)
    ev.provenance = ProvenanceEvidence(state=ProvenanceState.TRUSTED, media_type="text/plain",
                                       manifest_summary={"label": "m"}, text_mode="embedded")
    ev.extra["mine"] = {"score": 1}
    d = ev.to_dict()
    assert d["watermark"] == {"scheme": "kgw", "version": "1", "key_id": "k", "fpr": 1e-3,
                              "context_width": 1, "payload": None}
    assert d["detectors"][0]["probability"] == 0.7 and d["mine"] == {"score": 1}
    assert d["provenance"]["state"] == "TRUSTED" and d["provenance"]["text_mode"] == "embedded"
    assert d["provenance"]["manifest_summary"] == {"label": "m"}
    assert list(d["provenance"]) == ["media_type", "signer", "text_mode", "sign_ms",
                                     "verify_ms", "state", "failures", "manifest",
                                     "ai_generated", "bytes_added", "manifest_summary"]
    # the built-in fields win over an extra entry of the same name
    ev.extra["watermark"] = "spoofed"
    assert ev.to_dict()["watermark"]["scheme"] == "kgw"
    with pytest.raises(AttributeError):
        ev.watermark.payload = "00"  # frozen
