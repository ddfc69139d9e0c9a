"""The record store keeps manifest stores, soft bindings and API keys (schema version 5;
version 6 covers the lookup by binding with one index): SQLite and PostgreSQL, and stores
made by earlier versions are migrated in place."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from guardrail import ReportStore
from guardrail._records import (
    MANIFEST_STORE_KEY,
    find_by_binding,
    get_manifest,
    manifests_of_reports,
    split_manifest,
)
from guardrail._schema import MIGRATIONS, SCHEMA_VERSION, meta_table
from guardrail._types import GenerationMetadata, Report


def _report(payload: str = "0badcafe", status: str = "ok") -> Report:
    rid = uuid.uuid4().hex
    blob = b"jumbf-bytes-" + rid.encode()
    evidence = {"watermark": {"scheme": "guardrail-image", "version": "1", "payload": payload},
                "provenance": {"manifest": f"urn:c2pa:{uuid.uuid4()}", "media_type": "image/png"},
                MANIFEST_STORE_KEY: base64.b64encode(blob).decode()}
    return Report(report_id=rid, created_at="2026-01-01T00:00:00.000+00:00", modality="image",
                  status=status, metadata=GenerationMetadata(model_id="fake"), stages=(),
                  extra={"evidence": evidence, "fingerprint": "phash:00ff00ff00ff00ff"})


def _check_store(store: ReportStore) -> None:
    rep = _report()
    label = rep.extra["evidence"]["provenance"]["manifest"]
    assert store.save(rep)
    assert MANIFEST_STORE_KEY not in store.get(rep.report_id).extra["evidence"]
    mark = ("io.guardrail.watermark.image.v1", base64.b64encode(bytes.fromhex("0badcafe")).decode())
    found = store.records(find_by_binding, *mark, 10)
    assert (label, "phash:00ff00ff00ff00ff") in found
    assert store.lookup(find_by_binding, *mark, 10) == found  # the one-round-trip path
    assert store.lookup(get_manifest, label) == store.records(get_manifest, label)
    fp = ("io.guardrail.fingerprint.phash.v1",
          base64.b64encode(bytes.fromhex("00ff00ff00ff00ff")).decode())
    assert label in [m for m, _ in store.records(find_by_binding, *fp, 10)]
    got = store.records(get_manifest, label)
    assert got.data == b"jumbf-bytes-" + rep.report_id.encode()
    assert store.records(manifests_of_reports, [rep.report_id]) == {rep.report_id: label}
    assert not store.save(rep)  # idempotent: stored once
    # a blocked or failed output's manifest is not served
    blocked = _report(payload="0badcafe", status="blocked")
    store.save(blocked)
    ids = [m for m, _ in store.records(find_by_binding, *mark, 10)]
    assert blocked.extra["evidence"]["provenance"]["manifest"] not in ids


def test_sqlite_store_keeps_manifests(tmp_path: Path):
    with ReportStore(f"sqlite:///{tmp_path / 'r.db'}") as store:
        _check_store(store)


def test_postgres_store_keeps_manifests(postgres_url):
    if not postgres_url:
        pytest.skip("no PostgreSQL server")
    with ReportStore(postgres_url) as store:
        assert store.schema_version == SCHEMA_VERSION
        _check_store(store)


def _old_store(url: str, version: int, *statements: str) -> None:
    """A store as schema ``version`` left it: its migrations and recorded version, then the
    SQL ``statements``."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for migrate in MIGRATIONS[:version]:
            migrate(conn)
        meta_table.create(conn)
        conn.execute(meta_table.insert().values(key="schema_version", value=str(version)))
        for sql in statements:
            conn.execute(sa.text(sql))
    engine.dispose()


