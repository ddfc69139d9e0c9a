"""The command line: JSON contracts, exit codes, and bad input recorded as reports."""

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from guardrail.cli import main


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def store_args(tmp_path: Path) -> list[str]:
    return ["--store", f"sqlite:///{tmp_path / 'cli.db'}"]


def listed(capsys, tmp_path) -> list[dict]:
    code, out, _ = run(capsys, "reports", "list", "--json", *store_args(tmp_path))
    assert code == 0
    return json.loads(out)


@pytest.mark.slow
def test_generate_text_json_contract_and_reports(capsys, tmp_path):
    assert run(capsys, "keys", "init", *store_args(tmp_path))[0] == 0
    out_file = tmp_path / "o.txt"
    code, out, err = run(capsys, "generate", "--modality", "text", "--prompt",
                         "Describe a walk along a river.", "-o", str(out_file), "--param",
                         "max_new_tokens=96", "--param", "min_new_tokens=96", "--seed", "1",
                         "--json", *store_args(tmp_path))
    obj = json.loads(out) if out.strip() else {}
    why = [(s["stage"], s["status"], s.get("reason")) for s in obj.get("stages", [])
           if s["status"] != "ok"]
    assert code == 0, (err, why)
    check = {s["stage"]: s for s in obj["stages"]}["self_check"]
    if check["status"] == "ok":
        assert obj["status"] == "ok", why
    else:  # the key is fresh, so about 1 text in 40 of 96 tokens carries too weak a mark
        assert check["status"] == obj["status"] == "flagged", why
        assert check["details"]["weak"] and check["details"]["generated_p_value"] > 1e-3
    assert {"report_id", "modality", "output", "stages", "status"} <= set(obj)
    assert obj["modality"] == "text" and obj["output"] == str(out_file)
    assert out_file.read_text(encoding="utf-8").strip()
    for stage in obj["stages"]:
        assert {"stage", "status", "duration_ms", "reason"} <= set(stage)
    assert [s["stage"] for s in obj["stages"]][:2] == ["input_policy", "generate"]
    assert obj["metadata"]["parameters"]["max_new_tokens"] == 96
    stages = {s["stage"]: s for s in obj["stages"]}
    assert stages["watermark"]["status"] == "ok" and stages["watermark"]["details"]["scheme"] == "kgw"
    assert stages["provenance"]["status"] == "ok"
    from guardrail.provenance.verify import verify_text

    prov = verify_text(out_file.read_text(encoding="utf-8"), trust=None)
    assert prov.state.value in ("TRUSTED", "VALID_UNTRUSTED") and prov.ai_generated is True
    reports = listed(capsys, tmp_path)
    assert [r["report_id"] for r in reports] == [obj["report_id"]]
    code, out, _ = run(capsys, "reports", "show", obj["report_id"][:8], "--json",
                       *store_args(tmp_path))
    assert code == 0 and json.loads(out)["report_id"] == obj["report_id"]
    code, out, _ = run(capsys, "reports", "show", obj["report_id"], *store_args(tmp_path))
    assert code == 0 and "input_policy" in out and obj["report_id"] in out


@pytest.mark.parametrize(
    ("args", "exit_code", "message"),
    [
        (["--modality", "text", "--prompt", ""], 4, "the prompt is empty"),
        (["--modality", "text", "--prompt", "x" * 2001], 4, "the limit is 2000"),
        (["--modality", "video", "--prompt", "hi"], 4, "unknown modality 'video'"),
        (["--modality", "image", "--prompt", "hi", "--output-ext", ".txt"], 4,
         "a .txt file cannot hold image"),
        (["--modality", "text", "--prompt", "hi", "--output-dir", "missing"], 7,
         "does not exist"),
        (["--modality", "text", "--prompt", "hi", "--model", "MODELDIR"], 5,
         "no config.json"),
    ],
)
def test_bad_requests_exit_with_documented_codes_and_are_recorded(capsys, tmp_path, args,
                                                                  exit_code, message):
    argv, out_name = [], "o.txt"
    it = iter(args)
    for a in it:
        if a == "--output-ext":
            out_name = "o" + next(it)
        elif a == "--output-dir":
            out_name = f"{next(it)}/o.txt"
        elif a == "MODELDIR":  # with keys: they are checked before a model is loaded
            assert run(capsys, "keys", "init", *store_args(tmp_path))[0] == 0
            (tmp_path / "notamodel").mkdir()
            argv.append(str(tmp_path / "notamodel"))
        else:
            argv.append(a)
    code, out, err = run(capsys, "generate", *argv, "-o", str(tmp_path / out_name), "--json",
                         *store_args(tmp_path))
    assert code == exit_code
    assert message in err
    obj = json.loads(out)
    assert obj["exit_code"] == exit_code and message in obj["error"]
    reports = listed(capsys, tmp_path)
    assert len(reports) == 1 and reports[0]["report_id"] == obj["report_id"]
    assert reports[0]["status"] == "error" and message in reports[0]["error"]
    assert not any(p.name.startswith(("o.", ".o.")) for p in tmp_path.rglob("*"))


