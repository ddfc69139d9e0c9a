"""Every dashboard page, through Streamlit's AppTest, on a seeded and on an empty store."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit", reason="streamlit is not installed (pip install 'guardrail[dashboard]')")
from streamlit.testing.v1 import AppTest

from .conftest import APP, N_REPORTS

PAGES = {"overview": "views/overview.py", "generations": "views/generations.py",
         "verify": "views/verify.py", "audits": "views/audits.py",
         "robustness": "views/robustness.py"}
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


NOTE = b"A short note written by a person, with no credentials at all.\n"


def test_verify_an_upload(seeded_url: str) -> None:
    at = open_page("verify")
    assert not at.text_input  # no server path is asked for without a verify folder
    assert "Files on the dashboard's machine are not read" in texts(at)
    at.file_uploader(key="verify_upload").set_value(("note.txt", NOTE, "text/plain")).run()
    assert not at.exception
    body = texts(at)
    assert "No evidence of AI generation found" in body
    assert "Content Credentials: ABSENT" in body
    assert "watermark: not performed" in body  # listed under "Not checked"
    assert "note.txt - text/plain" in body


@pytest.fixture
def verify_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "note.txt").write_bytes(NOTE)
    (tmp_path / "private.txt").write_bytes(NOTE)
    (inbox / "link.txt").symlink_to(tmp_path / "private.txt")
    monkeypatch.setenv("GUARDRAIL_DASHBOARD__VERIFY_DIR", str(inbox))
    return inbox


def test_verify_a_file_in_the_verify_folder(seeded_url: str, verify_dir: Path) -> None:
    at = open_page("verify")
    at.text_input(key="verify_path").input("note.txt").run()
    assert not at.exception
    body = texts(at)
    assert "No evidence of AI generation found" in body and "note.txt - text/plain" in body
    assert str(verify_dir) not in body.replace(f"verify folder `{verify_dir}`", "")


@pytest.mark.parametrize(("name", "refusal"), [
    ("../private.txt", "contains '..'"),
    ("link.txt", "is a symbolic link"),
    ("/etc/hostname", "outside the verify folder"),
    ("missing.png", "no file 'missing.png'"),
])
def test_verify_refuses_names_outside_the_folder(seeded_url: str, verify_dir: Path, name: str,
                                                 refusal: str) -> None:
    at = open_page("verify")
    at.text_input(key="verify_path").input(name).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Not verified:") and refusal in errors[0]
    assert "No evidence of AI generation found" not in texts(at)


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



# -- navigation, reasons, unknown statuses, clickable rows, labelled JSON --------------------
def test_no_pages_folder_next_to_the_app() -> None:
    """Streamlit builds its own raw navigation ("app, audits, ...") from a ``pages/`` folder
    next to the entry script for a session's first run; the pages live in ``views/`` and
    reach the navigation only through ``st.navigation``."""
    assert not (Path(APP).parent / "pages").exists()
    assert all((Path(APP).parent / path).is_file() for path in PAGES.values())


def _extra_reports(url: str) -> None:
    from guardrail import GenerationMetadata, Report, ReportStore, StageRecord

    flagged = Report(  # released flagged: the self-check could not run, policy "flag"
        report_id="f" * 32, created_at="2030-01-01T00:00:00+00:00", modality="text",
        status="flagged", metadata=GenerationMetadata(model_id="fake:text"),
        stages=(StageRecord("generate", "ok", 1.0),
                StageRecord("self_check", "skipped", 0.5,
                            "self_check: could not run: 9 scorable tokens, fewer than 16",
                            {"policy": "flag"}),
                StageRecord("provenance", "skipped", 0.1, "not applicable", {"policy": "block"})))
    pending = Report(report_id="e" * 32, created_at="2030-01-02T00:00:00+00:00",
                     modality="image", status="pending",
                     metadata=GenerationMetadata(model_id="fake:image"), stages=())
    with ReportStore(url) as store:
        store.save(flagged)
        store.save(pending)


def test_flag_reasons_and_unknown_statuses(seeded_url: str) -> None:
    _extra_reports(seeded_url)
    at = open_page("overview")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Pending"] == "1" and metrics["Reports"] == str(N_REPORTS + 2)
    problems = at.dataframe[0].value.set_index("report_id")
    assert problems.loc["f" * 32, "reason"] == (
        "self_check skipped: could not run: 9 scorable tokens, fewer than 16")
    assert problems.loc["e" * 32, "reason"] == "no reason recorded (status pending)"
    assert not any("no reason" in r for r in problems["reason"] if r != problems.loc["e" * 32,
                                                                                  "reason"])
    at = open_page("generations")
    table = at.dataframe[0].value.set_index("report_id")
    assert table.loc["f" * 32, "reason"].startswith("self_check skipped: could not run")
    assert table.loc["r00007" + "a" * 26, "reason"] == "output_checks flagged: blocked term 'xyz'"
    assert table.loc["r00027" + "a" * 26, "reason"] == ""
    assert "pending" in at.selectbox(key="gen_status").options
    at.selectbox(key="gen_status").set_value("pending").run()
    assert list(at.dataframe[0].value["report_id"]) == ["e" * 32]
    at.text_input(key="gen_id").input("e" * 32).run()
    assert not at.exception
    assert {m.label: m.value for m in at.metric}["Status"] == "pending"
    at.text_input(key="gen_id").input("f" * 32).run()
    assert any("9 scorable tokens" in w.value for w in at.warning)


def test_a_selected_row_opens_the_report(seeded_url: str) -> None:
    at = open_page("generations")
    second = at.dataframe[0].value["report_id"][1]
    at.session_state["gen_table"] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    at.run()
    assert not at.exception
    assert [s.value for s in at.subheader] == [f"Report {second}"]
    assert at.query_params["report"] == second  # the address of this report view


def test_a_report_link_opens_the_report(seeded_url: str) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["report"] = "r00004"
    at.switch_page(PAGES["generations"]).run()
    assert not at.exception
    assert [s.value for s in at.subheader] == ["Report r00004" + "a" * 26]


def test_a_problem_row_on_the_overview_opens_the_report(seeded_url: str) -> None:
    at = open_page("overview")
    first = at.dataframe[0].value["report_id"][0]
    at.session_state["overview_problems"] = {"selection": {"rows": [0], "columns": [],
                                                           "cells": []}}
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Generations"]
    assert [s.value for s in at.subheader] == [f"Report {first}"]


def _json_labels(at: AppTest) -> list[str | None]:
    """For each JSON viewer, in page order, the caption right before it (None if none)."""
    out, previous = [], None
    for node in at.main:
        kind = getattr(node, "type", None)
        if kind == "json":
            out.append(previous)
        if kind in ("json", "markdown", "caption", "dataframe", "metric", "alert", "title"):
            previous = node.value if kind == "caption" else None
    return out


@pytest.mark.parametrize(("page", "action"), [
    ("generations", lambda at: at.text_input(key="gen_id").input("r00001")),
    ("verify", lambda at: at.file_uploader(key="verify_upload").set_value(
        ("note.txt", NOTE, "text/plain"))),
    ("audits", None),
    ("robustness", lambda at: at.selectbox(key="rob_pick").set_value(
        next(o for o in at.selectbox(key="rob_pick").options if "text watermarks" in o)))])
def test_every_json_viewer_has_a_label(seeded_url: str, page: str, action) -> None:
    at = open_page(page)
    if action is not None:
        action(at).run()
    labels = _json_labels(at)
    assert len(labels) == {"generations": 3, "verify": 2, "audits": 1, "robustness": 2}[page], (
        labels)
    assert all(labels), labels
