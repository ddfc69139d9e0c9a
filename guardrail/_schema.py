"""The record store's tables and the ordered migrations that build them.

A schema version is kept in ``guardrail_meta``; :data:`MIGRATIONS` lists one function per
version (append new ones; never edit one that has shipped). :class:`guardrail.store.
ReportStore` applies the missing ones when it opens a store.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["MIGRATIONS", "PENDING", "SCHEMA_VERSION", "api_keys_table", "bindings_table",
           "evaluations_table", "manifests_table", "meta_table", "metadata", "reports_table",
           "stages_table"]

#: status of a report saved before its output was renamed into place (guardrail._release);
#: the guard replaces it with the final status once the output is released
PENDING = "pending"

metadata = sa.MetaData()

meta_table = sa.Table(
    "guardrail_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

reports_table = sa.Table(
    "reports",
    metadata,
    sa.Column("report_id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("modality", sa.String(16), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("model_id", sa.Text, nullable=False),
    sa.Column("model_revision", sa.Text),
    sa.Column("prompt_hash", sa.String(128), index=True),
    sa.Column("prompt", sa.Text),
    sa.Column("content_hash", sa.String(80), index=True),
    sa.Column("media_type", sa.String(64)),
    sa.Column("output", sa.Text),
    sa.Column("device", sa.String(32)),
    sa.Column("seed", sa.BigInteger),
    sa.Column("parameters", sa.JSON),
    sa.Column("timings", sa.JSON),
    sa.Column("error", sa.Text),
    sa.Column("extra", sa.JSON),
    sa.Column("total_ms", sa.Float),
    # schema version 2
    sa.Column("watermark_scheme", sa.String(64)),
    sa.Column("watermark_id", sa.String(64), index=True),
    # schema version 4
    sa.Column("content_fingerprint", sa.Text),
    sa.Column("text_fingerprint", sa.String(96), index=True),
)

stages_table = sa.Table(
    "stage_records",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "report_id",
        sa.String(64),
        sa.ForeignKey("reports.report_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("stage", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("duration_ms", sa.Float),
    sa.Column("reason", sa.Text),
    sa.Column("details", sa.JSON),
    sa.Index("ix_stage_records_stage_status", "stage", "status"),
)


evaluations_table = sa.Table(
    "evaluations",
    metadata,
    sa.Column("evaluation_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False, index=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("config", sa.JSON),
    sa.Column("summary", sa.JSON),
    sa.Column("rows", sa.JSON),
)


# schema version 5: what the Soft Binding Resolution API of ``guardrail serve`` reads
manifests_table = sa.Table(
    "manifests",
    metadata,
    # the active manifest's label (``urn:c2pa:...``): the API's manifestId
    sa.Column("manifest_id", sa.String(255), primary_key=True),
    sa.Column("report_id", sa.String(64),
              sa.ForeignKey("reports.report_id", ondelete="CASCADE"), index=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("media_type", sa.String(64)),
    # the C2PA manifest store (JUMBF, application/c2pa) signed into the output
    sa.Column("data", sa.LargeBinary, nullable=False),
)

bindings_table = sa.Table(
    "soft_bindings",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("manifest_id", sa.String(255),
              sa.ForeignKey("manifests.manifest_id", ondelete="CASCADE"), nullable=False,
              index=True),
    # reverse-DNS algorithm name (guardrail.provenance.softbinding) and base64 value
    sa.Column("alg", sa.String(128), nullable=False),
    sa.Column("value", sa.String(255), nullable=False),
    # schema version 6: covers the lookup by binding (an index-only scan)
    sa.Index("ix_soft_bindings_lookup", "alg", "value", "manifest_id"),
)

api_keys_table = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    # SHA-256 of the whole token (hex): the token itself is never stored
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)


# -- migrations ---------------------------------------------------------------------------
# Each migration takes a connection inside the migration transaction. Append new ones;
# never edit one that has shipped.
# Migrations inspect before they change, so that a database created by this version's
# ``create_all`` (which already has every column) passes through the later steps unchanged.
def _migration_1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[reports_table, stages_table])


def _migration_2(conn: Connection) -> None:
    """Watermark scheme and id per report, indexed for recovery through the watermark."""
    columns = {c["name"] for c in sa.inspect(conn).get_columns("reports")}
    if "watermark_scheme" not in columns:
        conn.execute(sa.text("ALTER TABLE reports ADD COLUMN watermark_scheme VARCHAR(64)"))
    if "watermark_id" not in columns:
        conn.execute(sa.text("ALTER TABLE reports ADD COLUMN watermark_id VARCHAR(64)"))
    indexes = {i["name"] for i in sa.inspect(conn).get_indexes("reports")}
    if "ix_reports_watermark_id" not in indexes:
        conn.execute(sa.text("CREATE INDEX ix_reports_watermark_id ON reports (watermark_id)"))


def _migration_3(conn: Connection) -> None:
    """Evaluations: robustness runs, benchmarks, detector evaluations, audits."""
    metadata.create_all(conn, tables=[evaluations_table])


def _migration_4(conn: Connection) -> None:
    """Content fingerprints (pHash, audio envelope, normalised-text hash) for recovery."""
    columns = {c["name"] for c in sa.inspect(conn).get_columns("reports")}
    if "content_fingerprint" not in columns:
        conn.execute(sa.text("ALTER TABLE reports ADD COLUMN content_fingerprint TEXT"))
    if "text_fingerprint" not in columns:
        conn.execute(sa.text("ALTER TABLE reports ADD COLUMN text_fingerprint VARCHAR(96)"))
    indexes = {i["name"] for i in sa.inspect(conn).get_indexes("reports")}
    if "ix_reports_text_fingerprint" not in indexes:
        conn.execute(sa.text(
            "CREATE INDEX ix_reports_text_fingerprint ON reports (text_fingerprint)"))


def _migration_5(conn: Connection) -> None:
    """Manifest stores of signed outputs, their soft bindings, and API keys (serve)."""
    metadata.create_all(conn, tables=[manifests_table, bindings_table, api_keys_table])


def _migration_6(conn: Connection) -> None:
    """The lookup by soft binding reads only an index: ``(alg, value, manifest_id)``
    replaces ``(alg, value)``."""
    indexes = {i["name"] for i in sa.inspect(conn).get_indexes("soft_bindings")}
    if "ix_soft_bindings_lookup" not in indexes:
        conn.execute(sa.text("CREATE INDEX ix_soft_bindings_lookup "
                             "ON soft_bindings (alg, value, manifest_id)"))
    if "ix_soft_bindings_alg_value" in indexes:
        conn.execute(sa.text("DROP INDEX ix_soft_bindings_alg_value"))


MIGRATIONS: Sequence[Callable[[Connection], None]] = (
    _migration_1, _migration_2, _migration_3, _migration_4, _migration_5, _migration_6)
SCHEMA_VERSION = len(MIGRATIONS)