def test_without_keys_nothing_is_generated_and_the_error_says_how_to_fix(capsys, tmp_path):
    code, out, err = run(capsys, "generate", "--modality", "text", "--prompt", "Hello.",
                         "-o", str(tmp_path / "o.txt"), "--param", "max_new_tokens=4", "--json",
                         *store_args(tmp_path))
    assert code == 12 and "guardrail keys init" in err  # was 3 "blocked", after generating
    obj = json.loads(out)
    assert obj["error_type"] == "KeyFileError" and not (tmp_path / "o.txt").exists()
    report = listed(capsys, tmp_path)[0]
    stages = {s["stage"]: s for s in report["stages"]}
    assert report["status"] == "error" and stages["watermark"]["status"] == "error"
    assert stages["generate"]["status"] == "skipped"


@pytest.mark.slow
def test_a_text_too_short_to_test_is_flagged_not_blocked_unless_configured(capsys, tmp_path):
    assert run(capsys, "keys", "init", *store_args(tmp_path))[0] == 0
    args = ["generate", "--modality", "text", "--prompt", "Name a colour.", "--param",
            "max_new_tokens=4", "--seed", "1", "--json", *store_args(tmp_path)]
    code, out, _ = run(capsys, *args, "-o", str(tmp_path / "a.txt"))
    obj = json.loads(out)
    stages = {s["stage"]: s for s in obj["stages"]}
    assert stages["watermark"]["status"] == "ok"            # marked while decoding
    check = stages["self_check"]
    assert check["status"] == "skipped" and "scorable tokens" in check["reason"]
    assert check["details"]["too_short"] is True and check["details"]["policy"] == "flag"
    assert code == 0 and obj["status"] == "flagged" and (tmp_path / "a.txt").is_file()
    cfg = tmp_path / "strict.toml"
    cfg.write_text('[policy]\nunverifiable_text = "block"\n')
    code, out, _ = run(capsys, *args, "--config", str(cfg), "-o", str(tmp_path / "b.txt"))
    obj = json.loads(out)
    assert code == 3 and obj["status"] == "blocked" and not (tmp_path / "b.txt").exists()
    assert {s["stage"]: s for s in obj["stages"]}["self_check"]["details"]["policy"] == "block"


def test_blocked_prompt_exits_3_without_loading_a_model(capsys, tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text("[policy]\nblocked_terms = ['forbidden']\n")
    code, out, _ = run(capsys, "generate", "--config", str(cfg), "--modality", "text",
                       "--prompt", "something forbidden", "-o", str(tmp_path / "o.txt"),
                       "--json", "--model", "/nonexistent-model-dir", *store_args(tmp_path))
    assert code == 3  # the bad model path was never touched: the policy stopped it first
    assert json.loads(out)["status"] == "blocked"
    assert not (tmp_path / "o.txt").exists()


def test_unknown_report_and_empty_store(capsys, tmp_path):
    code, out, _ = run(capsys, "reports", "list", *store_args(tmp_path))
    assert code == 0 and "no reports yet" in out
    code, _, err = run(capsys, "reports", "show", "deadbeefdead", *store_args(tmp_path))
    assert code == 9 and "no report 'deadbeefdead'" in err


def test_bad_config_exits_8(capsys, tmp_path):
    cfg = tmp_path / "g.toml"
    cfg.write_text("[policy]\nmax_prompt_chars = -3\n")
    code, _, err = run(capsys, "reports", "list", "--config", str(cfg))
    assert code == 8 and "max_prompt_chars" in err


def test_keys_init_creates_private_key_and_config_show_has_no_secret(capsys, tmp_path):
    data = ["--data-dir", str(tmp_path / "data")]
    code, out, _ = run(capsys, "keys", "init", "--json", *data)
    assert code == 0
    key = json.loads(out)["keys"][0]
    assert key["created"] is True
    path = Path(key["file"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = path.read_text().strip()
    code, out, _ = run(capsys, "keys", "init", "--json", *data)
    assert json.loads(out)["keys"][0]["created"] is False
    code, out, _ = run(capsys, "config", "show", "--json", *data)
    assert code == 0 and secret not in out
    assert json.loads(out)["keys_dir"] == str(tmp_path / "data" / "keys")


def test_store_password_is_hidden(capsys):
    code, out, _ = run(capsys, "config", "show", "--json", "--store",
                       "postgresql+psycopg://user:hunter2@db.invalid/g")
    assert code == 0 and "hunter2" not in json.loads(out)["store_url"]


def test_console_entry_and_usage_errors():
    res = subprocess.run([sys.executable, "-m", "guardrail", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and "generate" in res.stdout and "exit codes" in res.stdout
    res = subprocess.run([sys.executable, "-m", "guardrail", "generate"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2 and "required" in res.stderr
