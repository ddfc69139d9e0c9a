"""The record store: one report per guarded call, in SQLite (default) or PostgreSQL.

* SQLAlchemy Core, so a database URL selects the engine: ``sqlite:///path.db`` (embedded,
  WAL mode, foreign keys on, busy timeout) or ``postgresql+psycopg://...`` for many workers.
* A schema version in ``guardrail_meta`` and ordered migrations (:mod:`guardrail._schema`)
  applied on open; a database newer than this code is refused rather than misread.
* One transaction per report; saving is idempotent on the report id (saving the same
  report twice stores it once, also when two workers race).
* A released output's report is saved ``pending`` before the output is renamed into place
  and finalised after (:meth:`ReportStore.finalise`), so no output exists without a record.

Examples
--------
>>> store = ReportStore("sqlite://")          # in-memory, for tests
>>> store.schema_version == SCHEMA_VERSION
True
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from . import _records
from ._schema import (
    MIGRATIONS,
    PENDING,
    SCHEMA_VERSION,
    evaluations_table,
    meta_table,
    metadata,
    reports_table,
    stages_table,
)
from ._types import GenerationMetadata, Modality, Report, StageRecord, _jsonable
from .errors import ReportNotFound, StoreError

__all__ = ["PENDING", "SCHEMA_VERSION", "Evaluation", "ReportNotFound", "ReportStore",
           "reports_table", "stages_table"]

log = logging.getLogger(__name__)

#: PostgreSQL advisory-lock key held while the schema is checked, created or migrated
_SCHEMA_LOCK_KEY = 0x67726C5F736368  # "grl_sch"
#: how long a new SQLite store's switch to WAL mode is retried while other processes switch it
_WAL_SWITCH_TIMEOUT_S = 30.0
#: stored in the modality column for requests whose modality was not recognised
UNKNOWN_MODALITY = "unknown"
#: shortest report id prefix that may name a report; matches listed for an ambiguous one
_MIN_PREFIX = 6
_AMBIGUOUS_SHOWN = 5


@dataclass(frozen=True)
class Evaluation:
    """A stored evaluation: a robustness run, a benchmark, a detector evaluation, an audit.

    ``rows`` is a list of flat records (one per scheme x attack, group, ...) and
    ``summary`` the headline numbers; both are plain JSON.
    """

    evaluation_id: str
    kind: str
    name: str
    created_at: str
    status: str = "complete"
    config: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    rows: Sequence[Mapping[str, Any]] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"evaluation_id": self.evaluation_id, "kind": self.kind, "name": self.name,
                "created_at": self.created_at, "status": self.status,
                "config": _jsonable(self.config), "summary": _jsonable(self.summary),
                "rows": _jsonable(list(self.rows))}


def _utc(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _redact_url(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return "<unparseable url>"


class ReportStore:
    """Reads and writes reports. Use as a context manager or call :meth:`close`.

    Parameters
    ----------
    url : str
        SQLAlchemy URL. ``sqlite:///path`` creates the parent folder if needed.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self._lock = threading.Lock()
        try:
            parsed = sa.engine.make_url(url)
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"invalid store URL {url!r}: {exc}") from None
        self._is_sqlite = parsed.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self._is_sqlite:
            db = parsed.database
            if db and db != ":memory:":
                if not parsed.query.get("uri"):
                    path = Path(db).expanduser()
                    _create_private_file(path)
                    parsed = parsed.set(database=str(path))
            else:
                kwargs["poolclass"] = sa.pool.StaticPool
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = sa.create_engine(parsed, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"cannot open store {_redact_url(url)}: {exc}") from None
        if self._is_sqlite:
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.schema_version = self._migrate()
        self._lookup_engine: Engine | None = None

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        self.engine.dispose()
        if self._lookup_engine is not None:
            self._lookup_engine.dispose()

    def __enter__(self) -> ReportStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ReportStore({_redact_url(self.url)!r})"

    @staticmethod
    def describe(url: str) -> str:
        """``url`` with any password hidden, for messages."""
        return _redact_url(url)

    # -- schema ---------------------------------------------------------------------------
    def _migrate(self) -> int:
        """Create or upgrade the schema; safe when several processes open a new store at once.

        An up-to-date store is only read. Otherwise the check, the creation and the
        migrations run in one transaction that holds the store's write lock (SQLite
        ``BEGIN IMMEDIATE``; a PostgreSQL transaction-level advisory lock), so a second
        process waits for the first and then finds the schema in place.
        """
        try:
            with self.engine.connect() as conn:
                if _stored_version(conn) == SCHEMA_VERSION:
                    return SCHEMA_VERSION
            with self.engine.connect() as conn:
                self._lock_schema(conn)
                current = _stored_version(conn)
                if current > SCHEMA_VERSION:
                    raise StoreError(
                        f"the store {_redact_url(self.url)} has schema version {current}, newer "
                        f"than this guardrail supports ({SCHEMA_VERSION}); upgrade guardrail")
                if current < SCHEMA_VERSION:
                    metadata.create_all(conn, tables=[meta_table])
                    for version in range(current + 1, SCHEMA_VERSION + 1):
                        log.info("migrating record store to schema version %d", version)
                        MIGRATIONS[version - 1](conn)
                    key = meta_table.c.key == "schema_version"
                    conn.execute(meta_table.delete().where(key))
                    conn.execute(meta_table.insert().values(
                        key="schema_version", value=str(SCHEMA_VERSION)))
                conn.commit()
            return SCHEMA_VERSION
        except StoreError:
            raise
        except IntegrityError:  # another worker migrated a database without a schema lock
            with self.engine.connect() as conn:
                return _stored_version(conn)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open store {_redact_url(self.url)}: {_short(exc)}") from None

    def _lock_schema(self, conn: Connection) -> None:
        """Take the lock that serialises schema changes, held until ``conn`` commits."""
        if self._is_sqlite:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                         {"key": _SCHEMA_LOCK_KEY})

    # -- writing --------------------------------------------------------------------------
    def save(self, report: Report) -> bool:
        """Store ``report`` in one transaction.

        Returns ``True`` if it was inserted, ``False`` if a report with that id was
        already stored (saving is idempotent; the stored copy is kept unchanged).
        """
        report, manifest = _records.split_manifest(report)
        row = _report_row(report)
        stage_rows = [
            {
                "report_id": report.report_id,
                "position": i,
                "stage": s.stage,
                "status": s.status.value,
                "duration_ms": float(s.duration_ms),
                "reason": s.reason,
                "details": json.loads(json.dumps(s.to_dict()["details"])),
            }
            for i, s in enumerate(report.stages)
        ]
        try:
            with self._lock, self.engine.begin() as conn:
                exists = conn.execute(
                    sa.select(reports_table.c.report_id).where(
                        reports_table.c.report_id == report.report_id)
                ).first()
                if exists:
                    return False
                conn.execute(reports_table.insert().values(**row))
                if stage_rows:
                    conn.execute(stages_table.insert(), stage_rows)
                if manifest is not None:
                    _records.insert_manifest(conn, manifest)
            return True
        except IntegrityError:
            return False  # a concurrent worker stored the same report id first
        except SQLAlchemyError as exc:
            raise StoreError(
                f"cannot record report {report.report_id} in {_redact_url(self.url)}: {_short(exc)}",
                report_id=report.report_id,
            ) from None

    def finalise(self, report_id: str, status: str, *, error: str | None = None,
                 record_reason: str | None = None) -> None:
        """Replace the status of a report saved as :data:`PENDING` (one transaction).

        The guard saves a released output's report as ``pending`` before it renames the
        output into place, then calls this with the final status (``ok``, ``flagged``), or
        with ``error`` when the rename failed: ``error`` is then stored, the report's
        ``output`` cleared and its ``record`` stage marked ``error`` with ``record_reason``.

        Raises
        ------
        StoreError
            The store failed, or the report is not there or not pending any more.
        """
        t, st = reports_table, stages_table
        values: dict[str, Any] = {"status": status}
        if error is not None:
            values.update(error=error, output=None)
        try:
            with self._lock, self.engine.begin() as conn:
                done = conn.execute(t.update().where(
                    t.c.report_id == report_id, t.c.status == PENDING).values(**values))
                if done.rowcount != 1:
                    raise StoreError(f"cannot finalise report {report_id}: it is not pending "
                                     f"in {_redact_url(self.url)}", report_id=report_id)
                if error is not None:
                    conn.execute(st.update().where(st.c.report_id == report_id,
                                                   st.c.stage == "record")
                                 .values(status="error", reason=record_reason or error))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot finalise report {report_id} in "
                             f"{_redact_url(self.url)}: {_short(exc)}",
                             report_id=report_id) from None

    # -- reading --------------------------------------------------------------------------
    def get(self, report_id: str) -> Report:
        """The report with this id, or the only one whose id starts with it (>= 6 chars).

        Raises
        ------
        ReportNotFound
            No report has this id, or the prefix is ambiguous: several reports start with it,
            or it is shorter than 6 characters and some do (the message lists a few).
        """
        report_id = report_id.strip()
        if not report_id:
            raise ReportNotFound("empty report id")
        t = reports_table
        with self._read() as conn:
            row = conn.execute(sa.select(t).where(t.c.report_id == report_id)).first()
            if row is None:
                starts = t.c.report_id.startswith(report_id, autoescape=True)
                rows = conn.execute(sa.select(t).where(starts).order_by(
                    t.c.created_at.desc()).limit(_AMBIGUOUS_SHOWN + 1)).all()
                if len(rows) > 1 or (rows and len(report_id) < _MIN_PREFIX):
                    total = len(rows) if len(rows) <= _AMBIGUOUS_SHOWN else int(conn.execute(
                        sa.select(sa.func.count()).select_from(t).where(starts)).scalar_one())
                    raise ReportNotFound(_ambiguous(report_id, rows, total))
                row = rows[0] if rows else None
            if row is None:
                raise ReportNotFound(f"no report {report_id!r} in {_redact_url(self.url)}")
            stages = self._stages(conn, [row.report_id])
        return _row_report(row, stages.get(row.report_id, []))

    def list(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        modality: str | None = None,
        status: str | None = None,
        model_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        search: str | None = None,
    ) -> list[Report]:
        """Newest first, filtered and paginated in SQL."""
        query = self._filtered(
            sa.select(reports_table), modality=modality, status=status, model_id=model_id,
            since=since, until=until, search=search)
        query = query.order_by(reports_table.c.created_at.desc(), reports_table.c.report_id.desc())
        return self._reports(query.limit(max(0, int(limit))).offset(max(0, int(offset))))

    def find_by_watermark(self, scheme: str, payload: str, *, limit: int = 10) -> list[Report]:
        """Reports whose output carries watermark ``payload`` of ``scheme``, newest first."""
        t = reports_table
        return self._find(sa.and_(t.c.watermark_scheme == scheme, t.c.watermark_id == payload),
                          limit)

    def find_by_text_fingerprint(self, fingerprint: str, *, limit: int = 10) -> list[Report]:
        """Reports whose text output has this normalised-text fingerprint, newest first."""
        return self._find(reports_table.c.text_fingerprint == fingerprint, limit)

    def _find(self, condition: Any, limit: int) -> list[Report]:
        t = reports_table
        return self._reports(
            sa.select(t).where(condition).order_by(t.c.created_at.desc()).limit(limit))

    def _reports(self, query: Any) -> list[Report]:
        """Run a reports query and attach each report's stage records (one extra query)."""
        with self._read() as conn:
            rows = conn.execute(query).all()
            stages = self._stages(conn, [r.report_id for r in rows])
        return [_row_report(r, stages.get(r.report_id, [])) for r in rows]

    # -- manifest stores and API keys (guardrail._records) ---------------------------------
    def records(self, fn: Any, *args: Any, write: bool = False) -> Any:
        """Run ``fn(conn, *args)`` of :mod:`guardrail._records` on a connection (in one
        transaction when ``write``): manifest stores, soft bindings, API keys."""
        try:
            if write:
                with self._lock, self.engine.begin() as conn:
                    return fn(conn, *args)
            with self._read() as conn:
                return fn(conn, *args)
        except SQLAlchemyError as exc:
            raise StoreError(f"record store {_redact_url(self.url)}: {_short(exc)}") from None

    def lookup(self, fn: Any, *args: Any) -> Any:
        """Run a read-only ``fn(conn, *args)`` of :mod:`guardrail._records` that issues one
        statement, in one round trip: on PostgreSQL on a pooled autocommit connection without
        the ping, ``BEGIN`` and ``ROLLBACK`` of :meth:`records` (a connection found dead is
        replaced and the statement run again); elsewhere this is :meth:`records`."""
        if self._is_sqlite:
            return self.records(fn, *args)
        if self._lookup_engine is None:
            with self._lock:  # once; later lookups never wait for a write's lock
                self._lookup_engine = self._lookup_engine or sa.create_engine(
                    self.engine.url, future=True, isolation_level="AUTOCOMMIT")
        for retry in (True, False):
            try:
                with self._lookup_engine.connect() as conn:
                    return fn(conn, *args)
            except SQLAlchemyError as exc:
                if not (retry and getattr(exc, "connection_invalidated", False)):
                    raise StoreError(f"record store {_redact_url(self.url)}: {_short(exc)}") \
                        from None
        return None  # not reached: the second attempt returns or raises

    # -- evaluations ----------------------------------------------------------------------
    def save_evaluation(self, ev: Evaluation) -> None:
        """Insert or replace an evaluation (one transaction)."""
        d = ev.to_dict()
        row = {**d, "created_at": _utc(datetime.fromisoformat(ev.created_at))}
        t = evaluations_table
        try:
            with self._lock, self.engine.begin() as conn:
                conn.execute(t.delete().where(t.c.evaluation_id == ev.evaluation_id))
                conn.execute(t.insert().values(**row))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record evaluation {ev.evaluation_id}: {_short(exc)}") from None

    def get_evaluation(self, evaluation_id: str) -> Evaluation:
        t = evaluations_table
        with self._read() as conn:
            row = conn.execute(sa.select(t).where(t.c.evaluation_id == evaluation_id)).first()
        if row is None:
            raise ReportNotFound(f"no evaluation {evaluation_id!r} in {_redact_url(self.url)}")
        return _row_evaluation(row)

    def list_evaluations(self, *, kind: str | None = None, limit: int = 50,
                         offset: int = 0) -> list[Evaluation]:
        """Newest first; ``kind`` filters (``robustness``, ``benchmark``, ...)."""
        t = evaluations_table
        query = sa.select(t)
        if kind:
            query = query.where(t.c.kind == kind)
        query = query.order_by(t.c.created_at.desc()).limit(limit).offset(offset)
        with self._read() as conn:
            return [_row_evaluation(r) for r in conn.execute(query).all()]

    def count(self, **filters: Any) -> int:
        query = self._filtered(sa.select(sa.func.count()).select_from(reports_table), **filters)
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    def _filtered(self, query: Any, *, modality: str | None = None, status: str | None = None,
                  model_id: str | None = None, since: datetime | None = None,
                  until: datetime | None = None, search: str | None = None) -> Any:
        t = reports_table
        if modality:
            query = query.where(t.c.modality == Modality.parse(modality).value)
        if status:
            query = query.where(t.c.status == status)
        if model_id:
            query = query.where(t.c.model_id == model_id)
        if since:
            query = query.where(t.c.created_at >= _utc(since))
        if until:
            query = query.where(t.c.created_at < _utc(until))
        if search:
            like = f"%{search}%"
            query = query.where(sa.or_(
                t.c.report_id.like(like), t.c.model_id.like(like), t.c.output.like(like),
                t.c.content_hash.like(like)))
        return query

    def _stages(self, conn: Connection, ids: Iterable[str]) -> dict[str, list[StageRecord]]:
        ids = list(ids)
        out: dict[str, list[StageRecord]] = {i: [] for i in ids}
        if not ids:
            return out
        rows = conn.execute(
            sa.select(stages_table)
            .where(stages_table.c.report_id.in_(ids))
            .order_by(stages_table.c.report_id, stages_table.c.position)).all()
        for r in rows:
            out[r.report_id].append(StageRecord(
                stage=r.stage, status=r.status, duration_ms=r.duration_ms or 0.0,
                reason=r.reason, details=r.details or {}))
        return out

    def _read(self) -> Any:
        try:
            return self.engine.connect()
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read store {_redact_url(self.url)}: {_short(exc)}") from None


