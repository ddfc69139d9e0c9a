"""Request plumbing shared by the routes: who is asking (keys, scopes, rate limits), reading
uploads and JSON bodies within the limits, and the access log."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import Authenticator, Principal
from .problems import Problem
from .state import safe_name

__all__ = ["NEEDS_GENERATE", "NEEDS_MANIFESTS", "NEEDS_OUTPUT", "NEEDS_REPORTS", "NEEDS_VERIFY",
           "UPLOAD_TYPES", "AccessLog", "access", "json_body", "read_upload"]

access_log = logging.getLogger("guardrail.serve.access")

#: media types accepted as a raw upload body (multipart/form-data is accepted too)
UPLOAD_TYPES = frozenset({
    "image/png", "image/jpeg", "image/jpg", "image/webp", "audio/wav", "audio/x-wav",
    "audio/wave", "audio/flac", "audio/mpeg", "audio/mp3", "text/plain",
    "application/octet-stream"})

_bearer = HTTPBearer(auto_error=False, description="an API key: guardrail serve keys create")
_BEARER = Depends(_bearer)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def access(*scopes: str) -> Any:
    """A dependency: the :class:`Principal` of the request, once it holds one of
    ``scopes`` and its rate limit allows the request (401, 403, 429 otherwise)."""

    async def dependency(request: Request,
                         _credentials: HTTPAuthorizationCredentials | None = _BEARER,
                         ) -> Principal:
        app = request.app.state
        auth: Authenticator = app.auth
        client = request.client.host if request.client else "unknown"
        token = auth.token_from(request.headers.get("authorization"),
                                request.headers.get("x-api-key"))
        if token is None:
            principal = Principal(None, auth.anonymous, client)
        else:
            rec = await run_in_threadpool(auth.lookup, token) if token else None
            if rec is None:
                app.limiter.take(f"addr:{client}")  # guessing keys is rate limited too
                app.metrics.rejected.labels("unauthorized").inc()
                raise Problem(401, "unauthorized", "authentication required",
                              headers={"WWW-Authenticate": "Bearer"})
            principal = Principal(rec.key_id, frozenset(rec.scopes), client)
        request.state.key_id = principal.key_id
        try:
            app.limiter.take(principal.bucket)
        except Problem:
            app.metrics.rejected.labels("rate-limited").inc()
            raise
        if not any(s in principal.scopes for s in scopes):
            app.metrics.rejected.labels("forbidden").inc()
            auth.check(principal, scopes[0])
        return principal

    return Depends(dependency)


async def read_upload(request: Request, limit: int) -> tuple[bytes, str, str | None]:
    """The uploaded file: ``(bytes, safe file name, media type)`` from a multipart form
    (field ``file``) or a raw body of an accepted media type (415 otherwise; 413 beyond
    ``limit``; 400 when empty)."""
    mt = _media_type(request)
    if mt == "multipart/form-data":
        try:
            form = await request.form(max_files=1, max_fields=8)
        except Problem:
            raise
        except Exception:  # noqa: BLE001 - a malformed form is the client's error
            raise Problem(400, "bad-request", "malformed multipart body") from None
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise Problem(400, "bad-request", "the form needs a file field named 'file'")
        data = await part.read(limit + 1)
        name = safe_name(part.filename, part.content_type)
        part_type = (part.content_type or "").split(";")[0].strip().lower() or None
        await form.close()
    elif mt in UPLOAD_TYPES:
        data = await request.body()
        name = safe_name(request.query_params.get("filename"), mt)
        part_type = mt
    else:
        raise Problem(415, "unsupported-media-type",
                      "send the file as multipart/form-data (field 'file') or as the body "
                      f"with one of: {', '.join(sorted(UPLOAD_TYPES))}")
    if len(data) > limit:
        raise Problem(413, "too-large", f"the file is larger than {limit} bytes")
    if not data:
        raise Problem(400, "bad-request", "the file is empty")
    return data, name, part_type


async def json_body(request: Request, model: type[BaseModel]) -> Any:
    """The JSON body as ``model`` (415 for another content type, 400 when invalid)."""
    if _media_type(request) != "application/json":
        raise Problem(415, "unsupported-media-type", "send application/json")
    raw = await request.body()
    try:
        return model.model_validate(json.loads(raw or b"null"))
    except (ValueError, ValidationError) as exc:
        if isinstance(exc, ValidationError) and exc.errors():
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ())) or "body"
            raise Problem(400, "bad-request", f"{where}: {err.get('msg')}") from None
        raise Problem(400, "bad-request", "the body is not valid JSON") from None


class AccessLog:
    """ASGI middleware: one JSON log line and the request metrics per request."""

    def __init__(self, app: ASGIApp, metrics: Any) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = getattr(scope.get("route"), "path", None) or "(unmatched)"
            elapsed = time.perf_counter() - t0
            method = scope.get("method", "?")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            state = scope.get("state") or {}
            client = scope.get("client")
            access_log.info("request", extra={
                "method": method, "route": route, "status": status,
                "duration_ms": round(elapsed * 1000, 2), "key_id": state.get("key_id"),
                "client": client[0] if client else None})


#: the access each endpoint needs
NEEDS_VERIFY = access("verify")
NEEDS_MANIFESTS = access("fetch:manifests")
NEEDS_GENERATE = access("generate")
NEEDS_OUTPUT = access("generate", "reports:read")
NEEDS_REPORTS = access("reports:read")
