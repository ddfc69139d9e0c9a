import multiprocessing
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from guardrail import GenerationMetadata, Report, ReportStore, StageRecord
from guardrail.errors import StoreError
from guardrail.store import SCHEMA_VERSION, ReportNotFound

# read at import: the autouse fixture clears GUARDRAIL_* variables before each test
REQUIRE_POSTGRES = bool(os.environ.get("GUARDRAIL_TEST_REQUIRE_POSTGRES"))


def make_report(rid: str, *, minutes: int = 0, modality: str = "text", status: str = "ok",
                model: str = "m") -> Report:
    created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    return Report(
        report_id=rid, created_at=created.isoformat(), modality=modality, status=status,
        metadata=GenerationMetadata(model_id=model, prompt_hash="h", parameters={"a": [1, 2]},
                                    seed=3, timings_ms={"generate": 1.5}),
        stages=[StageRecord(stage="input_policy", status="ok", duration_ms=0.1),
                StageRecord(stage="generate", status="ok", duration_ms=1.5,
                            details={"n": 1}),
                StageRecord(stage="watermark", status="skipped", reason="not configured")],
        content_hash="sha256:x", media_type="text/plain", output=f"/o/{rid}.txt")


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request, tmp_path: Path, postgres_url):
    if request.param == "sqlite":
        s = ReportStore(f"sqlite:///{tmp_path / 'r.db'}")
    else:
        if not postgres_url:
            if REQUIRE_POSTGRES:
                pytest.fail("GUARDRAIL_TEST_REQUIRE_POSTGRES is set but no PostgreSQL server could be started")
            pytest.skip("no PostgreSQL server (install Debian's postgresql, or set "
                        "GUARDRAIL_TEST_POSTGRES_URL)")
        s = ReportStore(postgres_url)
        with s.engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE reports, evaluations CASCADE"))
    yield s
    s.close()


def test_round_trip_and_idempotent_save(any_store: ReportStore):
    rep = make_report("a" * 32)
    assert any_store.save(rep) is True
    assert any_store.save(rep) is False  # same id again: stored once
    assert any_store.count() == 1
    got = any_store.get(rep.report_id)
    assert got.to_dict()["stages"] == rep.to_dict()["stages"]
    assert got.metadata.parameters == {"a": [1, 2]}
    assert got.output == rep.output and got.content_hash == rep.content_hash
    assert datetime.fromisoformat(got.created_at) == datetime.fromisoformat(rep.created_at)


def test_list_filters_and_paginates_in_sql(any_store: ReportStore):
    for i in range(25):
        any_store.save(make_report(f"r{i:03d}", minutes=i, modality="image" if i % 2 else "text",
                                   status="error" if i % 5 == 0 else "ok"))
    page = any_store.list(limit=10)
    assert [r.report_id for r in page] == [f"r{i:03d}" for i in range(24, 14, -1)]  # newest first
    assert [r.report_id for r in any_store.list(limit=10, offset=20)] == [
        f"r{i:03d}" for i in range(4, -1, -1)]
    assert any_store.count(modality="image") == 12
    assert any_store.count(status="error") == 5
    assert {r.status for r in any_store.list(status="error", limit=100)} == {"error"}
    assert any_store.count(search="r01") == 10
    since = datetime(2026, 1, 1, 0, 20, tzinfo=UTC)
    assert any_store.count(since=since) == 5


def test_get_by_unique_prefix(any_store: ReportStore):
    any_store.save(make_report("abcdef111"))
    any_store.save(make_report("abcdef222"))
    assert any_store.get("abcdef1").report_id == "abcdef111"
    with pytest.raises(ReportNotFound, match="ambiguous"):
        any_store.get("abcdef")
    with pytest.raises(ReportNotFound):
        any_store.get("zzzzzzzz")
    with pytest.raises(ReportNotFound, match=r"'abc' is ambiguous: 2 reports start with it: "
                                             r"abcdef(111|222) .*; abcdef(111|222) "):
        any_store.get("abc")  # was "no report 'abc'": prefixes under 6 were not searched
    any_store.save(make_report("xyz999"))
    with pytest.raises(ReportNotFound, match=r"'xyz' is ambiguous: give at least 6 "
                                             r"characters: xyz999 "):
        any_store.get("xyz")  # even a unique short prefix does not pick a report


def test_an_ambiguous_prefix_lists_the_newest_matches(any_store: ReportStore):
    for i in range(8):
        any_store.save(make_report(f"fedcba{i:02d}", minutes=i))
    with pytest.raises(ReportNotFound) as info:
        any_store.get("fedcba")
    msg = str(info.value)
    assert "8 reports start with it" in msg and "and 3 more" in msg
    assert "fedcba07" in msg and "fedcba03" in msg and "fedcba02" not in msg


def test_finalise_a_pending_report(any_store: ReportStore):
    from guardrail.store import PENDING

    any_store.save(make_report("pend01", status=PENDING))
    any_store.finalise("pend01", "flagged")
    assert any_store.get("pend01").status == "flagged"
    with pytest.raises(StoreError, match="not pending"):
        any_store.finalise("pend01", "ok")  # once only
    with pytest.raises(StoreError, match="not pending"):
        any_store.finalise("nothere", "ok")
    rep = make_report("pend02", status=PENDING)
    rep = Report(**{**rep.__dict__, "stages": (*rep.stages, StageRecord(stage="record",
                                                                        status="ok"))})
    any_store.save(rep)
    any_store.finalise("pend02", "error", error="cannot write output: disk full")
    got = any_store.get("pend02")
    assert got.status == "error" and got.output is None and "disk full" in got.error
    assert got.stage("record").status.value == "error" and "disk full" in got.stage("record").reason


