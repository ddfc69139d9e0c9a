"""The C2PA Soft Binding Resolution API: a stripped guardrail image is found by its
content, its manifest store is served and c2pa-python validates it."""

from __future__ import annotations

import base64
import io
import json
import struct

import pytest

from guardrail import ReportStore
from guardrail._softbinding import watermark_alg
from guardrail.serve.jumbf import JumbfError, active_manifest_store, boxes
from guardrail.watermark.registry import registered

from .conftest import bearer


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        out.append((kind, data[pos:pos + 12 + n]))
        pos += 12 + n
    return out


def strip_c2pa(png: bytes) -> tuple[bytes, bytes, int]:
    """The PNG without its manifest chunk, the chunk's payload and where it was."""
    chunks = png_chunks(png)
    at = [i for i, (k, _) in enumerate(chunks) if k == b"caBX"]
    assert len(at) == 1
    payload = chunks[at[0]][1][8:-4]
    rest = png[:8] + b"".join(c for i, (_, c) in enumerate(chunks) if i != at[0])
    return rest, payload, at[0]


def test_supported_algorithms_come_from_the_scheme_registry(client):
    r = client.get("/services/supportedAlgorithms")
    assert r.status_code == 200
    body = r.json()
    marks = {a["alg"] for a in body["watermarks"]}
    expected = {watermark_alg(n) for m in ("image", "audio") for n in registered(m)}
    assert marks == expected
    assert "io.guardrail.watermark.image.v1" in marks
    assert "io.guardrail.watermark.audio.v1" in marks
    assert {a["alg"] for a in body["fingerprints"]} == {
        "io.guardrail.fingerprint.phash.v1", "io.guardrail.fingerprint.text-sha256.v1"}