def _stored_version(conn: Connection) -> int:
    """The schema version recorded in the store; 0 for a store without a schema."""
    if not sa.inspect(conn).has_table(meta_table.name):
        return 0
    row = conn.execute(
        sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")).first()
    return int(row[0]) if row else 0


def _create_private_file(path: Path) -> None:
    """Create a missing SQLite file ``0600`` (empty: an empty database) in a new ``0700`` folder.

    SQLite gives the ``-wal`` and ``-shm`` files the database's mode; existing ones keep theirs.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder for {str(path)!r}: {exc.strerror}") from None
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot create the store file {str(path)!r}: {exc.strerror}") from None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA busy_timeout=30000")
        _use_wal(cur)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
    finally:
        cur.close()


def _use_wal(cur: Any) -> None:
    """Put the database in WAL mode (stored in the file, so switched once per file).

    Connections switching a new database at once can each hold the lock the other needs;
    SQLite then answers "database is locked" without waiting, so the switch is retried.
    """
    deadline = time.monotonic() + _WAL_SWITCH_TIMEOUT_S
    while True:
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


def _report_row(r: Report) -> dict[str, Any]:
    md = r.metadata
    d = r.to_dict()
    total = sum(s.duration_ms for s in r.stages)
    wm = (r.extra.get("evidence") or {}).get("watermark")
    return {
        "report_id": r.report_id,
        "created_at": _utc(datetime.fromisoformat(r.created_at)),
        "modality": r.modality.value if r.modality else UNKNOWN_MODALITY,
        "status": r.status,
        "model_id": md.model_id,
        "model_revision": md.model_revision,
        "prompt_hash": md.prompt_hash or None,
        "prompt": r.prompt,
        "content_hash": r.content_hash,
        "media_type": r.media_type,
        "output": r.output,
        "device": md.device,
        "seed": md.seed,
        "parameters": d["metadata"]["parameters"],
        "timings": d["metadata"]["timings_ms"],
        "error": r.error,
        "extra": d["extra"],
        "total_ms": total,
        "watermark_scheme": (wm or {}).get("scheme"),
        "watermark_id": (wm or {}).get("payload"),
        "content_fingerprint": r.extra.get("fingerprint"),
        "text_fingerprint": r.extra.get("fingerprint")
        if str(r.extra.get("fingerprint", "")).startswith("text-") else None,
    }


def _row_report(row: Any, stages: list[StageRecord]) -> Report:
    md = GenerationMetadata(
        model_id=row.model_id, model_revision=row.model_revision,
        prompt_hash=row.prompt_hash or "", parameters=row.parameters or {},
        seed=row.seed, device=row.device or "cpu", timings_ms=row.timings or {})
    created = _utc(row.created_at).isoformat(timespec="milliseconds")
    return Report(
        report_id=row.report_id, created_at=created,
        modality=None if row.modality == UNKNOWN_MODALITY else row.modality,
        status=row.status, metadata=md, stages=tuple(stages), content_hash=row.content_hash,
        media_type=row.media_type, output=row.output, prompt=row.prompt, error=row.error,
        extra=row.extra or {})


def _row_evaluation(row: Any) -> Evaluation:
    return Evaluation(evaluation_id=row.evaluation_id, kind=row.kind, name=row.name,
                      created_at=_utc(row.created_at).isoformat(timespec="milliseconds"),
                      status=row.status, config=row.config or {}, summary=row.summary or {},
                      rows=row.rows or [])


def _ambiguous(prefix: str, rows: Sequence[Any], total: int) -> str:
    """The message for a report id prefix that names more than one report (or is too short
    to name one): the newest few matches."""
    shown = "; ".join(f"{r.report_id[:12]} ({_utc(r.created_at).isoformat(timespec='seconds')}"
                      f", {r.status})" for r in rows[:_AMBIGUOUS_SHOWN])
    more = f" and {total - _AMBIGUOUS_SHOWN} more" if total > _AMBIGUOUS_SHOWN else ""
    why = (f"{total} reports start with it" if total > 1 else
           f"give at least {_MIN_PREFIX} characters")
    return (f"report id prefix {prefix!r} is ambiguous: {why}: {shown}{more}; give more "
            f"characters of the id")


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(getattr(exc, "orig", None) or exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
