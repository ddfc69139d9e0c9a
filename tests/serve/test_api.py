"""The /v1 endpoints, access control and the protections of the service."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from guardrail import Config, ReportStore
from guardrail.errors import ConfigError, InputError, ReportNotFound
from guardrail.serve.app import create_app
from guardrail.serve.auth import RateLimiter, create_key, list_keys, revoke_key
from guardrail.serve.problems import Problem
from guardrail.serve.settings import ServeSettings, is_loopback
from guardrail.serve.work import WorkPool
from guardrail.verify import verify_file

from .conftest import PhotoGenerator, bearer, make_config


def test_verify_returns_the_cli_json_document(client, token, generated, serve_config, tmp_path):
    path = tmp_path / "out.png"
    path.write_bytes(generated["bytes"])
    expected = verify_file(path, serve_config).to_dict()
    expected["file"] = "out.png"
    r = client.post("/v1/verify", files={"file": ("out.png", generated["bytes"], "image/png")},
                    headers=bearer(token))
    assert r.status_code == 200, r.text
    got = r.json()
    assert got == expected  # the very document `guardrail verify --json` prints
    assert got["provenance"]["state"] == "TRUSTED"
    # raw body with a content type: the same verdict; anonymous (the default allows verify)
    raw = client.post("/v1/verify", content=generated["bytes"],
                      headers={"Content-Type": "image/png"})
    assert raw.status_code == 200 and raw.json()["verdict"] == expected["verdict"]
    assert raw.json()["file"] == "upload.png"
    metrics = client.get("/metrics").text
    assert 'guardrail_verify_verdicts_total{label="AI-generated"} 2.0' in metrics


def test_a_damaged_upload_is_could_not_be_verified_not_an_error(client):
    r = client.post("/v1/verify", content=b"\x89PNG\r\n\x1a\nbroken",
                    headers={"Content-Type": "image/png"})
    assert r.status_code == 200
    assert r.json()["verdict"]["label"] == "Could not be verified"


def test_errors_are_problem_details(client, token):
    r = client.post("/v1/verify", content=b"x", headers={"Content-Type": "application/pdf"})
    assert r.status_code == 415
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/unsupported-media-type")
    assert client.get("/nowhere").json()["status"] == 404
    assert client.post("/v1/verify", content=b"", headers={
        "Content-Type": "image/png"}).status_code == 400
    r = client.post("/v1/generate", content=b"{", headers={
        **bearer(token), "Content-Type": "application/json"})
    assert r.status_code == 400
    r = client.post("/v1/generate", json={"modality": "video", "prompt": "x"},
                    headers=bearer(token))
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"


def test_request_size_limit_is_413_before_reading(tmp_path):
    cfg = make_config(tmp_path, max_body_bytes=1000)
    with TestClient(create_app(cfg)) as c:
        r = c.post("/v1/verify", content=b"\0" * 1001, headers={"Content-Type": "image/png"})
        assert r.status_code == 413 and r.json()["status"] == 413

        def chunks():
            for _ in range(5):
                yield b"\0" * 400

        r = c.post("/v1/verify", content=chunks(), headers={"Content-Type": "image/png"})
        assert r.status_code == 413


def test_keys_scopes_401_403_and_revocation(client, serve_config, generated):
    with ReportStore(serve_config.store_url) as store:
        verify_only, rec = create_key(store, "verifier", ["verify"])
        # only the hash is stored, never the token
        with store.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT token_hash FROM api_keys")).all()
        assert verify_only not in json.dumps([list(r) for r in rows])
        assert hashlib.sha256(verify_only.encode()).hexdigest() in {r[0] for r in rows}
    # anonymous: reports are not public by default -> 401, without details
    r = client.get("/v1/reports")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["detail"] == "authentication required"
    # a key without the scope -> 403; a wrong token -> 401 (the same answer as none)
    assert client.get("/v1/reports", headers=bearer(verify_only)).status_code == 403
    bad = verify_only[:-4] + "AAAA"
    assert client.post("/v1/verify", content=generated["bytes"], headers={
        **bearer(bad), "Content-Type": "image/png"}).status_code == 401
    assert client.get("/v1/reports", headers={"X-API-Key": "nonsense"}).status_code == 401
    with ReportStore(serve_config.store_url) as store:
        revoke_key(store, rec["key_id"])
        assert list_keys(store)[-1]["active"] is False
        with pytest.raises(ReportNotFound):
            revoke_key(store, rec["key_id"])
        with pytest.raises(InputError):
            create_key(store, "x", ["admin"])
    client.app.state.auth._cache.clear()
    assert client.post("/v1/verify", content=generated["bytes"], headers={
        **bearer(verify_only), "Content-Type": "image/png"}).status_code == 401


def test_reports_and_outputs(client, token, generated):
    rid = generated["report"]["report_id"]
    listing = client.get("/v1/reports", params={"limit": 5}, headers=bearer(token)).json()
    assert [r["report_id"] for r in listing["reports"]] == [rid]
    one = client.get(f"/v1/reports/{rid}", headers=bearer(token)).json()
    assert one["manifest_id"] == generated["report"]["manifest_id"]
    assert client.get("/v1/reports/ffffffffff", headers=bearer(token)).status_code == 404
    assert client.get("/v1/outputs/" + "0" * 32, headers=bearer(token)).status_code == 404
    b64 = client.post("/v1/generate", headers=bearer(token), json={
        "modality": "image", "prompt": "another", "seed": 2, "output": "base64"}).json()
    assert b64["output"]["base64"]


def test_rate_limit_429_per_key(tmp_path):
    cfg = make_config(tmp_path, rate_limit_per_second=0.001, rate_limit_burst=2)
    with TestClient(create_app(cfg)) as c:
        codes = [c.get("/matches/byBinding", params={
            "alg": "io.guardrail.fingerprint.phash.v1", "value": "AA=="}).status_code
            for _ in range(3)]
        assert codes == [200, 200, 429]
        r = c.get("/matches/byBinding", params={"alg": "io.guardrail.fingerprint.phash.v1",
                                                "value": "AA=="})
        assert int(r.headers["retry-after"]) >= 1
        assert c.get("/healthz").status_code == 200  # health is never rate limited


def test_token_bucket_refills():
    bucket = RateLimiter(rate=1000.0, burst=1)
    bucket.take("a")
    with pytest.raises(Problem):
        bucket.take("a")
    bucket.take("b")  # buckets are per principal
    threading.Event().wait(0.01)
    bucket.take("a")


def test_work_pool_refuses_beyond_its_queue_and_times_out():
    async def scenario() -> None:
        pool = WorkPool(threads=1, max_queue=1, timeout=5)
        gate = threading.Event()
        first = asyncio.ensure_future(pool.run(gate.wait))
        second = asyncio.ensure_future(pool.run(gate.wait))
        await asyncio.sleep(0.05)
        with pytest.raises(Problem) as full:
            await pool.run(lambda: 1)
        assert full.value.status == 503 and full.value.kind == "queue-full"
        gate.set()
        await asyncio.gather(first, second)
        assert pool.admitted == 0
        slow = WorkPool(threads=1, max_queue=1, timeout=0.05)
        stop = threading.Event()
        with pytest.raises(Problem) as late:
            await slow.run(stop.wait, 5)
        assert late.value.kind == "timeout"
        assert slow.admitted == 1  # the place is held until the thread is done
        stop.set()
        await asyncio.sleep(0.05)
        assert slow.admitted == 0
        pool.shutdown()
        slow.shutdown()

    asyncio.run(scenario())


def test_anonymous_beyond_loopback_is_refused(tmp_path):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path)}})
    with pytest.raises(ConfigError, match="anonymous"):
        ServeSettings.from_config(cfg, address="0.0.0.0").check_exposure()
    ServeSettings.from_config(cfg).check_exposure()
    keys_only = Config.load(overrides={"serve": {"anonymous_scopes": []}})
    ServeSettings.from_config(keys_only, address="0.0.0.0").check_exposure()
    public = Config.load(overrides={"serve": {"allow_anonymous_remote": True}})
    ServeSettings.from_config(public, address="0.0.0.0").check_exposure()


@pytest.mark.parametrize("bad", [{"port": 0}, {"workers": 0}, {"anonymous_scopes": ["admin"]},
                                 {"request_timeout_seconds": 0.0}, {"max_queue": 0},
                                 {"preload_generators": ["video"]}])
def test_serve_config_is_validated(bad):
    with pytest.raises(ConfigError, match="serve"):
        Config.load(overrides={"serve": bad})


def test_generate_with_a_generator_loaded_once(tmp_path):
    cfg = make_config(tmp_path, anonymous_scopes=["generate"])
    gen = PhotoGenerator()
    loads = []
    app = create_app(cfg, generators={"image": gen})
    with TestClient(app) as c:
        for seed in (1, 2):
            r = c.post("/v1/generate", json={"modality": "image", "prompt": "p", "seed": seed})
            assert r.status_code == 200
            loads.append(id(app.state.resources.guard(__import__("guardrail").Modality.IMAGE)))
    assert len(set(loads)) == 1
