"""The provenance stage inside a guard: sign the final bytes, verify, skip with reasons."""

from __future__ import annotations

import base64
import socket

import numpy as np
import pytest

from guardrail import Artifact, GenerationMetadata, Guard, Modality, ProvenanceState, StageRecord
from guardrail.provenance import (
    ProvenanceSigner,
    ProvenanceStage,
    SignOptions,
    dev_chain_paths,
    init_dev_chain,
    verify_bytes,
    verify_path,
    verify_text,
)
from guardrail.stages import StageContext, StageSkipped
from guardrail.testing import (
    EchoTextGenerator,
    FakeLSBWatermarker,
    NoiseAudioGenerator,
    SolidImageGenerator,
)
from guardrail.watermark.stages import WatermarkSelfCheck, WatermarkStage


def test_image_output_is_signed_after_the_watermark_and_verifies(config, store, signer, trust,
                                                                 tmp_path):
    wm = FakeLSBWatermarker()
    stages = [WatermarkStage(wm), WatermarkSelfCheck(wm), ProvenanceStage(signer, trust=trust)]
    guard = Guard(SolidImageGenerator(size=64), store=store, config=config, stages=stages)
    out = tmp_path / "o.png"
    res = guard.generate("a secret prompt", output=out, seed=3)
    assert res.status == "ok"
    rec = res.report.stage("provenance")
    assert rec.status.value == "ok", rec.reason
    assert rec.details["state"] == "TRUSTED" and rec.details["ai_generated"] is True
    assert rec.details["sign_ms"] > 0 and rec.details["verify_ms"] > 0
    # what was released (and written) is the signed file, and the mark is still in it
    assert out.read_bytes() == res.artifact.data
    verdict = verify_path(out, trust=trust)
    assert verdict.state is ProvenanceState.TRUSTED
    payload = res.report.stage("watermark").details["payload"]
    value = verdict.manifest["soft_binding"]["blocks"][0]["value"]
    assert value == base64.b64encode(bytes.fromhex(payload)).decode()  # C2PA: base64
    assert verdict.manifest["soft_binding"]["alg"] == "io.guardrail.watermark.fake-lsb.v1"
    generation = verdict.manifest["generation"]
    assert generation["model_id"] == "fake:solid"
    assert generation["prompt_hash"] == res.report.metadata.prompt_hash
    assert b"secret prompt" not in out.read_bytes()
    assert res.report.extra["evidence"]["provenance"]["state"] == "TRUSTED"


def test_text_output_carries_embedded_credentials(config, store, signer, trust, tmp_path):
    guard = Guard(EchoTextGenerator(), store=store, config=config,
                  stages=[ProvenanceStage(signer, trust=trust)])
    out = tmp_path / "answer.txt"
    res = guard.generate("hello", output=out)
    assert res.status == "ok", res.report.stage("provenance").reason
    assert res.artifact.content.startswith("echo: hello\ufeff")
    assert res.artifact.data == res.artifact.content.encode("utf-8")
    assert verify_text(res.artifact.content, trust=trust).state is ProvenanceState.TRUSTED
    assert verify_path(out, trust=trust).state is ProvenanceState.TRUSTED


def test_text_sidecar_mode_keeps_the_text_and_returns_the_manifest(config, store, signer, trust):
    stage = ProvenanceStage(signer, trust=trust, options=SignOptions(text_mode="sidecar"))
    res = Guard(EchoTextGenerator(), store=store, config=config, stages=[stage]).generate("hi")
    assert res.status == "ok"
    assert res.artifact.content == "echo: hi"
    manifest = res.files[".c2pa"]
    assert verify_text("echo: hi", trust=trust, sidecar=manifest).state is ProvenanceState.TRUSTED


def test_audio_output_is_signed(config, store, signer, trust):
    guard = Guard(NoiseAudioGenerator(), store=store, config=config,
                  stages=[ProvenanceStage(signer, trust=trust)])
    res = guard.generate("a tone", seed=1)
    assert res.report.stage("provenance").status.value == "ok"
    assert verify_bytes(res.artifact.data, "audio/wav", trust=trust).state is \
        ProvenanceState.TRUSTED


def test_no_signer_is_skipped_with_the_reason_and_the_policy_applies(config, store):
    stage = ProvenanceStage(None, unavailable="no signing certificate configured")
    res = Guard(EchoTextGenerator(), store=store, config=config, stages=[stage]).generate("x")
    rec = res.report.stage("provenance")
    assert rec.status.value == "skipped" and "no signing certificate" in rec.reason
    assert res.status == "flagged"  # default provenance policy: flag


