"""What the record store keeps besides reports: the manifest store of every signed output
with its soft bindings, and the API keys of ``guardrail serve``.

:meth:`guardrail.store.ReportStore.save` moves a signed output's manifest store out of the
report (the provenance stage hands it over as the evidence entry ``c2pa_manifest_store``)
into the ``manifests`` table, and indexes its soft bindings - the watermark id under the
scheme's algorithm name and the content fingerprint (image pHash, normalised-text hash) -
in ``soft_bindings``, in the report's own transaction. Stores created before schema
version 5 have no manifest stores for their older reports: those bytes were never kept.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ._schema import api_keys_table, bindings_table, manifests_table, reports_table
from ._softbinding import fingerprint_binding, watermark_binding
from ._types import Report

__all__ = ["MANIFEST_STORE_KEY", "ApiKeyRecord", "ManifestRecord", "bindings_of",
           "insert_manifest", "split_manifest"]

#: the evidence entry in which the provenance stage hands over the manifest store (base64)
MANIFEST_STORE_KEY = "c2pa_manifest_store"
#: report statuses whose manifests are served (a withheld or failed output has none to find)
SERVED_STATUSES = ("ok", "flagged", "pending")


@dataclass(frozen=True)
class ManifestRecord:
    """A stored manifest store: its id (the active manifest's label), the report it
    belongs to, the signed media type and the bytes (JUMBF)."""

    manifest_id: str
    report_id: str | None
    media_type: str | None
    data: bytes
    bindings: tuple[tuple[str, str], ...] = ()
    created_at: str | None = None


@dataclass(frozen=True)
class ApiKeyRecord:
    """An API key as stored: never the token, only its SHA-256."""

    key_id: str
    name: str
    token_hash: str
    scopes: tuple[str, ...]
    created_at: str
    revoked_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "name": self.name, "scopes": list(self.scopes),
                "created_at": self.created_at, "revoked_at": self.revoked_at,
                "active": self.revoked_at is None}


def bindings_of(report: Report) -> list[tuple[str, str]]:
    """The soft bindings ``(alg, base64 value)`` a report's output can be found by."""
    out = []
    wm = (report.extra.get("evidence") or {}).get("watermark")
    if isinstance(wm, Mapping) and (b := watermark_binding(wm)):
        out.append(b)
    if b := fingerprint_binding(str(report.extra.get("fingerprint") or "")):
        out.append(b)
    return out


def split_manifest(report: Report) -> tuple[Report, ManifestRecord | None]:
    """``report`` without the manifest store its provenance stage handed over, and that
    manifest store as a :class:`ManifestRecord` (``None`` when the output was not signed)."""
    evidence = report.extra.get("evidence")
    if not isinstance(evidence, Mapping) or MANIFEST_STORE_KEY not in evidence:
        return report, None
    rest = {k: v for k, v in evidence.items() if k != MANIFEST_STORE_KEY}
    extra = {**report.extra, "evidence": rest}
    clean = dataclasses.replace(report, extra=extra)
    label = (rest.get("provenance") or {}).get("manifest")
    try:
        data = base64.b64decode(str(evidence[MANIFEST_STORE_KEY]), validate=True)
    except (binascii.Error, ValueError):
        return clean, None
    if not label or not data:
        return clean, None
    media_type = (rest.get("provenance") or {}).get("media_type")
    return clean, ManifestRecord(manifest_id=str(label), report_id=report.report_id,
                                 media_type=media_type, data=data,
                                 bindings=tuple(bindings_of(clean)))


def insert_manifest(conn: Connection, rec: ManifestRecord) -> bool:
    """Insert a manifest store and its bindings unless its id is stored already."""
    m = manifests_table
    if conn.execute(sa.select(m.c.manifest_id).where(m.c.manifest_id == rec.manifest_id)).first():
        return False
    conn.execute(m.insert().values(manifest_id=rec.manifest_id, report_id=rec.report_id,
                                   created_at=datetime.now(UTC), media_type=rec.media_type,
                                   data=rec.data))
    rows = [{"manifest_id": rec.manifest_id, "alg": a, "value": v} for a, v in rec.bindings]
    if rows:
        conn.execute(bindings_table.insert(), rows)
    return True


def find_by_binding(conn: Connection, alg: str, value: str,
                    limit: int) -> list[tuple[str, str | None]]:
    """``(manifest id, recorded content fingerprint)`` of the manifests bound to
    ``(alg, value)``, newest first, whose report was released."""
    b, m, r = bindings_table, manifests_table, reports_table
    query = (sa.select(b.c.manifest_id, r.c.content_fingerprint).select_from(
        b.join(m, m.c.manifest_id == b.c.manifest_id)
        .outerjoin(r, r.c.report_id == m.c.report_id))
        .where(b.c.alg == alg, b.c.value == value,
               sa.or_(m.c.report_id.is_(None), r.c.status.in_(SERVED_STATUSES)))
        .order_by(m.c.created_at.desc()).limit(limit))
    return [(row[0], row[1]) for row in conn.execute(query).all()]


def regions_of_manifests(conn: Connection, manifest_ids: Sequence[str]) -> dict[str, str]:
    """The region fingerprint (:mod:`guardrail.fingerprint_region`) each manifest's report
    recorded, by manifest id, for those that have one."""
    if not manifest_ids:
        return {}
    m, r = manifests_table, reports_table
    rows = conn.execute(sa.select(m.c.manifest_id, r.c.extra)
                        .select_from(m.join(r, r.c.report_id == m.c.report_id))
                        .where(m.c.manifest_id.in_(list(manifest_ids)))).all()
    out: dict[str, str] = {}
    for mid, extra in rows:
        region = extra.get("region") if isinstance(extra, dict) else None
        if isinstance(region, str):
            out[mid] = region
    return out


def manifests_of_reports(conn: Connection, report_ids: Sequence[str]) -> dict[str, str]:
    """Manifest id by report id, for reports that have one."""
    if not report_ids:
        return {}
    m = manifests_table
    rows = conn.execute(sa.select(m.c.report_id, m.c.manifest_id)
                        .where(m.c.report_id.in_(list(report_ids)))).all()
    return {row[0]: row[1] for row in rows}


def get_manifest(conn: Connection, manifest_id: str) -> ManifestRecord | None:
    m = manifests_table
    row = conn.execute(sa.select(m).where(m.c.manifest_id == manifest_id)).first()
    if row is None:
        return None
    return ManifestRecord(manifest_id=row.manifest_id, report_id=row.report_id,
                          media_type=row.media_type, data=bytes(row.data),
                          created_at=_iso(row.created_at))


# -- API keys -----------------------------------------------------------------------------
def _iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).isoformat(timespec="seconds")


