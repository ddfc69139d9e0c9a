"""Watermark stages in the guard, with a fake scheme: evidence, self-check on the final
encoded bytes, skips and policies."""

import numpy as np
import pytest

from guardrail import Guard
from guardrail.testing import EchoTextGenerator, FakeLSBWatermarker, SolidImageGenerator
from guardrail.watermark.stages import UnavailableStage, WatermarkSelfCheck, WatermarkStage


def image_guard(config, store, *, size=64, on_fail=None):
    wm = FakeLSBWatermarker()
    return Guard(SolidImageGenerator(size=size), store=store, config=config,
                 stages=[WatermarkStage(wm, on_fail=on_fail), WatermarkSelfCheck(wm)])


def test_mark_is_embedded_recorded_and_verified_on_png(config, store, tmp_path):
    res = image_guard(config, store).generate("x", output=tmp_path / "o.png", seed=1)
    assert res.status == "ok"
    wm = res.report.stage("watermark")
    assert wm.status.value == "ok" and wm.details["scheme"] == "fake-lsb"
    payload = wm.details["payload"]
    check = res.report.stage("self_check")
    assert check.status.value == "ok" and check.details["payload"] == payload
    # the id is stored in its own column, so the record can be found through the mark
    assert [r.report_id for r in store.find_by_watermark("fake-lsb", payload)] == [res.report_id]


def test_self_check_runs_on_final_bytes_and_blocks_a_mark_lost_in_encoding(config, store, tmp_path):
    out = tmp_path / "o.jpg"  # JPEG destroys the fragile fake mark
    res = image_guard(config, store).generate("x", output=out, seed=1)
    assert res.status == "blocked" and not out.exists()
    check = res.report.stage("self_check")
    assert check.status.value == "blocked"
    assert "does not verify on the encoded image/jpeg" in check.reason


def test_image_too_small_is_skipped_with_reason_and_blocked(config, store):
    res = image_guard(config, store, size=4).generate("x", seed=1)
    rec = res.report.stage("watermark")
    assert rec.status.value == "skipped" and "too small" in rec.reason
    assert res.status == "blocked"  # default watermark policy: block
    res = image_guard(config, store, size=4, on_fail="flag").generate("x", seed=1)
    assert res.status == "flagged"
    assert res.report.stage("self_check").status.value == "skipped"


def test_unavailable_stage_says_why(config, store):
    stages = [UnavailableStage("watermark", "watermark unavailable: no key file",
                               modalities=["text"])]
    res = Guard(EchoTextGenerator(), store=store, config=config, stages=stages).generate("x")
    rec = res.report.stage("watermark")
    assert rec.status.value == "skipped" and "no key file" in rec.reason
    assert res.status == "blocked"


def test_text_stage_requires_the_generator_to_apply_the_config(config, store):
    class FakeTextWM:
        scheme, version, payload_bits, fpr, key_id = "fake-text", "1", 0, 1e-3, "k"
        from guardrail import Modality
        modality = Modality.TEXT

        def generation_config(self):
            return "CONFIG"

        def describe(self):
            return {"scheme": self.scheme, "key_id": self.key_id}

    gen = EchoTextGenerator()  # records hooks but does not report applying them
    res = Guard(gen, store=store, config=config,
                stages=[WatermarkStage(FakeTextWM(), on_fail="flag")]).generate("x")
    assert gen.calls[-1][1].watermarking_config == "CONFIG"
    rec = res.report.stage("watermark")
    assert rec.status.value == "skipped" and "did not apply" in rec.reason
    assert res.status == "flagged"


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 3), np.uint8)])
def test_fake_scheme_refuses_tiny_images(bad):
    from guardrail import Artifact, GenerationMetadata
    from guardrail.watermark.base import CannotWatermark

    art = Artifact(modality="image", content=bad, metadata=GenerationMetadata(model_id="m"))
    with pytest.raises(CannotWatermark):
        FakeLSBWatermarker().embed(art, 1)


class _TextWM:
    """A text scheme whose final file never verifies; the generated text does or does not."""

    from guardrail import Modality
    modality = Modality.TEXT
    scheme, version, fpr = "fake-text", "1", 1e-3

    def __init__(self, generated_verifies: bool) -> None:
        self.generated_verifies = generated_verifies

    def _res(self, detected, p):
        from guardrail._types import WatermarkResult

        return WatermarkResult(detected=detected, scheme=self.scheme, p_value=p, fpr=self.fpr,
                               tokens=5)

    def detect(self, artifact):
        return self._res(False, 0.2)

    def detect_text(self, text):
        return self._res(True, 1e-9) if self.generated_verifies else self._res(False, 0.3)


