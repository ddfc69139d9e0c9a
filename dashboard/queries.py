"""Aggregate, read-only queries for the dashboard (SQLAlchemy Core on the store's tables).

Every query here is one aggregated or ``LIMIT``-ed statement, so the dashboard stays fast
on large stores (100,000 reports and more): nothing loads the whole table into Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from guardrail.store import reports_table, stages_table

__all__ = [
    "PROBLEM_STATUSES",
    "SHARE_STAGES",
    "per_modality_per_day",
    "recent_problems",
    "shares",
    "stage_status_counts",
    "status_counts",
]

#: report statuses listed under "recent errors"
PROBLEM_STATUSES = ("error", "blocked", "flagged")
#: share name -> the stage whose ``ok`` status proves it
SHARE_STAGES = {"watermarked": "watermark", "signed": "provenance", "self-verified": "self_check"}


def _day(value: Any) -> str:
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)[:10]


def per_modality_per_day(engine: Engine) -> list[dict[str, Any]]:
    """Outputs per modality per (UTC) day: ``[{"day", "modality", "n"}]``, oldest first."""
    t = reports_table
    day = sa.func.date(t.c.created_at).label("day")
    query = (sa.select(day, t.c.modality, sa.func.count().label("n"))
             .group_by(day, t.c.modality).order_by(day, t.c.modality))
    with engine.connect() as conn:
        return [{"day": _day(r.day), "modality": r.modality, "n": int(r.n)}
                for r in conn.execute(query)]


def status_counts(engine: Engine) -> dict[str, int]:
    """Number of reports per status (``ok``, ``flagged``, ``blocked``, ``error``)."""
    t = reports_table
    query = sa.select(t.c.status, sa.func.count()).group_by(t.c.status)
    with engine.connect() as conn:
        return {status: int(n) for status, n in conn.execute(query)}


def stage_status_counts(engine: Engine) -> dict[str, dict[str, int]]:
    """Stage records per stage and status: ``{"watermark": {"ok": 10, "skipped": 2}}``."""
    s = stages_table
    query = sa.select(s.c.stage, s.c.status, sa.func.count()).group_by(s.c.stage, s.c.status)
    out: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for stage, status, n in conn.execute(query):
            out.setdefault(stage, {})[status] = int(n)
    return out


def shares(engine: Engine) -> dict[str, Any]:
    """Totals and shares of reports watermarked / signed / self-verified / flagged / blocked.

    A report counts as watermarked (signed, self-verified) when its ``watermark``
    (``provenance``, ``self_check``) stage record has status ``ok``.
    """
    statuses = status_counts(engine)
    stages = stage_status_counts(engine)
    total = sum(statuses.values())
    counts = {name: stages.get(stage, {}).get("ok", 0) for name, stage in SHARE_STAGES.items()}
    counts["flagged"] = statuses.get("flagged", 0)
    counts["blocked"] = statuses.get("blocked", 0)
    return {"total": total, "statuses": statuses, "stages": stages, "counts": counts,
            "shares": {k: (v / total if total else 0.0) for k, v in counts.items()}}


def recent_problems(engine: Engine, *, limit: int = 20,
                    statuses: Sequence[str] = PROBLEM_STATUSES) -> list[dict[str, Any]]:
    """The newest reports with a problem status, each with the reason(s) it has one.

    The reason is the report's error, else the reasons of its stages that did not pass.
    """
    t, s = reports_table, stages_table
    query = (sa.select(t.c.report_id, t.c.created_at, t.c.modality, t.c.status, t.c.model_id,
                       t.c.error)
             .where(t.c.status.in_(list(statuses)))
             .order_by(t.c.created_at.desc(), t.c.report_id.desc()).limit(int(limit)))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        ids = [r.report_id for r in rows]
        reasons: dict[str, list[str]] = {i: [] for i in ids}
        if ids:
            stage_rows = conn.execute(
                sa.select(s.c.report_id, s.c.stage, s.c.status, s.c.reason)
                .where(s.c.report_id.in_(ids),
                       s.c.status.in_(["failed", "flagged", "blocked", "error"]))
                .order_by(s.c.report_id, s.c.position))
            for r in stage_rows:
                reasons[r.report_id].append(f"{r.stage} {r.status}: {r.reason or 'no reason'}")
    out = []
    for r in rows:
        why = r.error or "; ".join(reasons[r.report_id]) or "(no reason recorded)"
        out.append({"report_id": r.report_id, "created_at": str(r.created_at)[:19],
                    "modality": r.modality, "status": r.status, "model_id": r.model_id,
                    "reason": why})
    return out
