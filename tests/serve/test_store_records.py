"""The record store keeps manifest stores, soft bindings and API keys (schema version 5):
SQLite and PostgreSQL, and a store made by the previous version is migrated in place."""

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


def test_a_version_4_store_is_migrated_in_place(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for migrate in MIGRATIONS[:4]:
            migrate(conn)
        meta_table.create(conn)
        conn.execute(meta_table.insert().values(key="schema_version", value="4"))
        conn.execute(sa.text(
            "INSERT INTO reports (report_id, created_at, modality, status, model_id) "
            "VALUES ('old1', '2025-01-01 00:00:00', 'image', 'ok', 'm')"))
    engine.dispose()
    with ReportStore(url) as store:
        assert store.schema_version == SCHEMA_VERSION == 5
        names = set(sa.inspect(store.engine).get_table_names())
        assert {"manifests", "soft_bindings", "api_keys"} <= names
        assert store.get("old1").status == "ok"
        _check_store(store)


def test_split_manifest_leaves_unsigned_reports_alone():
    rep = _report()
    plain = Report(report_id="x", created_at=rep.created_at, modality="image", status="ok",
                   metadata=rep.metadata, stages=())
    assert split_manifest(plain) == (plain, None)
    clean, rec = split_manifest(rep)
    assert rec is not None and rec.manifest_id.startswith("urn:c2pa:")
    assert MANIFEST_STORE_KEY not in clean.extra["evidence"]