def _text_guard(config, store, wm, **kw):
    from guardrail.stages import WatermarkEvidence
    from guardrail.testing import FakeCheck

    def mark(ctx):
        ctx.evidence.watermark = WatermarkEvidence(scheme=wm.scheme, version=wm.version,
                                                   fpr=wm.fpr)
        return True
    return Guard(EchoTextGenerator(), store=store, config=config,
                 stages=[FakeCheck(mark, slot="watermark", name="mark"),
                         WatermarkSelfCheck(wm, **kw)])


@pytest.mark.parametrize("policy", ["flag", "block", "continue"])
def test_a_weak_text_mark_follows_the_unverifiable_text_policy(config, store, policy):
    res = _text_guard(config, store, _TextWM(False), unverifiable_text=policy).generate(
        "an answer of a few words")
    check = res.report.stage("self_check")
    assert check.details["weak"] is True and check.details["policy"] == policy
    assert check.details["generated_p_value"] == 0.3 and check.details["p_value"] == 0.2
    assert "too weak to verify" in check.reason and "lost nothing" in check.reason
    assert check.status.value == {"flag": "flagged", "block": "blocked",
                                  "continue": "failed"}[policy]
    assert res.status == {"flag": "flagged", "block": "blocked", "continue": "ok"}[policy]


def test_a_text_mark_lost_in_encoding_is_a_self_check_failure(config, store):
    res = _text_guard(config, store, _TextWM(True), unverifiable_text="flag").generate("x y z")
    check = res.report.stage("self_check")
    assert res.status == "blocked" and check.status.value == "blocked"
    assert "weak" not in check.details and "does not verify on the encoded" in check.reason


def test_unverifiable_text_policy_is_validated():
    with pytest.raises(ValueError, match="unverifiable_text must be one of"):
        WatermarkSelfCheck(_TextWM(False), unverifiable_text="ignore")


class _PickyLSB(FakeLSBWatermarker):
    """Refuses the first ``refusals`` ids as payload-dependent (like a short audio clip)."""

    def __init__(self, refusals: int, payload_dependent: bool = True) -> None:
        self.refusals, self.payload_dependent, self.tried = refusals, payload_dependent, []

    def embed(self, artifact, payload):
        from guardrail.watermark.base import CannotWatermark

        self.tried.append(payload)
        if len(self.tried) <= self.refusals:
            exc = CannotWatermark(f"cannot embed: id {payload:04x} does not fit")
            exc.payload_dependent = self.payload_dependent
            raise exc
        return super().embed(artifact, payload)


def test_an_id_that_does_not_fit_is_replaced_by_another(config, store, tmp_path):
    from guardrail.watermark.stages import ID_ATTEMPTS

    wm = _PickyLSB(refusals=ID_ATTEMPTS - 1)
    res = Guard(SolidImageGenerator(size=64), store=store, config=config,
                stages=[WatermarkStage(wm), WatermarkSelfCheck(wm)]).generate(
        "x", output=tmp_path / "o.png", seed=1)
    assert res.status == "ok" and len(wm.tried) == ID_ATTEMPTS
    assert res.report.stage("watermark").details["payload"] == f"{wm.tried[-1]:04x}"
    assert res.report.stage("self_check").details["payload"] == f"{wm.tried[-1]:04x}"


def test_an_input_that_fits_no_id_is_skipped_with_its_policy(config, store, tmp_path):
    from guardrail.watermark.stages import ID_ATTEMPTS

    wm = _PickyLSB(refusals=100)
    res = Guard(SolidImageGenerator(size=64), store=store, config=config,
                stages=[WatermarkStage(wm), WatermarkSelfCheck(wm)]).generate(
        "x", output=tmp_path / "o.png", seed=1)
    rec = res.report.stage("watermark")
    assert len(wm.tried) == ID_ATTEMPTS and rec.status.value == "skipped"
    assert f"{ID_ATTEMPTS} ids were tried" in rec.reason and rec.details["ids_tried"] == ID_ATTEMPTS
    assert res.status == "blocked" and not (tmp_path / "o.png").exists()
    # a refusal that does not depend on the id is not retried
    wm = _PickyLSB(refusals=100, payload_dependent=False)
    res = Guard(SolidImageGenerator(size=64), store=store, config=config,
                stages=[WatermarkStage(wm), WatermarkSelfCheck(wm)]).generate("x", seed=1)
    assert len(wm.tried) == 1 and res.report.stage("watermark").status.value == "skipped"
