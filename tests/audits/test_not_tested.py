"""Audits never claim what they did not test: groups below ``[audit] min_group_n`` and the
comparisons they leave without two groups are "not tested" in the stored rows, the CLI, the
JSON, the HTML report and the dashboard; green "no disparity" only when every comparison was
tested; smoke runs say so everywhere; rates carry Wilson intervals; p-values raw and
adjusted."""

from __future__ import annotations

import json

import pytest

from audits import report
from audits.report import outcome, render_html
from audits.runner import AuditContext, run_audit
from audits.suites import load_suite
from guardrail.cli import main
from guardrail.stats import untested_rows

from .conftest import SMALL_PROMPTS, GroupTextGenerator

NEUTRAL = GroupTextGenerator()


def audit(make_guard, suite_file, generator=NEUTRAL, *, samples=2, smoke=False, **settings):
    guard, store, cfg = make_guard(generator, **settings)
    ev = run_audit(load_suite(suite_file), AuditContext(
        config=cfg, store=store, guard=guard, samples=samples, progress=False, smoke=smoke))
    return ev, store, cfg


def test_groups_below_the_minimum_are_not_tested_and_nothing_is_green(make_guard, suite_file):
    # 4 counterfactual sets x 2 samples = 8 per group, below 10
    ev, _store, _cfg = audit(make_guard, suite_file, min_group_n=10)
    groups = [r for r in ev.rows if r["row_type"] == "group" and "tested" in r]
    assert groups and all(r["tested"] is False and r["note"] == "not tested (n < 10)"
                          for r in groups)
    disparities = [r for r in ev.rows if r["row_type"] == "disparity"]
    assert disparities and all(r["tested"] is False and r["value"] is None
                               and r["p_value"] is None and not r["flagged"]
                               for r in disparities)
    religion = next(r for r in disparities if r["attribute"] == "religion")
    assert religion["reason"] == "not tested: 3 of 3 groups below n=10"
    t = ev.summary["testing"]
    assert t["tested"] == 0 and t["comparisons"] == t["not_tested"] > 0
    assert t["groups"] == 5 and t["groups_below_minimum"] == 5
    result = outcome(ev)
    assert result["state"] == "not_tested" and result["level"] == "warning"
    assert result["text"] == "not tested: 5 of 5 groups below n=10"
    page = render_html(ev)
    assert "No disparity flagged" not in page and "no disparity flagged" not in page
    assert 'class="ok"' not in page and "Not tested: 5 of 5 groups below n=10" in page
    assert "not tested (n &lt; 10)" in page


def test_every_comparison_tested_is_the_only_green(make_guard, suite_file):
    ev, _store, _cfg = audit(make_guard, suite_file, min_group_n=8)
    result = outcome(ev)
    assert result["state"] == "no_disparity" and result["level"] == "success"
    assert result["text"].startswith("no disparity flagged: all ")
    assert 'class="outcome success"' in render_html(ev)


def test_some_groups_too_small_is_partly_tested(make_guard, suite_file):
    # every "elderly" prompt fails: the age comparisons have one group left
    ev, _store, _cfg = audit(make_guard, suite_file, GroupTextGenerator(fail_on=["elderly"]),
                             min_group_n=8)
    t = ev.summary["testing"]
    assert 0 < t["tested"] < t["comparisons"]
    age = [r for r in ev.rows if r["row_type"] == "disparity" and r["attribute"] == "age"]
    assert age and all(not r["tested"] for r in age)
    assert {r["reason"] for r in age} == {"not tested: 1 of 2 groups below n=8"}
    assert {r["groups"]["elderly"] for r in age} == {0}
    elderly = [r for r in ev.rows if r["row_type"] == "group" and r["group"] == "elderly"]
    assert elderly and all(r["n"] == 0 and r["tested"] is False for r in elderly)
    assert ev.summary["testing"]["below_minimum"] == ["age: elderly (n=0)"]
    result = outcome(ev)
    assert result["state"] == "partly_tested" and result["level"] == "warning"
    assert "not fully tested" in result["text"]


def test_rates_get_wilson_intervals_and_disparities_p_values(make_guard, suite_file):
    ev, _store, _cfg = audit(make_guard, suite_file, min_group_n=8)
    refusal = [r for r in ev.rows if r["row_type"] == "group" and r["metric"] == "refusal_rate"]
    # 0 refusals of 8: a Wilson interval still has an upper bound well above 0
    assert all(r["value"] == 0.0 and r["ci_low"] == 0.0 and r["ci_high"] > 0.2
               and r["interval"].startswith("wilson") for r in refusal)
    sentiment = [r for r in ev.rows if r["row_type"] == "group" and r["metric"] == "sentiment"]
    assert all(r["interval"] == "bootstrap" for r in sentiment)
    tested = [r for r in ev.rows if r["row_type"] == "disparity" and r["tested"]]
    assert tested and all(r["p_value"] is not None and r["p_adjusted"] is not None
                          and r["p_adjusted"] >= r["p_value"] for r in tested)


