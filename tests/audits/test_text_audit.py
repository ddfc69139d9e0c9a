"""The text audit end to end with fake generators: a planted bias is flagged, failures are
recorded and the audit goes on, an interrupted audit resumes without regenerating, exports."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from audits import runner
from audits import text as audits_text
from audits.report import disparity_rows, export, group_rows
from audits.runner import AuditContext, Checkpoint, run_audit
from audits.suites import load_suite
from guardrail import plugins
from guardrail.config import Config
from guardrail.errors import SuiteError

from .conftest import BIASED_RULES, SMALL_PROMPTS, GroupTextGenerator


def run(make_guard, suite_file, generator, *, samples=3, resume=True, **audit):
    guard, store, cfg = make_guard(generator, **audit)
    ctx = AuditContext(config=cfg, store=store, guard=guard, samples=samples, resume=resume,
                       progress=False)
    return run_audit(load_suite(suite_file), ctx), store, cfg


def test_planted_bias_is_flagged_with_intervals_and_counts(make_guard, suite_file):
    gen = GroupTextGenerator(BIASED_RULES)
    ev, store, _ = run(make_guard, suite_file, gen)
    assert ev.kind == "audit" and ev.status == "complete"
    assert store.get_evaluation(ev.evaluation_id).status == "complete"
    assert ev.summary["generations"] == ev.summary["scored"] == SMALL_PROMPTS * 3
    assert ev.summary["failed"] == 0
    # one report per generation, prompts stored only as keyed hashes
    reports = store.list(limit=1000)
    assert len(reports) == SMALL_PROMPTS * 3
    assert all(r.prompt is None and r.metadata.prompt_hash.startswith("hmac-sha256:")
               for r in reports)
    refusal = {r["group"]: r for r in group_rows(ev)
               if r["attribute"] == "religion" and r["metric"] == "refusal_rate"}
    assert refusal["Muslim"]["value"] == 1.0 and refusal["Christian"]["value"] == 0.0
    assert all(r["n"] == 12 for r in refusal.values())  # 4 sets x 3 samples
    flagged = {(d["attribute"], d["metric"], d["kind"]) for d in disparity_rows(ev)
               if d["flagged"]}
    assert ("religion", "refusal_rate", "difference") in flagged
    assert ("religion", "refusal_rate", "ratio") in flagged
    assert ("religion", "sentiment", "difference") in flagged
    assert not any(a == "age" for a, _m, _k in flagged)
    assert len(ev.summary["flags"]) == len(flagged)
    assert any(f.startswith("religion / refusal_rate: difference 1.000") and "Muslim n=12" in f
               for f in ev.summary["flags"])
    for d in disparity_rows(ev):
        assert d["groups"] and d["n"] == sum(d["groups"].values())
        assert "p_value" in d and "p_adjusted" in d
        if d["value"] is not None:
            assert d["ci_low"] is not None and d["ci_high"] is not None
    # gendered-term use is measured for every attribute
    assert any(r["metric"] == "gendered_term_rate" for r in group_rows(ev))
    assert ev.config["suite"]["sources"][0]["title"] == "test source"
    assert ev.config["generator"]["model_id"] == "fake:group-text"
    assert ev.config["samples"] == 3


def test_failing_prompts_are_recorded_counted_and_the_audit_goes_on(make_guard, suite_file):
    gen = GroupTextGenerator(fail_on=("Jewish",))
    ev, store, _ = run(make_guard, suite_file, gen, samples=2)
    expected_failures = 4 * 2  # 4 sets with a Jewish prompt x 2 samples
    assert ev.status == "complete"
    assert ev.summary["failed"] == expected_failures
    assert ev.summary["scored"] == SMALL_PROMPTS * 2 - expected_failures
    assert ev.summary["failures_by_group"] == {"religion:Jewish": expected_failures}
    for f in ev.summary["failures"]:
        assert f["group"] == "Jewish" and "model crashed" in f["error"]
        assert store.get(f["report_id"]).status == "error"
    religion = {r["group"] for r in group_rows(ev) if r["attribute"] == "religion"
                and r["n"]}
    assert religion == {"Muslim", "Christian"}
    # the group whose every sample failed is shown with n=0, not tested - never left out
    jewish = [r for r in group_rows(ev) if r["group"] == "Jewish"]
    assert jewish and all(r["n"] == 0 and r["value"] is None for r in jewish)
    assert all(r["tested"] is False for r in jewish if "tested" in r)


def test_interrupted_audit_resumes_without_regenerating(make_guard, suite_file):
    first = GroupTextGenerator(BIASED_RULES, interrupt_after=2)  # 2 batches of 8, then ^C
    with pytest.raises(KeyboardInterrupt):
        run(make_guard, suite_file, first, samples=2)
    _, store, cfg = make_guard(GroupTextGenerator())
    [running] = store.list_evaluations(kind="audit")
    assert running.status == "running" and running.summary["samples_done"] == 16
    checkpoint = Path(running.config["checkpoint"])
    assert len(checkpoint.read_text().splitlines()) == 16
    done_before = {json.loads(line)["key"] for line in checkpoint.read_text().splitlines()}

    second = GroupTextGenerator(BIASED_RULES)
    ev, store, _ = run(make_guard, suite_file, second, samples=2)
    assert ev.evaluation_id == running.evaluation_id
    assert ev.status == "complete" and ev.summary["resumed"] is True
    assert ev.summary["resumed_from"] == 16
    assert len(second.prompts) == SMALL_PROMPTS * 2 - 16  # finished samples not redone
    lines = [json.loads(line) for line in checkpoint.read_text().splitlines()]
    assert len(lines) == SMALL_PROMPTS * 2 == len({r["key"] for r in lines})
    assert done_before <= {r["key"] for r in lines}
    assert ev.summary["scored"] == SMALL_PROMPTS * 2
    assert len(store.list_evaluations(kind="audit")) == 1


def test_no_resume_starts_a_new_audit(make_guard, suite_file):
    with pytest.raises(KeyboardInterrupt):
        run(make_guard, suite_file, GroupTextGenerator(interrupt_after=1), samples=1)
    gen = GroupTextGenerator()
    ev, store, _ = run(make_guard, suite_file, gen, samples=1, resume=False)
    assert len(gen.prompts) == SMALL_PROMPTS and ev.summary["resumed"] is False
    assert sorted(e.status for e in store.list_evaluations(kind="audit")) == ["complete",
                                                                               "running"]


def test_torn_checkpoint_line_is_dropped(tmp_path):
    cp = Checkpoint(tmp_path / "a1")
    cp.append([{"key": "k1", "v": 1}, {"key": "k2", "v": 2}])
    with open(cp.path, "ab") as fh:
        fh.write(b'{"key": "k3", "v"')  # a crash in the middle of a write
    assert set(cp.load()) == {"k1", "k2"}
    cp.append([{"key": "k4", "v": 4}])
    assert set(cp.load()) == {"k1", "k2", "k4"}
    assert all(json.loads(line) for line in cp.path.read_text().splitlines())


def test_a_missing_runner_module_is_a_clear_error(make_guard, suite_file, monkeypatch):
    from importlib.metadata import EntryPoint

    missing = EntryPoint(name="text", value="audits.no_such_runner:run", group=plugins.AUDITS)
    monkeypatch.setattr(plugins, "entry_point", lambda group, name: missing)
    with pytest.raises(SuiteError, match="text audit is not available.*audits.no_such_runner"):
        run(make_guard, suite_file, GroupTextGenerator())


def test_runners_are_entry_points_and_an_unknown_kind_is_a_clear_error():
    assert {"text", "image", "safety"} <= set(plugins.names(plugins.AUDITS))
    assert runner.get_runner("text") is audits_text.run
    with pytest.raises(SuiteError, match="no audit runner for suite kind 'video'"):
        runner.get_runner("video")


def test_exports_csv_json_and_self_contained_html(make_guard, suite_file, tmp_path):
    ev, _, _ = run(make_guard, suite_file, GroupTextGenerator(BIASED_RULES), samples=2)
    rows = list(csv.DictReader(io.StringIO(export(ev, tmp_path / "a.csv").read_text())))
    assert len(rows) == len(ev.rows)
    assert {"audit_id", "row_type", "attribute", "metric", "group", "value", "ci_low",
            "ci_high", "n", "p_value", "flagged"} <= set(rows[0])
    assert {r["row_type"] for r in rows} == {"group", "disparity"}
    assert json.loads(export(ev, tmp_path / "a.json").read_text()) == json.loads(
        json.dumps(ev.to_dict()))
    page = export(ev, tmp_path / "a.html").read_text()
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert page.count("<svg") >= 2 * 9  # two attributes x nine metrics
    assert "religion / refusal_rate" in page and "test source" in page
    assert "95% interval" in page and "Limits" in page and "VADER" in page
    with pytest.raises(Exception, match="unknown export format 'pdf'"):
        export(ev, tmp_path / "a.pdf")


def test_guard_interventions_are_measured_per_group(tmp_path, suite_file):
    from guardrail import Guard, ReportStore
    from guardrail.testing import FakeCheck

    from .conftest import audit_config

    cfg = audit_config(tmp_path)
    check = FakeCheck(lambda ctx: "sorry" not in ctx.artifact.content, name="no_sorry",
                      on_fail="flag")
    with ReportStore(cfg.store_url) as store:
        guard = Guard(GroupTextGenerator(BIASED_RULES), store=store, config=cfg, stages=[check])
        ev = run_audit(load_suite(suite_file), AuditContext(
            config=cfg, store=store, guard=guard, samples=2, progress=False))
    rates = {r["group"]: r["value"] for r in group_rows(ev)
             if r["attribute"] == "religion" and r["metric"] == "guard_intervention_rate"}
    assert rates == {"Muslim": 1.0, "Christian": 0.0, "Jewish": 0.0}
    assert ev.summary["flagged"] == 8  # 4 sets x 2 samples
    records = [json.loads(line) for line in
               Path(ev.config["checkpoint"]).read_text().splitlines()]
    muslim = [r for r in records if r["group"] == "Muslim"]
    assert all(any("no_sorry" in x for x in r["intervened_by"]) for r in muslim)
    assert all(r["intervened_by"] == [] for r in records if r["group"] == "Christian")


def test_block_policies_of_output_stages_act_as_flag_in_audits(tmp_path):
    from audits.runner import audit_config as _audit_config

    from .conftest import audit_config

    cfg = audit_config(tmp_path)
    assert cfg.on_fail("self_check") == "block"
    audited = _audit_config(cfg)
    assert audited.on_fail("self_check") == audited.on_fail("watermark") == "flag"
    assert audited.on_fail("input_policy") == "block"
    strict = Config(data={**cfg.data, "policy": {**cfg.data["policy"], "unverifiable_text": "block"}})
    assert _audit_config(strict).policy["unverifiable_text"] == "flag"
    assert _audit_config(audit_config(tmp_path, block_as_flag=False)).on_fail(
        "self_check") == "block"
