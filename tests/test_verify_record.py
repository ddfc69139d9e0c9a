"""End to end: every mark is bound to its content (record match), the verification report
reads right on the third-party C2PA fixtures and on fresh guardrail outputs, and a signed text
that was only reformatted is told apart from an edited one."""

from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from guardrail import Config, Guard
from guardrail._generator import Generated, ModelInfo
from guardrail._types import Modality
from guardrail.cli import main
from guardrail.testing import EchoTextGenerator, NoiseAudioGenerator
from guardrail.verify import verify_file

pytest.importorskip("c2pa", reason="c2pa-python is not installed")

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("GUARDRAIL_C2PA_FIXTURES")
                or ROOT.parent / "shared" / "fixtures" / "c2pa-peer")
needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir() and not os.environ.get("CI"),
    reason=f"C2PA fixtures folder {FIXTURES} is absent (set GUARDRAIL_C2PA_FIXTURES)")


def photo(name: str, size: int = 256) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return np.asarray(Image.fromarray(img[..., :3]).resize((size, size)))


class PhotoGenerator:
    """Stands in for an image model: returns a real photograph (so pHash is meaningful)."""

    modality = Modality.IMAGE

    def __init__(self, name: str = "astronaut", size: int = 256) -> None:
        self.img = photo(name, size)
        self.info = ModelInfo(model_id="fake:photo", revision="1", device="cpu")

    def generate(self, prompts, *, seed=None, params=None, hooks=None):
        return [Generated(content=self.img.copy(), parameters={"seed": seed}) for _ in prompts]


@pytest.fixture
def keyed(tmp_path) -> Config:
    from guardrail.factory import init_keys

    cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path / "data")},
                                 "detectors": {"image": [], "text": [], "audio": []}})
    init_keys(cfg)
    return cfg


@pytest.fixture
def guarded(keyed, tmp_path):
    """A guarded image output (watermarked, signed, recorded) and its report."""
    with Guard(PhotoGenerator(), config=keyed) as guard:
        res = guard.generate("a photo", output=tmp_path / "out.png", seed=1)
    assert res.status == "ok", [(s.stage, s.status, s.reason) for s in res.report.stages]
    return res


def cli(capsys, *args):
    code = main(list(args))
    out, _err = capsys.readouterr()
    return code, out


def test_the_guard_records_a_fingerprint_for_every_modality(keyed, tmp_path, guarded):
    assert guarded.report.extra["fingerprint"].startswith("phash:")
    for gen, prefix in ((EchoTextGenerator(), "text-sha256:"),
                        (NoiseAudioGenerator(), "env:")):
        with Guard(gen, config=keyed, stages=[]) as guard:
            res = guard.generate("hello there", seed=1)  # no output path: still recorded
        assert res.report.extra["fingerprint"].startswith(prefix), gen


def test_own_output_matches_its_record_signed_and_stripped(keyed, tmp_path, guarded):
    signed = verify_file(guarded.output, keyed, detectors=[])
    assert signed.label == "AI-generated" and signed.rule == "R3"
    assert signed.record.state == "match" and signed.record.report_id == guarded.report_id
    stripped = tmp_path / "stripped.jpg"
    Image.open(guarded.output).convert("RGB").save(stripped, quality=90)
    res = verify_file(stripped, keyed, detectors=[])
    assert res.provenance.state.value == "ABSENT"
    assert (res.rule, res.record.state) == ("R4", "match")
    assert res.to_dict()["recovered"]["report_id"] == guarded.report_id


def test_a_mirrored_stripped_output_still_finds_its_record(keyed, tmp_path, guarded):
    """A left-right flip keeps the picture (and the watermark) but not its pHash: the record
    is matched through the mirror image's fingerprint."""
    flipped = tmp_path / "flipped.jpg"
    Image.open(guarded.output).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
        flipped, quality=90)
    res = verify_file(flipped, keyed, detectors=[])
    assert res.watermark.detected and res.provenance.state.value == "ABSENT"
    assert (res.rule, res.record.state) == ("R4", "match")
    assert res.record.report_id == guarded.report_id


