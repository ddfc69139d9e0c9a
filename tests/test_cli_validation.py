"""The command line checks what it can before doing expensive work, and means what it says:
global options in either place, cheap checks before a model is loaded, clear messages and
documented exit codes for bad input, a closed pipe, an ambiguous report id."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from guardrail import GenerationMetadata, Report, ReportStore, StageRecord
from guardrail.cli import main
from guardrail.store import PENDING


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def log_levels():
    """main() sets the level of the project's loggers; put them back afterwards."""
    names = ("guardrail", "generators", "audits", "dashboard")
    saved = {n: logging.getLogger(n).level for n in names}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def _report(rid: str, *, status: str = "ok", output: str | None = None) -> Report:
    return Report(report_id=rid, created_at="2026-01-01T00:00:00+00:00", modality="text",
                  status=status, metadata=GenerationMetadata(model_id="m"),
                  stages=[StageRecord(stage="record", status="ok")], output=output)


# -- global options (issue 11, item 6) -------------------------------------------------------
@pytest.mark.parametrize("where", ["before", "after"])
def test_store_before_or_after_the_verb(capsys, tmp_path, where):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    with ReportStore(url) as store:
        store.save(_report("a" * 32))
    opt = ["--store", url]
    argv = [*opt, "reports", "list", "--json"] if where == "before" else \
        ["reports", "list", "--json", *opt]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and [r["report_id"] for r in json.loads(out)] == ["a" * 32]


@pytest.mark.parametrize("where", ["before", "between", "after"])
def test_data_dir_before_between_or_after_the_verbs(capsys, tmp_path, where):
    opt = ["--data-dir", str(tmp_path / "d")]
    argv = {"before": [*opt, "config", "show", "--json"],
            "between": ["config", *opt, "show", "--json"],
            "after": ["config", "show", "--json", *opt]}[where]
    code, out, _ = run(capsys, *argv)
    shown = json.loads(out)
    assert code == 0 and shown["data_dir"] == str(tmp_path / "d")
    assert shown["store_url"] == f"sqlite:///{tmp_path / 'd' / 'guardrail.db'}"


def test_after_the_verb_overrides_before_it(capsys, tmp_path):
    code, out, _ = run(capsys, "--data-dir", str(tmp_path / "a"), "config", "show", "--json",
                       "--data-dir", str(tmp_path / "b"))
    assert code == 0 and json.loads(out)["data_dir"] == str(tmp_path / "b")


@pytest.mark.parametrize("where", ["before", "after"])
def test_config_before_or_after_the_verb(capsys, tmp_path, where):
    cfg = tmp_path / "g.toml"
    cfg.write_text("[policy]\nmax_prompt_chars = 77\n")
    opt = ["--config", str(cfg)]
    argv = [*opt, "config", "show", "--json"] if where == "before" else \
        ["config", "show", "--json", *opt]
    code, out, _ = run(capsys, *argv)
    shown = json.loads(out)
    assert code == 0 and shown["config_file"] == str(cfg)
    assert shown["settings"]["policy"]["max_prompt_chars"] == 77


@pytest.mark.parametrize(("argv", "level"), [
    (["-v", "config", "show"], logging.INFO),
    (["config", "show", "-v"], logging.INFO),
    (["-vv", "config", "show"], logging.DEBUG),
    (["config", "show", "-vv"], logging.DEBUG),
    (["config", "show"], logging.WARNING),
])
def test_verbose_before_or_after_the_verb(capsys, log_levels, argv, level):
    assert run(capsys, *argv)[0] == 0
    assert logging.getLogger("guardrail").level == level


