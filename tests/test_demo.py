"""End to end on the embedded defaults: `guardrail demo` produces a guarded text, image and
audio file and three reports; each output carries a watermark that `guardrail watermark
detect` finds."""

import json
from pathlib import Path

import pytest

from guardrail.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    data = ["--data-dir", str(root / "data")]
    import contextlib
    import io

    from guardrail.keys import write_secret_file

    # a fixed watermark key (the demo creates the other keys): with the demo's fixed seed the
    # outputs are reproducible, so the text's mark - a statistical test that about 1 text in
    # 100 of 128 tokens fails under a fresh key - verifies on every run
    write_secret_file(root / "data" / "keys" / "watermark.key", bytes(range(32)).hex().encode())
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["demo", "--json", "--out", str(root / "out"), *data])
    return code, json.loads(buf.getvalue()), data, root


def run_json(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def test_demo_writes_three_guarded_outputs_and_reports(demo, capsys):
    code, reports, data, root = demo
    assert [r["modality"] for r in reports] == ["text", "image", "audio"]
    for r in reports:  # before the exit code, so that a failure names the stage and reason
        assert r["status"] == "ok", (r["modality"], [s for s in r["stages"] if s["status"] != "ok"])
        assert Path(r["output"]).is_file()
        stages = {s["stage"]: s for s in r["stages"]}
        assert stages["watermark"]["status"] == "ok"
        assert stages["self_check"]["status"] == "ok"
        assert stages["provenance"]["status"] == "ok", stages["provenance"]
    assert code == 0
    code, listed, _ = run_json(capsys, "reports", "list", "--json", *data)
    assert code == 0
    assert {r["report_id"] for r in listed} == {r["report_id"] for r in reports}
    keys = Path(root / "data" / "keys")
    assert (keys / "watermark.key").stat().st_mode & 0o077 == 0


def test_every_demo_output_carries_a_detectable_mark(demo, capsys):
    _code, reports, data, _root = demo
    for r in reports:
        code, res, err = run_json(capsys, "watermark", "detect", r["output"], "--json", *data)
        assert code == 0, err
        assert res["detected"] is True, (r["modality"], res)
        assert res["p_value"] <= res["fpr"]
        wm = r["extra"]["evidence"]["watermark"]
        if r["modality"] != "text":
            assert res["payload"] == wm["payload"]


def verify_json(capsys, path, data):
    code = main(["verify", str(path), "--json", *data])
    out, err = capsys.readouterr()
    return code, json.loads(out)


def test_demo_outputs_verify_trusted_and_ai_generated(demo, capsys):
    _code, reports, data, _root = demo
    for r in reports:
        code, v = verify_json(capsys, r["output"], data)
        assert code == 0
        assert v["provenance"]["state"] == "TRUSTED", (r["modality"], v["provenance"])
        assert v["provenance"]["ai_generated"] is True
        assert v["watermark"]["detected"] is True
        assert v["verdict"]["label"] == "AI-generated"
        assert v["verdict"]["summary"].startswith("AI-generated: signed by")
        assert "watermark verified" in v["verdict"]["summary"]


def test_one_changed_pixel_is_tampered(demo, capsys, tmp_path):
    from tests.provenance._helpers import png_change_one_pixel

    _code, reports, data, _root = demo
    image = Path(next(r["output"] for r in reports if r["modality"] == "image"))
    edited = tmp_path / "edited.png"
    edited.write_bytes(png_change_one_pixel(image.read_bytes()))
    code, v = verify_json(capsys, edited, data)
    assert v["provenance"]["state"] == "INVALID"
    assert "assertion.dataHash.mismatch" in v["provenance"]["failures"]
    assert v["verdict"]["label"] == "Tampered" and code == 3


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_stripped_image_is_recovered_through_the_watermark(demo, capsys, tmp_path, fmt):
    from PIL import Image

    _code, reports, data, _root = demo
    rep = next(r for r in reports if r["modality"] == "image")
    stripped = tmp_path / f"stripped.{fmt}"
    # re-saving through PIL drops the C2PA chunk / segment: the credentials are gone
    Image.open(rep["output"]).convert("RGB").save(stripped, quality=85)
    code, v = verify_json(capsys, stripped, data)
    assert v["provenance"]["state"] == "ABSENT"
    assert v["recovered"]["report_id"] == rep["report_id"]
    assert "watermark" in v["recovered"]["how"]
    assert v["verdict"]["summary"] == (
        f"AI-generated: credentials stripped, recovered via watermark (report {rep['report_id']})")


def test_stripped_audio_and_text_are_recovered(demo, capsys, tmp_path):
    import soundfile as sf

    from guardrail.textnorm import visible_text

    _code, reports, data, _root = demo
    audio = next(r for r in reports if r["modality"] == "audio")
    samples, rate = sf.read(audio["output"], dtype="float32")
    plain = tmp_path / "stripped.flac"
    sf.write(plain, samples, rate)  # a fresh file: no manifest
    code, v = verify_json(capsys, plain, data)
    assert v["provenance"]["state"] == "ABSENT"
    assert v["recovered"]["report_id"] == audio["report_id"]
    text = next(r for r in reports if r["modality"] == "text")
    pasted = tmp_path / "pasted.txt"
    # copy-paste that loses the invisible manifest: only the visible text survives
    pasted.write_text(visible_text(Path(text["output"]).read_text(encoding="utf-8")),
                      encoding="utf-8")
    code, v = verify_json(capsys, pasted, data)
    assert v["provenance"]["state"] == "ABSENT"
    assert v["watermark"]["detected"] is True
    assert v["recovered"]["report_id"] == text["report_id"]


def test_embedded_text_credentials_survive_a_copy_paste_round_trip(demo, capsys, tmp_path):
    _code, reports, data, _root = demo
    text = next(r for r in reports if r["modality"] == "text")
    content = Path(text["output"]).read_text(encoding="utf-8")
    pasted = tmp_path / "clipboard.txt"
    pasted.write_text("".join(list(content)), encoding="utf-8")  # characters, not bytes
    code, v = verify_json(capsys, pasted, data)
    assert v["provenance"]["state"] == "TRUSTED"


def test_demo_evaluations_fill_the_audit_and_detector_pages(demo, tmp_path):
    """`guardrail demo --evaluations --smoke` records what the dashboard's other pages show:
    an audit labelled a smoke run everywhere, a robustness run, and a detector evaluation
    with its ROC points."""
    import argparse

    from audits.report import outcome, render_html
    from guardrail.cli.demo import _demo_evaluations
    from guardrail.config import Config
    from guardrail.store import ReportStore

    _code, _reports, data, root = demo
    args = argparse.Namespace(config=None, store=None, data_dir=data[1], json=True, smoke=True)
    steps = _demo_evaluations(args, tmp_path)
    assert [s["exit_code"] for s in steps] == [0, 0, 0, 0], steps
    assert "SMOKE RUN - NOT A TEST" in steps[0]["step"]
    assert steps[0]["outcome"].startswith("smoke run - not a test")
    cfg = Config.load(overrides={"paths": {"data_dir": data[1]}})
    with ReportStore(cfg.store_url) as store:
        audits = store.list_evaluations(kind="audit")
        runs = store.list_evaluations(kind="robustness")
        evals = store.list_evaluations(kind="detector_eval")
    assert audits and audits[0].status == "complete" and audits[0].rows
    assert audits[0].config["smoke_run"] and outcome(audits[0])["state"] == "smoke"
    assert "(smoke run - not a test)" in render_html(audits[0])
    assert runs and runs[0].config["sample"] == 3 and runs[0].rows
    assert evals and evals[0].summary["auroc"] is not None
    roc = evals[0].rows
    assert len(roc) >= 2 and all({"fpr", "tpr"} <= set(p) for p in roc)
    assert roc[0]["fpr"] == 0.0 and roc[-1]["fpr"] == 1.0
