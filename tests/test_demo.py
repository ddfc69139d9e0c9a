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
    assert code == 0
    assert [r["modality"] for r in reports] == ["text", "image", "audio"]
    for r in reports:
        assert r["status"] == "ok", (r["modality"], [s for s in r["stages"] if s["status"] != "ok"])
        assert Path(r["output"]).is_file()
        stages = {s["stage"]: s for s in r["stages"]}
        assert stages["watermark"]["status"] == "ok"
        assert stages["self_check"]["status"] == "ok"
        assert stages["provenance"]["status"] == "ok", stages["provenance"]
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