def test_untrusted_signer_fails_the_stage_but_keeps_the_signed_bytes(config, store,
                                                                     other_signer, trust):
    stage = ProvenanceStage(other_signer, trust=trust)
    res = Guard(SolidImageGenerator(), store=store, config=config, stages=[stage]).generate("x")
    rec = res.report.stage("provenance")
    assert rec.status.value == "flagged" and "trust anchor" in rec.reason
    assert rec.details["state"] == "VALID_UNTRUSTED"
    assert verify_bytes(res.artifact.data, trust=trust).state is ProvenanceState.VALID_UNTRUSTED
    lenient = ProvenanceStage(other_signer, trust=trust, require_trusted=False)
    res = Guard(SolidImageGenerator(), store=store, config=config, stages=[lenient]).generate("x")
    assert res.report.stage("provenance").status.value == "ok"


def test_timestamp_authority_down_fails_the_stage_quickly(config, store, dev_keys, trust):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    paths = dev_chain_paths(dev_keys)
    signer = ProvenanceSigner.from_files(paths.signer_chain, paths.signer_key,
                                         tsa_url=f"http://127.0.0.1:{port}/", tsa_timeout_s=1)
    stage = ProvenanceStage(signer, trust=trust)
    res = Guard(SolidImageGenerator(), store=store, config=config, stages=[stage]).generate("x")
    rec = res.report.stage("provenance")
    assert rec.status.value == "flagged"
    assert "signing failed" in rec.reason and "unreachable" in rec.reason
    assert rec.duration_ms < 5000


def _ctx(config, art: Artifact) -> StageContext:
    return StageContext(report_id="r", prompt="p", modality=art.modality, config=config,
                        media_type=art.media_type or "", artifact=art)


def test_unsignable_media_and_missing_bytes_are_skipped(config, signer):
    stage = ProvenanceStage(signer)
    md = GenerationMetadata(model_id="m")
    gif = Artifact(modality=Modality.IMAGE, content=np.zeros((8, 8, 3), np.uint8), metadata=md,
                   media_type="image/gif", data=b"GIF89a")
    with pytest.raises(StageSkipped, match="image/gif cannot carry Content Credentials"):
        stage.run(_ctx(config, gif))
    with pytest.raises(StageSkipped, match="no encoded output"):
        stage.run(_ctx(config, gif.evolve(data=None)))


def test_stage_records_are_written_when_the_guard_passes_them(config, signer, trust):
    stage = ProvenanceStage(signer, trust=trust)
    art = Artifact(modality=Modality.TEXT, content="hello", metadata=GenerationMetadata(
        model_id="m", prompt_hash="hmac-sha256:k:" + "0" * 64), media_type="text/plain",
        data=b"hello")
    ctx = _ctx(config, art)
    ctx.records = (StageRecord(stage="input_policy", status="ok"),
                   StageRecord(stage="output_checks", status="flagged", reason="blocked term"))
    out = stage.run(ctx)
    assert out.passed
    res = verify_text(out.artifact.content, trust=trust)
    assert res.manifest["generation"]["stages"] == [
        {"stage": "input_policy", "status": "ok"},
        {"stage": "output_checks", "status": "flagged", "reason": "blocked term"}]
    # without them the manifest says so instead of pretending
    out = stage.run(_ctx(config, art))
    res = verify_text(out.artifact.content, trust=trust)
    assert res.manifest["generation"]["stages"][0]["status"] == "unavailable"


def test_from_config_without_keys_says_how_to_create_them(config):
    stage = ProvenanceStage.from_config(config)
    assert stage.signer is None and "keys init" in stage.unavailable


def test_from_config_uses_the_dev_chain_and_trusts_its_root(config, store):
    init_dev_chain(config.keys_dir)
    stage = ProvenanceStage.from_config(config)
    assert stage.signer is not None
    res = Guard(SolidImageGenerator(), store=store, config=config, stages=[stage]).generate("x")
    assert res.report.stage("provenance").details["state"] == "TRUSTED"


def test_sidecar_text_mode_writes_the_manifest_next_to_the_output(tmp_path):
    from guardrail import Config, Guard, ReportStore
    from guardrail.factory import init_keys, provenance_stages
    from guardrail.provenance.verify import verify_path
    from guardrail.testing import EchoTextGenerator

    cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path / "data")},
                                 "provenance": {"text_mode": "sidecar"}})
    init_keys(cfg)
    out = tmp_path / "o.txt"
    with ReportStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        res = Guard(EchoTextGenerator(), store=store, config=cfg,
                    stages=provenance_stages(cfg)).generate("hello there", output=out)
    assert res.status == "ok"
    assert out.read_text() == "echo: hello there"  # the text itself is untouched
    assert out.with_suffix(".c2pa").is_file()
    from guardrail.provenance.settings import ProvenanceSettings

    result = verify_path(out, trust=ProvenanceSettings.from_config(cfg).trust())
    assert result.state.value == "TRUSTED"
