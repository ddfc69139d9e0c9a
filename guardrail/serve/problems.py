"""Errors as RFC 9457 problem details (``application/problem+json``) and the request body
limit.

Every error the service answers is a :class:`Problem`: ``type`` (a URI naming the kind of
problem), ``title``, ``status`` and ``detail``. Details never say more than a client needs:
401 and 403 say only that a key is missing, invalid or not allowed.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["PROBLEM_JSON", "PROBLEM_SCHEMA", "BodyLimit", "Problem", "install_handlers",
           "problem_responses"]

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_BASE = "https://guardrail.invalid/problems/"
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                   "status": {"type": "integer"}, "detail": {"type": "string"}},
    "required": ["type", "title", "status"],
}
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           405: "Method Not Allowed", 413: "Content Too Large", 415: "Unsupported Media Type",
           429: "Too Many Requests", 500: "Internal Server Error",
           503: "Service Unavailable"}


class Problem(Exception):
    """An error answered as ``application/problem+json``.

    Parameters
    ----------
    status
        The HTTP status.
    kind
        The last segment of the ``type`` URI (``queue-full``, ``bad-request``, ...).
    detail
        One sentence for the client.
    headers
        Extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(self, status: int, kind: str, detail: str | None = None, *,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or kind)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {"type": _BASE + self.kind,
                                "title": _TITLES.get(self.status, "Error"),
                                "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        return JSONResponse(body, status_code=self.status, headers=self.headers,
                            media_type=PROBLEM_JSON)


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem details with these status codes."""
    return {code: {"description": _TITLES.get(code, "Error"),
                   "content": {PROBLEM_JSON: {"schema": PROBLEM_SCHEMA}}} for code in codes}


def install_handlers(app: FastAPI) -> None:
    """Answer every error - ours, FastAPI's validation, Starlette's 404/405, anything
    unexpected - as problem details."""

    @app.exception_handler(Problem)
    async def _problem(_req: Request, exc: Problem) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        where = ".".join(str(p) for p in errors[0].get("loc", ())) if errors else "request"
        msg = errors[0].get("msg", "invalid") if errors else "invalid"
        return Problem(400, "bad-request", f"{where}: {msg}").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return Problem(exc.status_code, kind, str(exc.detail) if exc.detail else None,
                       headers=dict(exc.headers or {})).response()

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_req: Request, _exc: BodyTooLarge) -> JSONResponse:
        return Problem(413, "too-large", "the request body is too large").response()

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error: %s: %s", type(exc).__name__, exc)
        return Problem(500, "internal", "the service failed unexpectedly").response()


class BodyTooLarge(Exception):
    """The request body went beyond the limit while it was being read."""


class BodyLimit:
    """ASGI middleware: 413 for a declared ``Content-Length`` beyond ``max_bytes`` before
    anything is read, and for a body (chunked or lying) that grows beyond it while read."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = Problem(413, "too-large",
                            f"the request body is larger than {self.max_bytes} bytes")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    await Problem(400, "bad-request", "invalid Content-Length").response()(
                        scope, receive, send)
                    return
                if declared > self.max_bytes:
                    await too_large.response()(scope, receive, send)
                    return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, tracking_send)
        except BodyTooLarge:
            if not started:
                await too_large.response()(scope, receive, send)