def _key(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(key_id=row.key_id, name=row.name, token_hash=row.token_hash,
                        scopes=tuple(s for s in row.scopes.split() if s),
                        created_at=_iso(row.created_at) or "", revoked_at=_iso(row.revoked_at))


def insert_api_key(conn: Connection, key_id: str, name: str, token_hash: str,
                   scopes: Sequence[str]) -> ApiKeyRecord:
    now = datetime.now(UTC)
    conn.execute(api_keys_table.insert().values(key_id=key_id, name=name, token_hash=token_hash,
                                                scopes=" ".join(scopes), created_at=now))
    return ApiKeyRecord(key_id=key_id, name=name, token_hash=token_hash, scopes=tuple(scopes),
                        created_at=_iso(now) or "")


def get_api_key(conn: Connection, key_id: str) -> ApiKeyRecord | None:
    t = api_keys_table
    row = conn.execute(sa.select(t).where(t.c.key_id == key_id)).first()
    return _key(row) if row is not None else None


def list_api_keys(conn: Connection) -> list[ApiKeyRecord]:
    t = api_keys_table
    return [_key(r) for r in conn.execute(sa.select(t).order_by(t.c.created_at)).all()]


def revoke_api_key(conn: Connection, key_id: str) -> bool:
    t = api_keys_table
    done = conn.execute(t.update().where(t.c.key_id == key_id, t.c.revoked_at.is_(None))
                        .values(revoked_at=datetime.now(UTC)))
    return done.rowcount == 1