def test_smoke_run_is_labelled_everywhere(make_guard, suite_file, tmp_path, capsys):
    ev, store, cfg = audit(make_guard, suite_file, min_group_n=1, smoke=True)
    assert ev.config["smoke_run"] is True and ev.summary["smoke_run"] is True
    assert ev.summary["testing"]["smoke_run"] is True
    assert store.get_evaluation(ev.evaluation_id).summary["testing"]["smoke_run"]
    result = outcome(ev)
    assert result["state"] == "smoke" and result["text"].startswith("smoke run - not a test")
    page = render_html(ev)
    assert "<h1>Bias audit: small-test v0.1 (smoke run - not a test)</h1>" in page
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["audit", "show", ev.evaluation_id, *data]) == 0
    assert "SMOKE RUN - NOT A TEST" in capsys.readouterr().out
    assert main(["audit", "show", ev.evaluation_id, "--json", *data]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["outcome"]["state"] == "smoke"
    assert main(["audit", "list", *data]) == 0
    assert "smoke run - not a test" in capsys.readouterr().out


def test_cli_shows_not_tested_rows_and_both_p_values(make_guard, suite_file, tmp_path, capsys):
    ev, _store, _cfg = audit(make_guard, suite_file, min_group_n=10)
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["audit", "show", ev.evaluation_id, *data]) == 0
    out = capsys.readouterr().out
    assert "not tested: 5 of 5 groups below n=10" in out
    assert "not tested: 3 of 3 groups below n=10" in out  # a disparity row
    assert "no disparity flagged" not in out
    ev2, _store, _cfg = audit(make_guard, suite_file, min_group_n=8)
    assert main(["audit", "show", ev2.evaluation_id, *data]) == 0
    out = capsys.readouterr().out
    assert " p      p_adj " in out and "no disparity flagged: all" in out


def test_cli_smoke_flag_and_json_outcome(monkeypatch, tmp_path, suite_file, capsys):
    import audits.text
    from guardrail import Guard

    for key, value in {"N_BOOT": "50", "PERMUTATIONS": "50", "BATCH_SIZE": "8"}.items():
        monkeypatch.setenv(f"GUARDRAIL_AUDIT__{key}", value)
    monkeypatch.setattr(audits.text, "build_guard", lambda config, store, **_: Guard(
        NEUTRAL, store=store, config=config, stages=[]))
    code = main(["audit", "run", str(suite_file), "--samples", "1", "--smoke", "--json",
                 "--data-dir", str(tmp_path / "data")])
    ev = json.loads(capsys.readouterr().out)
    assert code == 0 and ev["summary"]["generations"] == SMALL_PROMPTS
    assert ev["outcome"]["state"] == "smoke" and ev["config"]["smoke_run"] is True


def test_legacy_audits_without_testing_records_are_judged_from_their_rows():
    legacy = {"status": "complete", "summary": {"flags": []}, "config": {},
              "rows": [{"metric": "refusal_rate", "group": "a", "value": 0.1, "n": 200}]}
    assert outcome(legacy)["state"] == "not_tested"
    flagged = {**legacy, "summary": {"flags": ["refusal_rate: B vs A"]}}
    assert outcome(flagged)["state"] == "flagged"
    running = {"status": "running", "summary": {"samples_done": 3, "samples_total": 9}}
    assert outcome(running)["state"] == "running"


def test_summarise_tests_counts_comparisons_once_and_reference_rows():
    rows = [
        *untested_rows("fpr", "gender", {"a": 3, "b": 4}, 10),
        {"row_type": "disparity", "attribute": "age", "metric": "fpr", "kind": "difference",
         "tested": True, "p_value": 0.2, "flagged": False, "excluded": []},
        {"row_type": "disparity", "attribute": "age", "metric": "fpr", "kind": "ratio",
         "tested": True, "p_value": 0.2, "flagged": False, "excluded": []},
        {"row_type": "disparity", "attribute": "age", "metric": "eod",
         "kind": "equalized_odds_difference", "flagged": False},
        {"row_type": "group", "attribute": "occupation", "metric": "share", "group": "nurse",
         "reference": 0.88, "tested": False, "n": 4},
    ]
    for r in rows[:1]:
        r["row_type"] = "disparity"
    t = report.summarise_tests(rows, min_group_n=10)
    assert t["comparisons"] == 3 and t["tested"] == 1 and t["not_tested"] == 2
    assert t["groups_below_minimum"] == 1 and t["below_minimum"] == ["occupation: nurse (n=4)"]


@pytest.mark.parametrize(("metric", "kind", "values", "domain"), [
    ("refusal_rate", "rate", [0.0, 0.02], (0.0, 1.0)),
    ("sentiment", "score", [0.1, 0.3], (-1.0, 1.0)),
    ("toxicity", "score", [0.01, 0.2], (0.0, 1.0)),
    ("perceived_age_mean", None, [35.0, 61.0], None),
])
def test_each_metric_has_its_own_scale(metric, kind, values, domain):
    from audits.report import metric_domain

    assert metric_domain(metric, kind, values) == domain


@pytest.mark.parametrize("bad", [0, -3])
def test_minimum_group_size_is_validated(tmp_path, bad):
    from guardrail import Config
    from guardrail.errors import ConfigError

    with pytest.raises(ConfigError, match="audit.min_group_n must be at least 1"):
        Config.load(overrides={"paths": {"data_dir": str(tmp_path)},
                               "audit": {"min_group_n": bad}})
