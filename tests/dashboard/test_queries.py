"""The dashboard's aggregate queries: correct counts, and fast on 100,000 reports."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dashboard import queries
from guardrail import ReportStore
from guardrail.store import reports_table, stages_table

N = 100_000
MODALITIES = ("text", "image", "audio")


def bulk_seed(store: ReportStore, n: int = N) -> None:
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    reports, stages = [], []
    for i in range(n):
        rid = f"{i:032x}"
        status = "error" if i % 100 == 0 else "flagged" if i % 10 == 1 else "ok"
        reports.append({"report_id": rid, "created_at": t0 + timedelta(minutes=i),
                        "modality": MODALITIES[i % 3], "status": status, "model_id": "m",
                        "error": "boom" if status == "error" else None})
        wm = "ok" if i % 4 else "skipped"
        stages += [{"report_id": rid, "position": 0, "stage": "watermark", "status": wm,
                    "reason": None},
                   {"report_id": rid, "position": 1, "stage": "provenance", "status": "ok",
                    "reason": None}]
        if status == "flagged":
            stages.append({"report_id": rid, "position": 2, "stage": "output_checks",
                           "status": "flagged", "reason": "term"})
    with store.engine.begin() as conn:
        conn.execute(reports_table.insert(), reports)
        conn.execute(stages_table.insert(), stages)


def test_aggregates_on_100k_reports(tmp_path: Path) -> None:
    with ReportStore(f"sqlite:///{tmp_path / 'big.db'}") as store:
        bulk_seed(store)
        started = time.perf_counter()
        sh = queries.shares(store.engine)
        per_day = queries.per_modality_per_day(store.engine)
        problems = queries.recent_problems(store.engine, limit=20)
        page = store.list(limit=50, offset=20_000, modality="image")
        total_images = store.count(modality="image")
        elapsed = time.perf_counter() - started
    assert sh["total"] == N
    assert sh["statuses"] == {"error": 1000, "flagged": 10000, "ok": 89000}
    assert sh["counts"]["watermarked"] == 75000
    assert sh["counts"]["signed"] == N
    assert sh["counts"]["self-verified"] == 0
    assert sh["shares"]["flagged"] == 0.1
    assert sum(r["n"] for r in per_day) == N
    assert len({r["day"] for r in per_day}) == -(-N // 1440)  # one report a minute
    assert per_day[0] == {"day": "2025-01-01", "modality": "audio", "n": 480}
    assert len(problems) == 20
    assert problems[0]["report_id"] == f"{N - 9:032x}"  # the newest flagged one
    assert problems[0]["reason"] == "output_checks flagged: term"
    assert any(p["reason"] == "boom" for p in problems)
    assert len(page) == 50 and total_images == 33333
    assert elapsed < 5.0  # loose: the dashboard's budget is 2 s per page (lead's benchmark)


def test_empty_store(tmp_path: Path) -> None:
    with ReportStore(f"sqlite:///{tmp_path / 'e.db'}") as store:
        sh = queries.shares(store.engine)
        assert sh["total"] == 0 and sh["shares"]["watermarked"] == 0.0
        assert queries.per_modality_per_day(store.engine) == []
        assert queries.recent_problems(store.engine) == []


def test_problem_reasons() -> None:
    def stage(name: str, status: str, reason: str | None = None, policy: str | None = None):
        return {"stage": name, "status": status, "reason": reason,
                "details": {"policy": policy} if policy else {}}

    assert queries.problem_reason("error", "boom", [stage("generate", "error", "x")]) == "boom"
    assert queries.problem_reason("blocked", None, [
        stage("input_policy", "ok"), stage("output_checks", "blocked", "output_checks: term"),
    ]) == "output_checks blocked: term"
    # released flagged because a stage could not run under a "flag" policy
    too_short = stage("self_check", "skipped", "self_check: could not run: 9 tokens", "flag")
    not_applicable = stage("provenance", "skipped", "nothing to sign", "block")
    assert queries.problem_reason("flagged", None, [not_applicable, too_short]) == (
        "self_check skipped: could not run: 9 tokens")
    assert queries.problem_reason("flagged", None, [stage("output_checks", "flagged")]) == (
        "output_checks flagged: no reason given")
    assert queries.problem_reason("pending", None, []) == "no reason recorded (status pending)"


def test_recent_problems_include_unknown_statuses_and_skip_reasons(tmp_path: Path) -> None:
    from guardrail import GenerationMetadata, Report, StageRecord

    with ReportStore(f"sqlite:///{tmp_path / 'p.db'}") as store:
        for i, (status, stages) in enumerate([
                ("ok", ()),
                ("flagged", (StageRecord("self_check", "skipped", 1.0,
                                         "self_check: could not run: short", {"policy": "flag"}),)),
                ("pending", ())]):
            store.save(Report(report_id=f"{i:032x}", created_at=f"2025-01-0{i + 1}T00:00:00",
                              modality="text", status=status,
                              metadata=GenerationMetadata(model_id="m"), stages=stages))
        problems = queries.recent_problems(store.engine)
    assert [(p["status"], p["reason"]) for p in problems] == [
        ("pending", "no reason recorded (status pending)"),
        ("flagged", "self_check skipped: could not run: short")]
