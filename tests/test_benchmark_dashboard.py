"""The dashboard benchmark's store filler and report (the browser part runs in
``guardrail benchmark --suite dashboard``; tests/dashboard/test_browser.py covers the pages)."""

from __future__ import annotations

from guardrail import ReportStore
from guardrail.benchmarks.dashboard import fill_store, render_markdown


def test_fill_store_writes_readable_reports(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    fill_store(url, 123)
    with ReportStore(url) as store:
        assert store.count() == 123
        assert store.count(status="flagged") == sum(1 for i in range(123) if i % 17 == 7)
        newest = store.list(limit=3)
        assert len(newest) == 3 and all(r.stages for r in newest)
        rep = store.get(newest[0].report_id)
        assert rep.extra["evidence"]["watermark"]["payload"]
        assert len(store.list_evaluations(kind="audit")) == 20


def test_markdown_marks_pages_over_target() -> None:
    res = {"target_s": 2.0, "postgres": False, "results": [
        {"store": "SQLite", "reports": 100_000, "fill_s": 12.0, "pages": [
            {"page": "overview", "first_s": 2.5, "median_s": 1.0, "max_s": 2.5,
             "loads": 4, "meets_target": False},
            {"page": "audits", "first_s": 0.5, "median_s": 0.4, "max_s": 0.5,
             "loads": 4, "meets_target": True}]}]}
    md = render_markdown(res)
    assert "| SQLite | 100,000 | overview | 2.50 | 1.00 | 2.50 | **no** |" in md
    assert "| SQLite | 100,000 | audits | 0.50 | 0.40 | 0.50 | yes |" in md
    assert "PostgreSQL was not measured" in md