def test_a_version_4_store_is_migrated_in_place(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    _old_store(url, 4,
               "INSERT INTO reports (report_id, created_at, modality, status, model_id) "
               "VALUES ('old1', '2025-01-01 00:00:00', 'image', 'ok', 'm')")
    with ReportStore(url) as store:
        assert store.schema_version == SCHEMA_VERSION == 6
        names = set(sa.inspect(store.engine).get_table_names())
        assert {"manifests", "soft_bindings", "api_keys"} <= names
        assert store.get("old1").status == "ok"
        _check_store(store)


def _indexes(store: ReportStore) -> set[str]:
    return {i["name"] for i in sa.inspect(store.engine).get_indexes("soft_bindings")}


def test_a_version_5_store_gets_the_covering_binding_index(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'v5.db'}"
    _old_store(url, 5,
               # what version 5 made: the (alg, value) index
               "DROP INDEX ix_soft_bindings_lookup",
               "CREATE INDEX ix_soft_bindings_alg_value ON soft_bindings (alg, value)",
               "INSERT INTO manifests (manifest_id, created_at, data) "
               "VALUES ('urn:c2pa:old', '2025-01-01 00:00:00', X'00')",
               "INSERT INTO soft_bindings (manifest_id, alg, value) "
               "VALUES ('urn:c2pa:old', 'io.guardrail.watermark.image.v1', 'AAE=')")
    with ReportStore(url) as store:
        assert store.schema_version == SCHEMA_VERSION == 6
        assert "ix_soft_bindings_lookup" in _indexes(store)
        assert "ix_soft_bindings_alg_value" not in _indexes(store)
        assert store.lookup(find_by_binding, "io.guardrail.watermark.image.v1", "AAE=",
                            5) == [("urn:c2pa:old", None)]
        plan = " ".join(str(r) for r in store.engine.connect().execute(sa.text(
            "EXPLAIN QUERY PLAN SELECT manifest_id FROM soft_bindings "
            "WHERE alg = 'a' AND value = 'b'")))
        assert "COVERING INDEX ix_soft_bindings_lookup" in plan
        _check_store(store)
    with ReportStore(url) as again:  # opening a current store changes nothing
        assert again.schema_version == 6 and "ix_soft_bindings_lookup" in _indexes(again)


def test_postgres_lookup_uses_the_index_and_survives_a_dropped_connection(postgres_url):
    if not postgres_url:
        pytest.skip("no PostgreSQL server")
    with ReportStore(postgres_url) as store:
        assert "ix_soft_bindings_lookup" in _indexes(store)
        assert "ix_soft_bindings_alg_value" not in _indexes(store)
        payload = uuid.uuid4().hex[:16]  # the server's database outlives this test
        rep = _report(payload=payload)
        store.save(rep)
        mark = ("io.guardrail.watermark.image.v1",
                base64.b64encode(bytes.fromhex(payload)).decode())
        label = rep.extra["evidence"]["provenance"]["manifest"]
        assert [m for m, _ in store.lookup(find_by_binding, *mark, 10)] == [label]
        backend = store.lookup(lambda conn: conn.execute(sa.text(
            "SELECT pg_backend_pid()")).scalar())
        with store.engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        # the pooled connection is dead: replaced, and the lookup answered
        assert [m for m, _ in store.lookup(find_by_binding, *mark, 10)] == [label]
        with store.engine.connect() as conn:
            conn.execute(sa.text("SET enable_seqscan = off"))
            plan = " ".join(r[0] for r in conn.execute(sa.text(
                "EXPLAIN SELECT manifest_id FROM soft_bindings "
                "WHERE alg = :a AND value = :v"), {"a": mark[0], "v": mark[1]}))
        assert "ix_soft_bindings_lookup" in plan


def test_split_manifest_leaves_unsigned_reports_alone():
    rep = _report()
    plain = Report(report_id="x", created_at=rep.created_at, modality="image", status="ok",
                   metadata=rep.metadata, stages=())
    assert split_manifest(plain) == (plain, None)
    clean, rec = split_manifest(rep)
    assert rec is not None and rec.manifest_id.startswith("urn:c2pa:")
    assert MANIFEST_STORE_KEY not in clean.extra["evidence"]
