"""The OpenAPI document the service publishes, checked against the C2PA Soft Binding
Resolution API (a subset derived from the published document:
``c2pa_soft_binding_api_subset.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from guardrail.serve.app import create_app

SPEC = json.loads((Path(__file__).with_name("c2pa_soft_binding_api_subset.json"))
                  .read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def openapi(tmp_path_factory) -> dict[str, Any]:
    from .conftest import make_config

    return create_app(make_config(tmp_path_factory.mktemp("openapi"))).openapi()


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = doc
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _schema_type(doc: dict[str, Any], schema: dict[str, Any]) -> str | None:
    schema = _resolve(doc, schema)
    if "type" in schema:
        return schema["type"]
    for alt in schema.get("anyOf", []):
        if _resolve(doc, alt).get("type") not in (None, "null"):
            return _resolve(doc, alt)["type"]
    return None


def _conforms(doc: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any], where: str):
    ours = _resolve(doc, ours)
    assert ours.get("type") == theirs["type"], where
    for name in theirs.get("required", []):
        assert name in ours.get("required", []), f"{where}: {name} must be required"
    for name, sub in theirs.get("properties", {}).items():
        assert name in ours.get("properties", {}), f"{where}: property {name} missing"
        _conforms(doc, ours["properties"][name], sub, f"{where}.{name}")
    if "items" in theirs:
        _conforms(doc, ours["items"], theirs["items"], f"{where}[]")
    for bound in ("minimum", "maximum"):
        if bound in theirs:
            assert ours.get(bound) == theirs[bound], f"{where}: {bound}"


@pytest.mark.parametrize("path,method", [(p, m) for p, ops in SPEC["paths"].items() for m in ops])
def test_operation_follows_the_soft_binding_api(openapi, path, method):
    spec = SPEC["paths"][path][method]
    assert path in openapi["paths"], f"{path} is not served"
    op = openapi["paths"][path].get(method)
    assert op is not None, f"{method.upper()} {path} is not served"
    assert op["operationId"] == spec["operationId"]
    params = {(p["name"], p["in"]): p for p in op.get("parameters", [])}
    for want in spec["parameters"]:
        got = params.get((want["name"], want["in"]))
        assert got is not None, f"{path}: parameter {want['name']} missing"
        assert bool(got.get("required")) == want["required"], f"{path}: {want['name']} required"
        assert _schema_type(openapi, got["schema"]) == want["type"], want["name"]
        for key in ("minimum", "default"):
            if key in want:
                assert _resolve(openapi, got["schema"]).get(key) == want[key], (want, key)
    if "requestBody" in spec:
        content = op["requestBody"]["content"]
        for media_type, schema in spec["requestBody"].items():
            assert media_type in content, f"{path}: request media type {media_type}"
            if schema:
                body = _resolve(openapi, content[media_type]["schema"])
                assert set(schema["required"]) <= set(body.get("required", []))
                assert set(schema["properties"]) <= set(body.get("properties", {}))
    for code, content in spec["responses"].items():
        assert code in op["responses"], f"{path}: response {code}"
        for media_type, schema_name in (content or {}).items():
            assert media_type in op["responses"][code]["content"], (path, code, media_type)
            if schema_name:
                _conforms(openapi, op["responses"][code]["content"][media_type]["schema"],
                          SPEC["schemas"][schema_name], f"{path} {code}")


def test_the_served_answers_validate_against_the_spec_schemas(client, token, generated):
    jsonschema = pytest.importorskip("jsonschema_rs")
    from .conftest import bearer

    alg_list = client.get("/services/supportedAlgorithms").json()
    jsonschema.validate(SPEC["schemas"]["softBindingAlgList"], alg_list)
    fp = generated["report"]["extra"]["fingerprint"].split(":")[1]
    import base64

    r = client.get("/matches/byBinding", headers=bearer(token), params={
        "alg": "io.guardrail.fingerprint.phash.v1",
        "value": base64.b64encode(bytes.fromhex(fp)).decode()})
    jsonschema.validate(SPEC["schemas"]["softBindingQueryResult"], r.json())
    assert r.json()["matches"]