def test_sqlite_uses_wal_and_records_schema_version(tmp_path: Path):
    db = tmp_path / "r.db"
    with ReportStore(f"sqlite:///{db}") as s:
        s.save(make_report("x" * 10))
        assert s.schema_version == SCHEMA_VERSION
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT value FROM guardrail_meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    con.close()
    with ReportStore(f"sqlite:///{db}") as s:  # reopening migrates nothing and keeps data
        assert s.count() == 1


def test_database_newer_than_code_is_refused(tmp_path: Path):
    db = tmp_path / "r.db"
    ReportStore(f"sqlite:///{db}").close()
    con = sqlite3.connect(db)
    con.execute("UPDATE guardrail_meta SET value='999' WHERE key='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="schema version 999, newer than this guardrail"):
        ReportStore(f"sqlite:///{db}")


def test_unusable_store_urls():
    with pytest.raises(StoreError, match="invalid store URL"):
        ReportStore("not a url")
    with pytest.raises(StoreError):
        ReportStore("sqlite:////proc/nonexistent-dir/x.db")


def test_failed_write_keeps_earlier_reports(tmp_path: Path):
    db = tmp_path / "r.db"
    s = ReportStore(f"sqlite:///{db}")
    s.save(make_report("first-report"))
    bad = make_report("second-report")
    # a stage with a name too long for the column is fine in SQLite; make the write fail
    # instead by dropping the stage table under the store's feet
    with s.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE stage_records RENAME TO broken"))
    with pytest.raises(StoreError, match="cannot record report second-report"):
        s.save(bad)
    with s.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE broken RENAME TO stage_records"))
    assert [r.report_id for r in s.list()] == ["first-report"]  # one transaction: no half report
    s.close()


def _save_many(url: str, ids: list[str]) -> int:
    s = ReportStore(url)
    inserted = sum(s.save(make_report(i)) for i in ids)
    s.close()
    return inserted


def test_concurrent_writers_store_each_report_once(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    ReportStore(url).close()
    ids = [f"id{i:04d}" for i in range(60)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        inserted = pool.starmap(_save_many, [(url, ids)] * 3)
    assert sum(inserted) == 60  # every id inserted by exactly one worker
    with ReportStore(url) as s:
        assert s.count() == 60


def test_migration_from_version_1_adds_watermark_columns(tmp_path: Path):
    """A store written by schema version 1 is upgraded in place, keeping its reports."""
    db = tmp_path / "v1.db"
    con = sqlite3.connect(db)
    con.executescript("""
        CREATE TABLE guardrail_meta (key VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO guardrail_meta VALUES ('schema_version', '1');
        CREATE TABLE reports (report_id VARCHAR(64) PRIMARY KEY, created_at DATETIME NOT NULL,
            modality VARCHAR(16) NOT NULL, status VARCHAR(16) NOT NULL, model_id TEXT NOT NULL,
            model_revision TEXT, prompt_hash VARCHAR(128), prompt TEXT, content_hash VARCHAR(80),
            media_type VARCHAR(64), output TEXT, device VARCHAR(32), seed BIGINT, parameters JSON,
            timings JSON, error TEXT, extra JSON, total_ms FLOAT);
        CREATE TABLE stage_records (id INTEGER PRIMARY KEY AUTOINCREMENT, report_id VARCHAR(64)
            NOT NULL REFERENCES reports(report_id) ON DELETE CASCADE, position INTEGER NOT NULL,
            stage VARCHAR(32) NOT NULL, status VARCHAR(16) NOT NULL, duration_ms FLOAT,
            reason TEXT, details JSON);
        INSERT INTO reports (report_id, created_at, modality, status, model_id, parameters,
            timings, extra) VALUES ('old-report', '2025-01-01 00:00:00.000000', 'text', 'ok',
            'm', '{}', '{}', '{}');
    """)
    con.commit()
    con.close()
    with ReportStore(f"sqlite:///{db}") as s:
        assert s.schema_version == SCHEMA_VERSION >= 2
        assert s.get("old-report").status == "ok"
        rep = make_report("new-report")
        rep = Report(**{**rep.__dict__, "extra": {"evidence": {"watermark": {
            "scheme": "guardrail-image", "payload": "00ab"}}}})
        s.save(rep)
        assert [r.report_id for r in s.find_by_watermark("guardrail-image", "00ab")] == ["new-report"]
        assert s.find_by_watermark("guardrail-image", "ffff") == []


def test_evaluations_round_trip_and_replace(any_store: ReportStore):
    from guardrail.store import Evaluation

    ev = Evaluation(evaluation_id="ev1", kind="robustness", name="image",
                    created_at="2026-01-02T00:00:00+00:00", config={"fpr": 1e-4},
                    summary={"tpr": 0.99}, rows=[{"attack": "jpeg(50)", "tpr": 1.0}])
    any_store.save_evaluation(ev)
    got = any_store.get_evaluation("ev1")
    assert got.to_dict() == {**ev.to_dict(), "created_at": got.created_at}
    any_store.save_evaluation(Evaluation(**{**ev.__dict__, "summary": {"tpr": 0.5}}))
    assert any_store.get_evaluation("ev1").summary == {"tpr": 0.5}  # replaced, not duplicated
    assert [e.evaluation_id for e in any_store.list_evaluations(kind="robustness")] == ["ev1"]
    assert any_store.list_evaluations(kind="audit") == []
