"""``guardrail audit run | list | show | export`` through the CLI, with a fake generator
(fast) and with the embedded SmolLM2 (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import audits.text
from guardrail import Guard
from guardrail.cli import main

from .conftest import BIASED_RULES, SMALL_PROMPTS, GroupTextGenerator


@pytest.fixture
def fast_audit_env(monkeypatch, tmp_path):
    for key, value in {"N_BOOT": "200", "PERMUTATIONS": "1000", "MIN_GROUP_N": "1",
                       "BATCH_SIZE": "8"}.items():
        monkeypatch.setenv(f"GUARDRAIL_AUDIT__{key}", value)
    gen = GroupTextGenerator(BIASED_RULES)

    def fake_guard(config, store, *, model=None, device=None):
        return Guard(gen, store=store, config=config, stages=[])

    monkeypatch.setattr(audits.text, "build_guard", fake_guard)
    return ["--data-dir", str(tmp_path / "data")]


def call(capsys, argv):
    code = main(argv)
    out = capsys.readouterr().out
    return code, (json.loads(out) if "--json" in argv else out)


def test_run_list_show_export_json(capsys, tmp_path, suite_file, fast_audit_env):
    common = fast_audit_env
    code, ev = call(capsys, ["audit", "run", str(suite_file), "--samples", "2", "--json",
                             "--out", str(tmp_path / "exports"), *common])
    assert code == 0
    assert ev["kind"] == "audit" and ev["status"] == "complete"
    assert ev["summary"]["generations"] == SMALL_PROMPTS * 2
    assert any("religion / refusal_rate" in f for f in ev["summary"]["flags"])
    for fmt in ("csv", "json", "html"):
        assert Path(ev["exports"][fmt]).is_file()
    audit_id = ev["evaluation_id"]

    code, listed = call(capsys, ["audit", "list", "--json", *common])
    assert code == 0 and [e["evaluation_id"] for e in listed] == [audit_id]
    assert "rows" not in listed[0]

    code, shown = call(capsys, ["audit", "show", audit_id[:24], "--json", *common])
    assert code == 0 and shown["rows"] == ev["rows"]

    code, text = call(capsys, ["audit", "show", audit_id, *common])
    assert code == 0 and "FLAGGED" in text and "religion" in text

    out = tmp_path / "report.html"
    code, res = call(capsys, ["audit", "export", audit_id, "--out", str(out), "--json", *common])
    assert code == 0 and res["file"] == str(out) and "<svg" in out.read_text()


def test_bad_suite_and_unknown_audit_exit_codes(capsys, tmp_path, fast_audit_env):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "bad", "version": "1", "kind": "text"}))
    code, err = call(capsys, ["audit", "run", str(bad), "--json", *fast_audit_env])
    assert code == 4 and err["error_type"] == "SuiteError"
    assert "bad.json" in err["error"] and "'description'" in err["error"]
    code, err = call(capsys, ["audit", "show", "nope", "--json", *fast_audit_env])
    assert code == 9 and "no audit 'nope'" in err["error"]


@pytest.mark.slow
def test_real_default_generator_small_audit(capsys, tmp_path, monkeypatch):
    """A few prompts on the embedded SmolLM2 through the full guard (keys created first)."""
    monkeypatch.setenv("GUARDRAIL_AUDIT__MAX_NEW_TOKENS", "12")
    monkeypatch.setenv("GUARDRAIL_AUDIT__N_BOOT", "100")
    monkeypatch.setenv("GUARDRAIL_AUDIT__PERMUTATIONS", "100")
    common = ["--data-dir", str(tmp_path / "data")]
    assert main(["keys", "init", *common]) == 0
    capsys.readouterr()
    code, ev = call(capsys, ["audit", "run", "text-demographics", "--limit", "8", "--samples",
                             "1", "--json", "--out", str(tmp_path / "x"), *common])
    assert code == 0 and ev["status"] == "complete"
    assert ev["config"]["generator"]["model_id"] == "embedded:smollm2"
    assert ev["config"]["params"]["max_new_tokens"] == 12
    assert ev["summary"]["generations"] == 8
    assert ev["summary"]["scored"] + ev["summary"]["failed"] == 8
    assert ev["summary"]["scored"] >= 6
    groups = {r["group"] for r in ev["rows"] if r.get("row_type") == "group"}
    assert {"male", "female", "Black", "White"} <= groups
    lines = Path(ev["config"]["checkpoint"]).read_text().splitlines()
    texts = [json.loads(line).get("text") for line in lines]
    assert all(t and "\ufeff" not in t for t in texts if t is not None)
    assert Path(ev["exports"]["html"]).stat().st_size > 1000