def test_stripped_image_is_found_by_content_and_its_manifest_validates(client, token,
                                                                        generated, serve_config):
    manifest_id = generated["report"]["manifest_id"]
    assert manifest_id and manifest_id.startswith("urn:")
    signed = generated["bytes"]
    stripped, embedded, position = strip_c2pa(signed)
    # the stripped file is found by what it is (the watermark, checked by the fingerprint)
    r = client.post("/matches/byContent", content=stripped,
                    headers={**bearer(token), "Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    assert r.json()["matches"][0] == {"manifestId": manifest_id, "similarityScore": 100}
    # the manifest store served is the one signed into the output
    m = client.get(f"/manifests/{manifest_id}", headers=bearer(token))
    assert m.status_code == 200
    assert m.headers["content-type"] == "application/c2pa"
    assert m.content == embedded
    active = client.get(f"/manifests/{manifest_id}", params={"returnActiveManifest": "true"},
                        headers=bearer(token))
    assert active.content == embedded  # one manifest in the store: the store itself
    # c2pa-python reads the served bytes back: the manifest, its assertions, its soft binding
    c2pa = pytest.importorskip("c2pa")
    from guardrail.provenance._c2pa import c2pa_context
    from guardrail.provenance.settings import ProvenanceSettings

    ctx = c2pa_context(ProvenanceSettings.from_config(serve_config).trust().c2pa_settings())
    alone = json.loads(c2pa.Reader("application/c2pa", io.BytesIO(m.content),
                                   context=ctx).json())
    assert alone["active_manifest"] == manifest_id
    labels = {a["label"]: a["data"] for a in alone["manifests"][manifest_id]["assertions"]}
    scheme = serve_config.section("watermark")["image_scheme"]
    assert labels["c2pa.soft-binding"]["alg"] == watermark_alg(scheme)
    # ... and with the stripped asset the served store restores fully valid credentials
    chunks = png_chunks(stripped)
    chunk = struct.pack(">I", len(m.content)) + b"caBX" + m.content
    import zlib

    chunk += struct.pack(">I", zlib.crc32(b"caBX" + m.content) & 0xFFFFFFFF)
    restored = stripped[:8] + b"".join(c for _, c in chunks[:position]) + chunk + b"".join(
        c for _, c in chunks[position:])
    report = json.loads(c2pa.Reader("image/png", io.BytesIO(restored), context=ctx).json())
    assert report["active_manifest"] == manifest_id
    assert report.get("validation_state") in ("Valid", "Trusted"), report.get("validation_status")


def test_a_rotated_stripped_image_is_found_through_its_region(client, token, generated):
    """A 15-degree rotation moves the pHash beyond its threshold; the lookup still finds the
    manifest: the watermark's geometry places the upload in the original, whose recorded
    region fingerprint it matches (guardrail.fingerprint_region)."""
    from PIL import Image

    from guardrail import Artifact
    from guardrail.fingerprint import binds

    stripped, _, _ = strip_c2pa(generated["bytes"])
    img = Image.open(io.BytesIO(stripped)).convert("RGB").rotate(15)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    recorded = generated["report"]["extra"]["fingerprint"]
    import numpy as np

    assert not binds(recorded, Artifact(modality="image", content=np.asarray(img), metadata={}))
    r = client.post("/matches/byContent", content=buf.getvalue(),
                    headers={**bearer(token), "Content-Type": "image/png"})
    assert r.status_code == 200, r.text
    first = r.json()["matches"][0]
    assert first["manifestId"] == generated["report"]["manifest_id"]
    assert 90 <= first["similarityScore"] <= 100


def test_a_copied_mark_on_a_smooth_picture_finds_no_manifest(tmp_path):
    """A forged upload - a colour gradient given an output's pHash by a faint wide-band copy,
    then the victim's watermark id (version 1 marks, still served, are easy to forge) - is
    not resolved to the victim's manifest: its fingerprint does not bind its content
    (guardrail.fingerprint.weak_binding)."""
    import numpy as np
    from fastapi.testclient import TestClient
    from PIL import Image

    from guardrail import Artifact, Config, init_keys
    from guardrail.factory import watermarker_from_config
    from guardrail.robustness.image_attacks import copy
    from guardrail.serve.app import create_app
    from guardrail.serve.auth import create_key

    from .conftest import ALL_SCOPES, PhotoGenerator

    cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path / "data")},
                                 "detectors": {"image": [], "text": [], "audio": []},
                                 "watermark": {"image_scheme": "guardrail-image"}})
    init_keys(cfg)
    with ReportStore(cfg.store_url) as store:
        token, _ = create_key(store, "tests", ALL_SCOPES)
    with TestClient(create_app(cfg, generators={"image": PhotoGenerator()})) as client:
        r = client.post("/v1/generate", json={"modality": "image", "prompt": "a photo",
                                              "seed": 1}, headers=bearer(token))
        assert r.status_code == 200, r.text
        body = r.json()
        victim = np.asarray(Image.open(io.BytesIO(
            client.get(body["output"]["url"], headers=bearer(token)).content)).convert("RGB"))
        g = np.mgrid[:256, :256][1] / 256.0
        smooth = np.clip(60 + 120 * g[..., None] * np.array([1.0, 0.8, 0.6]), 0, 255)
        ghosted = copy((1, "wide"), marked=[victim])(
            Artifact(modality="image", content=smooth.astype(np.uint8), metadata={}))
        wm = watermarker_from_config(cfg, "image")
        forged = wm.embed(ghosted, int(body["report"]["extra"]["evidence"]["watermark"]
                                       ["payload"], 16)).content
        assert wm.detect(ghosted.evolve(content=forged)).detected
        buf = io.BytesIO()
        Image.fromarray(forged).save(buf, "PNG")
        r = client.post("/matches/byContent", content=buf.getvalue(),
                        headers={**bearer(token), "Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        assert r.json()["matches"] == []


def test_by_binding_get_and_post(client, token, generated):
    manifest_id = generated["report"]["manifest_id"]
    wm = generated["report"]["extra"]["evidence"]["watermark"]
    value = base64.b64encode(bytes.fromhex(wm["payload"])).decode()
    alg = watermark_alg(wm["scheme"])  # the configured image scheme's name
    r = client.get("/matches/byBinding", params={"alg": alg, "value": value},
                   headers=bearer(token))
    assert r.status_code == 200 and r.json()["matches"][0]["manifestId"] == manifest_id
    r = client.post("/matches/byBinding", json={"alg": alg, "value": value},
                    params={"maxResults": 1}, headers=bearer(token))
    assert r.status_code == 200 and [x["manifestId"] for x in r.json()["matches"]] == [manifest_id]
    # the fingerprint is a binding too
    fp = generated["report"]["extra"]["fingerprint"]
    r = client.get("/matches/byBinding", headers=bearer(token), params={
        "alg": "io.guardrail.fingerprint.phash.v1",
        "value": base64.b64encode(bytes.fromhex(fp.split(":")[1])).decode()})
    assert r.json()["matches"][0]["manifestId"] == manifest_id
    # nothing else matches; bad input is 400 problem details
    r = client.get("/matches/byBinding", params={"alg": alg, "value": "AAAAAA=="},
                   headers=bearer(token))
    assert r.json() == {"matches": []}
    for params in ({"alg": alg, "value": "not base64!"}, {"alg": "com.example.x", "value": "AA=="}):
        bad = client.get("/matches/byBinding", params=params, headers=bearer(token))
        assert bad.status_code == 400
        assert bad.headers["content-type"] == "application/problem+json"


def test_unknown_manifest_is_404_and_unknown_asset_type_is_415(client, token):
    r = client.get("/manifests/urn:c2pa:00000000-0000-0000-0000-000000000000",
                   headers=bearer(token))
    assert r.status_code == 404 and r.json()["status"] == 404
    r = client.post("/matches/byContent", content=b"%PDF-1.4", headers={
        **bearer(token), "Content-Type": "application/pdf"})
    assert r.status_code == 415


def test_the_report_store_keeps_the_manifest_out_of_the_report_json(generated, serve_config):
    with ReportStore(serve_config.store_url) as store:
        rep = store.get(generated["report"]["report_id"])
    assert "c2pa_manifest_store" not in rep.extra["evidence"]
    assert "c2pa_manifest_store" not in generated["report"]["extra"]["evidence"]


def _superbox(kind_label: str, children: bytes) -> bytes:
    jumd = b"\x00" * 16 + b"\x03" + kind_label.encode() + b"\0"
    jumd_box = struct.pack(">I4s", 8 + len(jumd), b"jumd") + jumd
    body = jumd_box + children
    return struct.pack(">I4s", 8 + len(body), b"jumb") + body


def test_active_manifest_of_a_store_with_two_manifests():
    first = _superbox("urn:c2pa:1", b"")
    second = _superbox("urn:c2pa:2", b"")
    store = _superbox("c2pa", first + second)
    active = active_manifest_store(store)
    kinds = [k for k, _s, _e in boxes(active, 8)]
    assert kinds == [b"jumd", b"jumb"]
    assert second in active and first not in active
    assert active_manifest_store(_superbox("c2pa", first)) == _superbox("c2pa", first)
    with pytest.raises(JumbfError):
        active_manifest_store(b"not jumbf at all")
    with pytest.raises(JumbfError):
        active_manifest_store(_superbox("other", first))
