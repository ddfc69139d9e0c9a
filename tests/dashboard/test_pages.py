"""Every dashboard page, through Streamlit's AppTest, on a seeded and on an empty store."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit", reason="streamlit is not installed (pip install 'guardrail[dashboard]')")
from streamlit.testing.v1 import AppTest

from .conftest import APP, N_REPORTS

PAGES = {"overview": "pages/overview.py", "generations": "pages/generations.py",
         "verify": "pages/verify.py", "audits": "pages/audits.py",
         "robustness": "pages/robustness.py"}
TITLES = {"overview": "Overview", "generations": "Generations", "verify": "Verify a file",
          "audits": "Bias audits", "robustness": "Robustness and detectors"}


def open_page(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    if name != "overview":
        at.switch_page(PAGES[name]).run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == [TITLES[name]]
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "info", "success", "warning", "error", "caption")
             for e in at.get(kind) if isinstance(getattr(e, "value", None), str)]
    return "\n".join(parts)


def charts(at: AppTest) -> int:
    return len(at.get("vega_lite_chart"))


@pytest.mark.parametrize("page", list(PAGES))
def test_empty_store_explains_how_to_produce_data(empty_url: str, page: str) -> None:
    at = open_page(page)
    body = texts(at)
    assert "guardrail demo" in body
    if page == "audits":
        assert "guardrail audit run" in body
    if page == "robustness":
        assert "guardrail robustness --modality image" in body
        assert "guardrail detectors eval" in body


def test_overview(seeded_url: str) -> None:
    at = open_page("overview")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Reports"] == str(N_REPORTS)
    # i % 15 == 7 flagged, 11 blocked, 13 error: twice each in 30 reports
    assert metrics["Flagged"] == metrics["Blocked"] == metrics["Error"] == "2"
    assert metrics["Watermarked"] == f"{28 / 30:.1%}"
    assert metrics["Signed (C2PA)"] == "100.0%"
    assert charts(at) == 2
    problems = at.dataframe[0].value
    assert len(problems) == 6
    assert set(problems["status"]) == {"flagged", "blocked", "error"}
    assert "generator crashed: out of memory" in set(problems["reason"])
    assert "output_checks blocked: policy says no" in set(problems["reason"])


def test_generations_table_filters_and_pagination(seeded_url: str) -> None:
    at = open_page("generations")
    assert len(at.dataframe[0].value) == 25  # first page
    assert "30 matching reports" in texts(at)
    at.number_input(key="gen_page").set_value(2).run()
    assert not at.exception
    assert len(at.dataframe[0].value) == 5
    at.number_input(key="gen_page").set_value(1)
    at.selectbox(key="gen_modality").set_value("image").run()
    table = at.dataframe[0].value
    assert len(table) == 10 and set(table["modality"]) == {"image"}
    at.selectbox(key="gen_status").set_value("error").run()
    assert len(at.dataframe[0].value) == 0 or set(at.dataframe[0].value["status"]) == {"error"}
    at.selectbox(key="gen_modality").set_value("all")
    at.selectbox(key="gen_status").set_value("all")
    at.text_input(key="gen_search").input("r00004").run()
    assert list(at.dataframe[0].value["report_id"]) == ["r00004" + "a" * 26]


def test_generation_detail(seeded_url: str) -> None:
    at = open_page("generations")
    at.text_input(key="gen_id").input("r00001").run()
    assert not at.exception
    assert any(s.value == "Report r00001" + "a" * 26 for s in at.subheader)
    assert len(at.get("image")) == 1  # the image output exists on disk
    stage_table = at.dataframe[1].value
    assert list(stage_table["stage"]) == ["input_policy", "generate", "watermark",
                                          "self_check", "provenance"]
    assert charts(at) == 1
    jsons = [j.value for j in at.json]
    assert any("generated output" in j for j in jsons)  # manifest summary
    assert any("guardrail-image" in j for j in jsons)  # watermark evidence
    at.text_input(key="gen_id").input("nosuchreport").run()
    assert "No report 'nosuchreport'" in texts(at)


def test_verify_a_file(seeded_url: str, tmp_path: Path) -> None:
    at = open_page("verify")
    text = tmp_path / "note.txt"
    text.write_text("A short note written by a person, with no credentials at all.\n")
    at.text_input(key="verify_path").input(str(text)).run()
    assert not at.exception
    body = texts(at)
    assert "No evidence of AI generation found" in body
    assert "Content Credentials: ABSENT" in body
    assert "watermark: not performed" in body  # listed under "Not checked"
    at.text_input(key="verify_path").input(str(tmp_path / "missing.png")).run()
    assert "No file at" in texts(at)


def test_audits(seeded_url: str) -> None:
    at = open_page("audits")
    assert "Flags: refusal_rate: B vs A" in texts(at)
    assert charts(at) == 3  # the selected audit, and two side by side
    disparity = at.dataframe[0].value
    assert set(disparity["metric"]) == {"refusal_rate", "toxicity_rate"}
    row = disparity.set_index("metric").loc["refusal_rate"]
    assert row["highest"] == "group B" and row["lowest"] == "group A"
    assert row["highest_n"] == 200
    assert row["gap"] == pytest.approx(0.1)
    groups = at.dataframe[1].value
    assert len(groups) == 6
    assert [s.value for s in at.selectbox][1:] == [at.selectbox[0].options[0],
                                                   at.selectbox[0].options[1]]


def test_robustness_and_detectors(seeded_url: str) -> None:
    at = open_page("robustness")
    assert charts(at) == 2  # TPR heatmap, ROC
    rob = at.dataframe[0].value
    assert len(rob) == 6 and set(rob["scheme"]) == {"guardrail-image", "dwtDct"}
    ops = at.dataframe[1].value
    assert list(ops["threshold"]) == [0.8]
    # the text lab's run: a heatmap of its attacks and the pass rate by length
    picker = at.selectbox(key="rob_pick")
    picker.set_value(next(o for o in picker.options if "text watermarks" in o)).run()
    assert charts(at) == 3  # TPR heatmap, confirmed-by-length, ROC
    assert len(at.dataframe[0].value) == 5
    assert any("unverifiable_text" in c.value for c in at.caption)