@pytest.mark.parametrize("change", ["crop", "rotate"])
def test_a_cropped_or_rotated_stripped_output_is_bound_through_its_region(keyed, tmp_path,
                                                                          change):
    """A quarter-area crop or a 15-degree rotation changes the pHash beyond its threshold;
    the record's region fingerprint, compared where the watermark's geometry places the
    file, still binds it: AI-generated (R4), not a watermark without a matching record."""
    with Guard(PhotoGenerator("coffee", 512), config=keyed) as guard:
        out = guard.generate("a photo", output=tmp_path / "out.png", seed=1)
    assert out.report.extra["region"].startswith("grid:1:")
    img = Image.open(out.output).convert("RGB")
    img = img.crop((100, 60, 356, 316)) if change == "crop" else img.rotate(15)
    changed = tmp_path / f"{change}.jpg"
    img.save(changed, quality=90)
    res = verify_file(changed, keyed, detectors=[])
    assert res.watermark.detected and res.watermark.geometry is not None
    assert (res.rule, res.record.state) == ("R4", "match"), res.record.reason
    assert "region of the marked original" in res.record.reason
    doc = res.to_dict()
    assert doc["recovered"]["report_id"] == out.report_id
    assert doc["recovered"]["region_match"]["correlation"] >= 0.9
    assert doc["watermark"]["geometry"]["scale"] == pytest.approx(
        2.0 if change == "crop" else 1.0, abs=0.05)


def test_a_copied_mark_on_another_photo_is_a_mismatch_not_ai(keyed, tmp_path, guarded, capsys):
    payload = guarded.report.extra["evidence"]["watermark"]["payload"]
    real = tmp_path / "real.png"
    Image.fromarray(photo("coffee")).save(real)
    forged = tmp_path / "forged.png"
    data = ["--data-dir", str(keyed.data_dir)]
    code, _ = cli(capsys, "watermark", "embed", str(real), "-o", str(forged),
                  "--payload", payload, *data)
    assert code == 0
    res = verify_file(forged, keyed, detectors=[])
    assert res.watermark.detected and res.watermark.payload == payload
    assert res.record.state == "mismatch" and res.record.candidates == 1
    assert res.label == "Watermark without matching record" and res.rule == "R9"
    assert res.recovered is None
    code, out = cli(capsys, "verify", str(forged), "--json", *data)
    doc = json.loads(out)
    assert code == 0 and doc["record"]["state"] == "mismatch"
    assert doc["verdict"]["label"] == "Watermark without matching record"
    code, out = cli(capsys, "verify", str(forged), *data)
    assert out.startswith("Watermark without matching record: watermark of this platform's key, "
                          "no matching record - possibly marked outside the guard or copied")
    assert "Record: mismatch - 1 record(s) carry this watermark" in out


def test_a_copy_onto_a_smooth_picture_is_not_bound_to_the_victims_record(tmp_path):
    """The worst case of a copy: a wide-band estimate of a guarded output added at 38 dB to a
    colour gradient gives the gradient the output's pHash; with the victim's id on it the
    record would "match". Version 1 marks (still detected, and copyable) make that forgery
    easy; the gradient's fingerprint does not bind it: not AI-generated."""
    from guardrail import Artifact
    from guardrail.factory import init_keys, watermarker_from_config
    from guardrail.fingerprint import fingerprint, match
    from guardrail.robustness.image_attacks import copy

    cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path / "data")},
                                 "detectors": {"image": [], "text": [], "audio": []},
                                 "watermark": {"image_scheme": "guardrail-image"}})
    init_keys(cfg)
    with Guard(PhotoGenerator(), config=cfg) as guard:
        victim = guard.generate("a photo", output=tmp_path / "out.png", seed=1)
    assert victim.status == "ok"
    payload = victim.report.extra["evidence"]["watermark"]["payload"]
    g = np.mgrid[:256, :256][1] / 256.0
    smooth = np.clip(60 + 120 * g[..., None] * np.array([1.0, 0.8, 0.6]), 0, 255)
    ghosted = copy((1, "wide"), marked=[np.asarray(Image.open(victim.output).convert("RGB"))])(
        Artifact(modality="image", content=smooth.astype(np.uint8), metadata={}))
    assert match(victim.report.extra["fingerprint"], fingerprint(ghosted))[0]
    forged = tmp_path / "forged.png"
    wm = watermarker_from_config(cfg, "image")
    Image.fromarray(wm.embed(ghosted, int(payload, 16)).content).save(forged)
    res = verify_file(forged, cfg, detectors=[])
    assert res.watermark.detected and res.watermark.payload == payload
    assert res.record.state == "not checked" and res.record.candidates == 1
    assert "too little coarse structure" in res.record.reason
    assert res.label == "Watermark without matching record" and res.rule == "R9"
    assert res.recovered is None


