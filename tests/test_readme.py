"""The README's Python examples, run as a reader would copy them: every ```python block of
README.md in order, in one namespace, in an empty folder. A block whose first line is the
marker comment below is an illustration that cannot run alone and is left out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: first line of a README python block that is not meant to run alone
SKIP_MARKER = "# not run by tests/test_readme.py"


def python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)
    return [b for b in blocks if not b.startswith(SKIP_MARKER)]


def test_the_readme_has_python_examples():
    blocks = python_blocks()
    assert blocks and "Guard(" in blocks[0]


@pytest.mark.slow
def test_the_readme_python_examples_run_and_protect_the_output(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("GUARDRAIL_PATHS__DATA_DIR", str(tmp_path / "data"))
    ns: dict[str, object] = {"__name__": "readme"}
    try:
        for i, block in enumerate(python_blocks()):
            exec(compile(block, f"README.md python block {i + 1}", "exec"), ns)
    finally:
        for name in ("guard", "bare"):
            if hasattr(ns.get(name), "close"):
                ns[name].close()
    result = ns["result"]
    stages = {s.stage: s for s in result.report.stages}
    assert (work / "rivers.txt").is_file(), [s.to_dict() for s in result.report.stages]
    assert result.status in ("ok", "flagged")
    for slot in ("watermark", "provenance", "record"):
        assert stages[slot].status.value == "ok", (slot, stages[slot].reason)
    # a text can be too short or predictable to confirm its mark at the FPR under some keys
    # (README, Watermarks): then, and only then, the self-check flags it and says so
    check = stages["self_check"]
    assert check.status.value == "ok" or (
        check.status.value == "flagged" and "the generated text fails the test too"
        in (check.reason or "")), (check.status.value, check.reason)
    assert stages["provenance"].details["state"] == "TRUSTED"
    evidence = result.report.extra["evidence"]
    assert evidence["watermark"]["scheme"] == "kgw" and evidence["provenance"]["state"] == "TRUSTED"
    # recorded in the configured store, under the data folder the environment names
    from guardrail import Config, ReportStore

    config = Config.load()
    assert Path(config.data_dir) == tmp_path / "data"
    with ReportStore(config.store_url) as store:
        assert store.get(result.report_id).status == result.status
    # what was written is what was signed, and it verifies
    from guardrail.provenance.settings import ProvenanceSettings
    from guardrail.provenance.verify import verify_path

    assert (work / "rivers.txt").read_bytes() == result.artifact.data
    trust = ProvenanceSettings.from_config(config).trust()
    assert verify_path(work / "rivers.txt", trust=trust).state.value == "TRUSTED"
    # the second example: the defaults plus a stage of one's own, or one's own stages only
    guard, bare = ns["guard"], ns["bare"]
    assert [s.name for s in guard.stages["output_checks"]][-1] == "NoDigits"
    assert guard.stages["watermark"] and guard.stages["provenance"]
    assert not bare.stages["watermark"] and not bare.stages["provenance"]
    assert capsys.readouterr().out.startswith(f"{result.status}\n{result.report_id}\n")
