"""The C2PA Soft Binding Resolution API: find the manifest of a stripped asset.

Follows the OpenAPI document published with the C2PA specification (version 1.0.0):
``GET``/``POST /matches/byBinding``, ``POST /matches/byContent``,
``GET /manifests/{manifestId}`` and ``GET /services/supportedAlgorithms``. Queries need
the scope ``fetch:manifests``; the list of algorithms is public.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from .._softbinding import decode_value, encode_value
from ..errors import GuardrailError, UnsupportedMediaError
from .http import NEEDS_MANIFESTS, UPLOAD_TYPES, json_body, read_upload
from .jumbf import JumbfError, active_manifest_store
from .problems import Problem, problem_responses

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["C2PA Soft Binding Resolution API"])

_MATCHES = {"type": "object", "properties": {"matches": {"type": "array", "items": {
    "type": "object", "required": ["manifestId"], "properties": {
        "manifestId": {"type": "string"}, "endpoint": {"type": "string"},
        "similarityScore": {"type": "integer", "minimum": 0, "maximum": 100}}}}}}
_ALGS = {"type": "object", "properties": {
    kind: {"type": "array", "items": {"type": "object", "required": ["alg"],
                                      "properties": {"alg": {"type": "string"}}}}
    for kind in ("watermarks", "fingerprints")}}
_OK_MATCHES = {200: {"description": "Successful operation",
                     "content": {"application/json": {"schema": _MATCHES}}}}
_ASSET = {"schema": {"type": "string", "format": "binary"}}
_CONTENT_BODY = {"requestBody": {"required": True, "description": "Asset to match to manifests.",
                                 "content": {t: _ASSET for t in (
                                     "image/*", "audio/*", "text/*")}}}


class SoftBindingQuery(BaseModel):
    """``c2pa.softBindingQuery``."""

    alg: str = Field(min_length=1, max_length=128)
    value: str = Field(min_length=1, max_length=4096)


def _max_results(request: Request, value: int) -> int:
    return min(value, request.app.state.settings.max_results)


def _check_query(request: Request, alg: str, value: str) -> str:
    """The value normalised to standard base64 (400 for an unknown algorithm or a value
    that is not base64)."""
    supported = request.app.state.supported
    if alg not in supported["watermarks"] and alg not in supported["fingerprints"]:
        raise Problem(400, "unsupported-algorithm",
                      "unsupported algorithm; see /services/supportedAlgorithms")
    try:
        return encode_value(decode_value(value))
    except ValueError:
        raise Problem(400, "bad-request", "value must be base64") from None


async def _by_binding(request: Request, alg: str, value: str, max_results: int) -> JSONResponse:
    state = request.app.state
    value = _check_query(request, alg, value)
    matches = await state.pool.run(state.resources.by_binding, alg, value,
                                   _max_results(request, max_results))
    state.metrics.matches.labels("byBinding", str(bool(matches)).lower()).inc()
    return JSONResponse({"matches": matches})


@router.get("/matches/byBinding", operation_id="queryByBinding",
            summary="Returns C2PA Manifest identifiers corresponding to a soft binding.",
            responses={**_OK_MATCHES, **problem_responses(400, 401, 403, 429, 503)})
async def query_by_binding(
        request: Request,
        value: str = Query(description="base64 soft binding value", min_length=1,
                           max_length=4096),
        alg: str = Query(description="soft binding algorithm name", min_length=1,
                         max_length=128),
        max_results: int = Query(10, alias="maxResults", ge=1),
        _who: Any = NEEDS_MANIFESTS) -> JSONResponse:
    return await _by_binding(request, alg, value, max_results)


@router.post("/matches/byBinding", operation_id="queryByLargeBinding",
             summary="Returns C2PA Manifest identifiers corresponding to a large soft "
                     "binding value.",
             responses={**_OK_MATCHES, **problem_responses(400, 401, 403, 413, 415, 429, 503)},
             openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                 "schema": SoftBindingQuery.model_json_schema()}}}})
async def query_by_large_binding(
        request: Request, max_results: int = Query(10, alias="maxResults", ge=1),
        _who: Any = NEEDS_MANIFESTS) -> JSONResponse:
    query = await json_body(request, SoftBindingQuery)
    return await _by_binding(request, query.alg, query.value, max_results)


@router.post("/matches/byContent", operation_id="uploadFile",
             summary="Finds C2PA Manifest identifiers using a digital asset.",
             responses={**_OK_MATCHES, **problem_responses(400, 401, 403, 413, 415, 429, 503)},
             openapi_extra=_CONTENT_BODY)
async def query_by_content(
        request: Request,
        alg: str | None = Query(None, max_length=128),
        max_results: int = Query(10, alias="maxResults", ge=1),
        hint_alg: str | None = Query(None, alias="hintAlg", max_length=128),
        hint_value: str | None = Query(None, alias="hintValue", max_length=4096),
        _who: Any = NEEDS_MANIFESTS) -> JSONResponse:
    state = request.app.state
    if alg is not None:
        _check_query(request, alg, "AA==")
    if hint_alg is not None and hint_value is not None:
        hint_value = _check_query(request, hint_alg, hint_value)
    data, _name, media_type = await read_upload(request,
                                                state.settings.upload_limit(state.config))
    if media_type == "application/octet-stream" or media_type not in UPLOAD_TYPES:
        media_type = None
    try:
        matches = await state.cpu.call(
            "by_content", data, media_type, alg=alg, hint_alg=hint_alg,
            hint_value=hint_value, limit=_max_results(request, max_results))
    except Problem:
        raise  # busy, timed out, or the pool process was lost
    except UnsupportedMediaError as exc:
        raise Problem(415, "unsupported-media-type", str(exc)) from None
    except GuardrailError as exc:
        raise Problem(400, "bad-request", str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - an asset the readers choke on is the client's
        log.warning("an uploaded asset could not be matched: %s: %s", type(exc).__name__, exc)
        raise Problem(415, "unsupported-media-type", "the asset could not be read") from None
    state.metrics.matches.labels("byContent", str(bool(matches)).lower()).inc()
    return JSONResponse({"matches": matches})


@router.get("/manifests/{manifestId}", operation_id="getManifestById",
            summary="Returns a full C2PA Manifest Store or an active C2PA Manifest.",
            response_class=Response,
            responses={200: {"description": "Successful operation",
                             "content": {"application/c2pa": {}}},
                       **problem_responses(400, 401, 403, 404, 429, 503)})
async def get_manifest(
        request: Request,
        manifestId: str = Path(description="Identifier of the C2PA Manifest to return",
                               min_length=1, max_length=255),
        return_active: bool = Query(False, alias="returnActiveManifest"),
        _who: Any = NEEDS_MANIFESTS) -> Response:
    state = request.app.state
    manifest_id = manifestId
    rec = await state.pool.run(state.resources.manifest, manifest_id)
    if rec is None:
        raise Problem(404, "not-found", "no such manifest")
    data = rec.data
    if return_active:
        try:
            data = active_manifest_store(data)
        except JumbfError:
            raise Problem(404, "not-found", "the stored manifest store is unreadable") from None
    return Response(data, media_type="application/c2pa",
                    headers={"Cache-Control": "public, max-age=86400, immutable"})


@router.get("/services/supportedAlgorithms", operation_id="getSupportedBindings",
            summary="Returns a list of the soft binding algorithms supported by the service.",
            responses={200: {"description": "Successful operation",
                             "content": {"application/json": {"schema": _ALGS}}}})
async def supported_algorithms(request: Request) -> JSONResponse:
    sup = request.app.state.supported
    return JSONResponse({kind: [{"alg": a} for a in sup[kind]]
                         for kind in ("watermarks", "fingerprints")})