def test_a_mark_embedded_outside_the_guard_has_no_record(keyed, tmp_path, capsys):
    from guardrail import ReportStore

    ReportStore(keyed.store_url).close()  # the platform's store exists, without this mark
    real = tmp_path / "real.png"
    Image.fromarray(photo("chelsea")).save(real)
    marked = tmp_path / "marked.png"
    code, _ = cli(capsys, "watermark", "embed", str(real), "-o", str(marked),
                  "--data-dir", str(keyed.data_dir))
    assert code == 0
    res = verify_file(marked, keyed, detectors=[])
    assert res.watermark.detected
    assert res.record.state == "no record" and "marked outside the guard" in res.record.reason
    assert res.label == "Watermark without matching record"


def test_without_a_record_store_the_match_is_not_checked(keyed, tmp_path, guarded):
    stripped = tmp_path / "stripped.png"
    Image.open(guarded.output).convert("RGB").save(stripped)
    elsewhere = Config.load(overrides={
        "paths": {"data_dir": str(keyed.data_dir)},
        "store": {"url": f"sqlite:///{tmp_path / 'absent' / 'none.db'}"},
        "detectors": {"image": []}})
    res = verify_file(stripped, elsewhere, detectors=[])
    assert res.record.state == "not checked" and "no record store" in res.record.reason
    assert res.label == "Watermark without matching record"
    assert not (tmp_path / "absent" / "none.db").exists()  # nothing created


class _NoTextModel:
    tokenizer = None
    model = None


@pytest.mark.parametrize(("change", "label"), [
    ("nfkc", "Signed text, reformatted"),
    ("spaces", "Signed text, reformatted"),
    ("words", "Tampered"),
])
def test_reformatted_signed_text_is_not_tampered(keyed, tmp_path, change, label):
    from guardrail.provenance.files import sign_file

    plain = tmp_path / "plain.txt"
    plain.write_text("The ﬁrst  café\u00a0opens at nine.\nA second   line follows here.",
                     encoding="utf-8")
    signed = tmp_path / "signed.txt"
    sign_file(keyed, input=plain, output=signed, model_id="test-model")
    text = signed.read_text(encoding="utf-8")
    changed = {"nfkc": unicodedata.normalize("NFKC", text),
               "spaces": text.replace("  ", " ").replace("   ", " "),
               "words": text.replace("nine", "ten")}[change]
    assert changed != text
    copy = tmp_path / "copy.txt"
    copy.write_text(changed, encoding="utf-8")
    res = verify_file(copy, keyed, detectors=[], text_generator=_NoTextModel())
    assert res.label == label, res.summary
    doc = res.to_dict()
    assert doc["provenance"]["visible_text_unchanged"] is (label != "Tampered")
    if label != "Tampered":
        assert "only white space or the Unicode form changed" in res.summary