# -- a closed pipe ---------------------------------------------------------------------------
def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `guardrail config show | head` once head has exited
    try:
        res = subprocess.run([sys.executable, "-m", "guardrail", "config", "show",
                              "--data-dir", str(tmp_path)], stdout=write_end,
                             stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert res.returncode == 141 and res.stderr == ""


# -- report ids ------------------------------------------------------------------------------
def test_an_ambiguous_report_id_prefix_says_so_and_lists_matches(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with ReportStore(url) as store:
        for rid in ("abcdef01" + "0" * 24, "abcdef02" + "0" * 24, "99" + "0" * 30):
            store.save(_report(rid))
    code, _, err = run(capsys, "reports", "show", "abcdef", "--store", url)
    assert code == 9 and "ambiguous" in err and "2 reports start with it" in err
    assert "abcdef010000" in err and "abcdef020000" in err
    # a prefix under 6 characters never picks a report, even a unique one, and says why
    code, _, err = run(capsys, "reports", "show", "99", "--store", url)
    assert code == 9 and "ambiguous" in err and "at least 6 characters" in err
    assert "990000000000" in err
    code, out, _ = run(capsys, "reports", "show", "abcdef01", "--json", "--store", url)
    assert code == 0 and json.loads(out)["report_id"].startswith("abcdef01")
    code, _, err = run(capsys, "reports", "show", "ffffff", "--store", url)
    assert code == 9 and "no report 'ffffff'" in err


def test_an_interrupted_release_is_shown_as_interrupted(capsys, tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    there = tmp_path / "there.txt"
    there.write_text("x")
    with ReportStore(url) as store:
        store.save(_report("1" * 32, status=PENDING, output=str(tmp_path / "gone.txt")))
        store.save(_report("2" * 32, status=PENDING, output=str(there)))
    code, out, _ = run(capsys, "reports", "list", "--json", "--store", url)
    assert code == 0
    assert {r["report_id"][0]: r["status"] for r in json.loads(out)} == {
        "1": "interrupted", "2": "pending"}
    code, out, _ = run(capsys, "reports", "show", "1" * 32, "--store", url)
    assert code == 0 and "status   interrupted" in out and "no output was released" in out
    code, out, _ = run(capsys, "reports", "list", "--status", "pending", "--store", url)
    assert code == 0 and "interrupted" in out and "pending" in out


# -- watermark embed -------------------------------------------------------------------------
@pytest.mark.parametrize("payload", ["zz", "0x", "-1", "12 34"])
def test_a_payload_that_is_not_hex_is_a_bad_request(capsys, tmp_path, payload):
    from PIL import Image

    data = ["--data-dir", str(tmp_path / "d")]
    assert run(capsys, "keys", "init", *data)[0] == 0
    img = tmp_path / "in.png"
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(img)
    code, _, err = run(capsys, "watermark", "embed", str(img), "-o", str(tmp_path / "o.png"),
                       "--payload", payload, *data)
    assert code == 4 and "is not a hexadecimal watermark id" in err
    assert not (tmp_path / "o.png").exists()


# -- generate: cheap checks first (the model path does not exist: loading it would exit 5) ----
def _generate(capsys, tmp_path, *extra: str, output: str | None = None) -> tuple[int, dict, str]:
    code, out, err = run(capsys, "generate", "--modality", "text", "--prompt", "Hello there.",
                         "-o", output or str(tmp_path / "o.txt"), "--model", "/nonexistent-model",
                         "--json", "--store", f"sqlite:///{tmp_path / 'r.db'}", *extra)
    return code, json.loads(out), err


def test_a_missing_watermark_key_exits_12_before_loading_the_model(capsys, tmp_path):
    code, obj, err = _generate(capsys, tmp_path)
    assert code == 12 and obj["error_type"] == "KeyFileError"
    assert "guardrail keys init" in err and "[watermark] enabled" in err
    with ReportStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        rep = store.get(obj["report_id"])
    assert rep.status == "error" and rep.stage("watermark").status.value == "error"
    assert rep.stage("generate").status.value == "skipped"
    assert not (tmp_path / "o.txt").exists()


def test_a_missing_signing_chain_exits_12_before_loading_the_model(capsys, tmp_path):
    import shutil

    from guardrail import Config

    assert run(capsys, "keys", "init")[0] == 0
    shutil.rmtree(Config.load().keys_dir / "c2pa")
    code, obj, err = _generate(capsys, tmp_path)
    assert code == 12 and "guardrail keys init" in err and "[provenance] enabled" in err
    assert not (tmp_path / "o.txt").exists()
    # with provenance off, the request goes on to the model (which does not exist here)
    cfg = tmp_path / "g.toml"
    cfg.write_text("[provenance]\nenabled = false\n")
    code, _, _ = _generate(capsys, tmp_path, "--config", str(cfg))
    assert code == 5


@pytest.mark.parametrize(("output", "message"), [
    ("/dev/null", "not a regular file"),
    ("LONG", "too long for its temporary file"),
    ("/proc/guardrail-out.txt", "cannot write output"),
])
def test_an_output_that_cannot_be_written_exits_7_before_loading_the_model(capsys, tmp_path,
                                                                          output, message):
    if output.startswith("/proc") and not Path("/proc/self").exists():
        pytest.skip("no /proc here")
    if output == "LONG":
        output = str(tmp_path / ("a" * 250 + ".txt"))
    code, obj, err = _generate(capsys, tmp_path, output=output)
    assert code == 7 and message in err and obj["error_type"] == "OutputError"


def test_a_malformed_param_is_a_bad_request(capsys, tmp_path):
    code, obj, err = _generate(capsys, tmp_path, "--param", "max_new_tokens")
    assert code == 4 and "expected KEY=VALUE" in err


def test_an_unknown_param_exits_4_naming_the_valid_ones_before_generating(capsys, tmp_path,
                                                                         monkeypatch):
    import guardrail.guard as guard_module
    from guardrail.testing import EchoTextGenerator

    gen = EchoTextGenerator()
    gen.parameters = frozenset({"max_new_tokens", "temperature"})
    assert run(capsys, "keys", "init")[0] == 0

    def fake_guard_from_config(config, modality, **kw):
        return guard_module.Guard(gen, store=kw["store"], config=config, stages=[])

    monkeypatch.setattr(guard_module, "guard_from_config", fake_guard_from_config)
    code, obj, err = _generate(capsys, tmp_path, "--param", "foo=bar")
    assert code == 4 and obj["error_type"] == "InputError"
    assert "unknown generation parameter(s)" in err and "foo" in err
    assert "valid: max_new_tokens, temperature" in err
    assert gen.calls == []  # never generated
    with ReportStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        assert store.get(obj["report_id"]).status == "error"


@pytest.mark.slow
def test_an_unknown_param_of_the_embedded_text_model_lists_its_keys(capsys, tmp_path):
    assert run(capsys, "keys", "init")[0] == 0
    code, out, err = run(capsys, "generate", "--modality", "text", "--prompt", "Hello.", "-o",
                         str(tmp_path / "o.txt"), "--param", "foo=bar", "--store",
                         f"sqlite:///{tmp_path / 'r.db'}")
    assert code == 4 and "foo" in err and "max_new_tokens" in err


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(1, 7))
def test_a_short_tts_clip_is_marked_and_verified_whatever_the_seed(capsys, tmp_path, seed):
    assert run(capsys, "keys", "init")[0] == 0
    out_file = tmp_path / "x.wav"
    code, out, err = run(capsys, "generate", "--modality", "audio", "--prompt",
                         "Hello from guardrail.", "-o", str(out_file), "--seed", str(seed),
                         "--json", "--store", f"sqlite:///{tmp_path / 'r.db'}")
    stages = {s["stage"]: s for s in json.loads(out)["stages"]}
    assert code == 0 and stages["watermark"]["status"] == "ok", err
    assert stages["self_check"]["status"] == "ok"
    assert stages["self_check"]["details"]["payload"] == stages["watermark"]["details"]["payload"]
