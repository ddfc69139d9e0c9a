"""Aggregate, read-only queries for the dashboard (SQLAlchemy Core on the store's tables).

Every query here is one aggregated or ``LIMIT``-ed statement, so the dashboard stays fast
on large stores (100,000 reports and more): nothing loads the whole table into Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from guardrail.store import reports_table, stages_table

__all__ = [
    "FAILING_STAGE_STATUSES",
    "KNOWN_STATUSES",
    "SHARE_STAGES",
    "per_modality_per_day",
    "problem_reason",
    "recent_problems",
    "shares",
    "stage_status_counts",
    "status_counts",
]

#: report statuses this version knows; others (e.g. ``pending``) are shown as they are
KNOWN_STATUSES = ("ok", "flagged", "blocked", "error")
#: stage statuses of a check that did not pass
FAILING_STAGE_STATUSES = ("failed", "flagged", "blocked", "error")
#: report status -> the policy whose skipped stage explains it
_POLICY_OF_STATUS = {"flagged": "flag", "blocked": "block"}
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


def _strip_prefix(stage: str, reason: str) -> str:
    for prefix in (f"{stage}: ", f"{stage}:"):
        if reason.startswith(prefix):
            return reason[len(prefix):]
    return reason


def problem_reason(status: str, error: str | None, stages: Sequence[Mapping[str, Any]]) -> str:
    """Why a report has the status it has, in one line.

    The report's error if it has one; else the stages whose check did not pass
    (``failed``, ``flagged``, ``blocked``, ``error``), each as ``"<stage> <status>:
    <reason>"``; else - a stage that could not run under a ``flag`` or ``block`` policy
    (a text too short to test, a missing key) - the ``skipped`` stages whose recorded
    policy matches the report's status.

    Parameters
    ----------
    status : str
        The report's status.
    error : str or None
        The report's error.
    stages : sequence of mappings
        The report's stage records, in order, with ``stage``, ``status``, ``reason`` and
        ``details``.

    Examples
    --------
    >>> problem_reason("flagged", None, [
    ...     {"stage": "watermark", "status": "ok", "reason": None, "details": {}},
    ...     {"stage": "self_check", "status": "skipped", "details": {"policy": "flag"},
    ...      "reason": "self_check: could not run: 9 tokens, fewer than 16"}])
    'self_check skipped: could not run: 9 tokens, fewer than 16'
    """
    if error:
        return error
    why = [s for s in stages if s.get("status") in FAILING_STAGE_STATUSES]
    policy = _POLICY_OF_STATUS.get(status)
    if not why and policy:
        why = [s for s in stages if s.get("status") == "skipped"
               and isinstance(s.get("details"), Mapping)
               and s["details"].get("policy") == policy]
    parts = [f"{s['stage']} {s['status']}: "
             + (_strip_prefix(str(s["stage"]), s["reason"]) if s.get("reason")
                else "no reason given") for s in why]
    return "; ".join(parts) or f"no reason recorded (status {status})"


def recent_problems(engine: Engine, *, limit: int = 20) -> list[dict[str, Any]]:
    """The newest reports whose status is not ``ok`` (error, blocked, flagged, or a status
    this version does not know), each with the reason it has it (:func:`problem_reason`).
    """
    t, s = reports_table, stages_table
    query = (sa.select(t.c.report_id, t.c.created_at, t.c.modality, t.c.status, t.c.model_id,
                       t.c.error)
             .where(t.c.status != "ok")
             .order_by(t.c.created_at.desc(), t.c.report_id.desc()).limit(int(limit)))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
        ids = [r.report_id for r in rows]
        stages: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
        if ids:
            stage_rows = conn.execute(
                sa.select(s.c.report_id, s.c.stage, s.c.status, s.c.reason, s.c.details)
                .where(s.c.report_id.in_(ids),
                       s.c.status.in_([*FAILING_STAGE_STATUSES, "skipped"]))
                .order_by(s.c.report_id, s.c.position))
            for r in stage_rows:
                stages[r.report_id].append({"stage": r.stage, "status": r.status,
                                            "reason": r.reason, "details": r.details})
    return [{"report_id": r.report_id, "created_at": str(r.created_at)[:19],
             "modality": r.modality, "status": r.status, "model_id": r.model_id,
             "reason": problem_reason(r.status, r.error, stages[r.report_id])} for r in rows]
