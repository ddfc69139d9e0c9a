"""The dashboard never shows a claim that was not tested: the audits page on real
(fake-generator) audits that were not, fully, or only smoke tested; each metric on its own
scale; the robustness page's smoke-run note and the ROC curve of a stored detector
evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("streamlit", reason="streamlit is not installed")
from streamlit.testing.v1 import AppTest

from audits.runner import AuditContext, run_audit
from audits.suites import load_suite
from guardrail import Config, Guard, ReportStore
from guardrail.store import Evaluation
from tests.audits.conftest import SMALL_SUITE, GroupTextGenerator

from .conftest import APP


def record_audit(tmp_path: Path, url: str, *, min_group_n: int, smoke: bool = False,
                 name: str = "audit") -> Evaluation:
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps(SMALL_SUITE))
    cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path / "data")},
                                 "store": {"url": url},
                                 "audit": {"n_boot": 100, "permutations": 200,
                                           "min_group_n": min_group_n, "batch_size": 8}})
    with ReportStore(url) as store:
        guard = Guard(GroupTextGenerator(), store=store, config=cfg, stages=[])
        return run_audit(load_suite(suite), AuditContext(
            config=cfg, store=store, guard=guard, samples=2, progress=False, smoke=smoke,
            name=name))


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'audits.db'}"
    monkeypatch.setenv("GUARDRAIL_STORE_URL", url)
    monkeypatch.setenv("GUARDRAIL_PATHS__DATA_DIR", str(tmp_path / "data"))
    return url


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(f"views/{page}.py").run()
    assert not at.exception, at.exception
    return at


def test_not_tested_audit_is_amber_never_green(tmp_path, url):
    record_audit(tmp_path, url, min_group_n=10)  # 8 per group
    at = open_page("audits")
    assert not at.success
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("Not tested: 5 of 5 groups below n=10") for w in warnings)
    disparity = at.dataframe[0].value
    assert not disparity["tested"].any()
    assert disparity["value"].isna().all() and disparity["p_value"].isna().all()
    assert set(disparity["note"]) == {"not tested: 3 of 3 groups below n=10"}
    groups = at.dataframe[1].value
    assert set(groups["tested"]) == {"not tested (n < 10)"}


def test_fully_tested_audit_is_green_with_p_values_and_own_scales(tmp_path, url):
    record_audit(tmp_path, url, min_group_n=8)
    at = open_page("audits")
    [success] = [s.value for s in at.success]
    assert success.startswith("No disparity flagged: all ")
    disparity = at.dataframe[0].value
    assert disparity["tested"].all()
    assert {"p_value", "p_adjusted"} <= set(disparity.columns)
    assert disparity["p_value"].notna().all()
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    panels = {p["title"]: p for p in spec["vconcat"]}
    assert {"sentiment", "refusal_rate", "toxicity"} <= set(panels)

    def domain(panel):
        return next(layer["encoding"]["x"]["scale"].get("domain")
                    for layer in panel["layer"] if "scale" in layer["encoding"]["x"])

    assert domain(panels["sentiment"]) == [-1.0, 1.0]
    assert domain(panels["refusal_rate"]) == [0.0, 1.0]
    assert spec["resolve"]["scale"]["x"] == "independent"


def test_smoke_run_is_labelled_on_the_page_and_in_the_picker(tmp_path, url):
    record_audit(tmp_path, url, min_group_n=1, smoke=True, name="demo audit")
    at = open_page("audits")
    assert not at.success
    assert any(w.value.startswith("**Smoke run - not a test.**") for w in at.warning)
    assert "[smoke run - not a test]" in at.selectbox(key="audit_pick").value


def test_robustness_smoke_run_note_and_detector_roc_from_stored_points(tmp_path, url):
    from guardrail.detectors.train import evaluation_record

    with ReportStore(url) as store:
        store.save_evaluation(Evaluation(
            evaluation_id="rob-smoke", kind="robustness", name="image watermarks (smoke run)",
            created_at="2026-01-01T00:00:00+00:00",
            config={"modality": "image", "quick": True, "sample": 3},
            summary={"schemes": {"guardrail-image": {"n_images": 3, "n_unmarked": 30}}},
            rows=[{"scheme": "guardrail-image", "attack": "none", "tpr": 1.0}]))
        # what `guardrail detectors eval` stores: one row per ROC point
        result = {"detector": "fast-detectgpt", "model_version": "m", "modality": "text",
                  "threshold": 0.5, "claimed_operating_fpr": 0.05,
                  "metrics": {"auroc": 0.8, "eer": 0.25, "n_real": 12, "n_synthetic": 12,
                              "fpr_at_threshold": 0.1, "tpr_at_threshold": 0.6},
                  "roc": [{"threshold": None, "fpr": 0.0, "tpr": 0.0},
                          {"threshold": 0.7, "fpr": 0.1, "tpr": 0.6},
                          {"threshold": 0.2, "fpr": 1.0, "tpr": 1.0}]}
        store.save_evaluation(evaluation_record(result, name="eval:fast-detectgpt",
                                                config={"detector": "fast-detectgpt"}))
    at = open_page("robustness")
    assert any(w.value.startswith("Quick run (a smoke run of the lab, few items")
               and "guardrail-image images 3" in w.value for w in at.warning)
    import pyarrow as pa

    [roc] = [c for c in at.get("vega_lite_chart") if json.loads(c.proto.spec).get("title") == "ROC"]
    frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in roc.proto.datasets]
    [curve] = [f for f in frames if "curve" in f.columns]
    assert list(zip(curve["fpr"], curve["tpr"], strict=True)) == [(0.0, 0.0), (0.1, 0.6),
                                                                   (1.0, 1.0)]
    assert set(curve["curve"]) == {"eval:fast-detectgpt"}
    ops = at.dataframe[1].value
    assert list(ops["threshold"]) == [0.5] and list(ops["tpr_at_threshold"]) == [0.6]