# -- the report on the third-party fixtures, as a verifier sees it (no platform keys) ------
@pytest.fixture
def verifier(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[detectors]\nimage = []\naudio = []\ntext = []\n', encoding="utf-8")
    return ["--config", str(cfg), "--data-dir", str(tmp_path / "verifier")]


#: file -> (exit code, lines the human report must contain)
REPORTS = {
    "no_alg.jpg": (4, ["Could not be verified: ", "algorithm.unsupported: the credentials use "
                       "a signing or hash algorithm this verifier does not support"]),
    "XCA.jpg": (3, ["Tampered: ", "signed by     C2PA Signer (issuer: C2PA Test Signing Cert)",
                    "assertion.dataHash.mismatch: the file's content (its pixels, samples or "
                    "text bytes) was changed after signing"]),
    "C.jpg": (0, ["Signed by C2PA Signer (untrusted)",
                  "signed at     2024-08-06T21:53:37+00:00, time-stamped by DigiCert "
                  "Timestamp 2023 (trusted)", "app           make_test_images 0.33.1",
                  "AI source     algorithmicMedia (created by an algorithm without a trained "
                  "model)", "actions       c2pa.created",
                  "trust list    empty (no certificate is trusted here)"]),
    "ocsp.jpg": (0, ["Likely AI-generated: declared by Adobe C2PA",
                     "AI source     compositeWithTrainedAlgorithmicMedia",
                     "app           Adobe Photoshop 26.9.0",
                     "ingredient    ocsp.jpg (componentOf): valid, signer not trusted here"]),
    "CIE-sig-CA.jpg": (0, ["ingredient    E-sig-CA.jpg (componentOf): invalid when it was "
                           "used - claimSignature.mismatch: the signature does not match"]),
    "E-sig-CA.jpg": (3, ["claimSignature.mismatch: the signature does not match the signed "
                         "claim", "signed at     unknown (not time-stamped)"]),
    "cloud.jpg": (4, ["manifest.inaccessible: the credentials are stored on a server",
                      "provenance.remote_manifest_fetch = true"]),
    "CA.jpg": (0, ["ingredient    A.jpg (parentOf): no credentials"]),
    "sample1.png": (0, ["No evidence of AI generation found",
                        "Content Credentials: ABSENT - none in this file"]),
}


@needs_fixtures
@pytest.mark.parametrize("name", sorted(REPORTS))
def test_fixture_report(name, verifier, capsys):
    code, out = cli(capsys, "verify", str(FIXTURES / name), *verifier)
    want_code, lines = REPORTS[name]
    for line in lines:
        assert line in out, f"{name}: {line!r} not in\n{out}"
    assert code == want_code, out
    assert "keys init" not in out  # a verifier is never told to create keys
    assert "only the platform that generated the file can check its watermark" in out
    code, js = cli(capsys, "verify", str(FIXTURES / name), "--json", *verifier)
    doc = json.loads(js)
    for key in ("signer", "issuer", "signed_at", "timestamped", "app", "digital_source_type",
                "actions", "ingredients", "failure_details", "trust"):
        assert key in doc["provenance"], key
    assert doc["record"]["state"] == "not checked"


def test_older_signed_text_without_digest_is_reformatted_through_its_record():
    """A text signed before ``org.guardrail.text``: the record found by the normalised text is
    the record of this very manifest, so its words are the signed ones."""
    from guardrail._types import ProvenanceResult, ProvenanceState
    from guardrail.verify import RecordMatch, VerifyResult, _visible_text_via_record, verdict

    def result(label: str) -> VerifyResult:
        prov = ProvenanceResult(state=ProvenanceState.INVALID, ai_generated=True,
                                failures=("assertion.dataHash.mismatch",), signer="S",
                                manifest={"label": "urn:c2pa:1"})
        res = VerifyResult(file="t.txt", media_type="text/plain", modality=Modality.TEXT,
                           provenance=prov, watermark=None,
                           record=RecordMatch(state="match", report_id="r1",
                                              how="text watermark + normalised text"),
                           recovered={"report_id": "r1", "manifest": {"label": label}})
        res.provenance = _visible_text_via_record(res)
        return verdict(res)

    assert result("urn:c2pa:1").label == "Signed text, reformatted"
    assert result("urn:c2pa:other").label == "Tampered"
