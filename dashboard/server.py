"""The dashboard's web server: Streamlit's ASGI app (``st.App``) behind an access gate.

``guardrail dashboard`` runs ``python -m dashboard.server`` as its child; the settings
arrive as the ``[dashboard]`` configuration (``GUARDRAIL_DASHBOARD__*`` variables set by
the parent). With a token configured, :class:`TokenGate` answers every HTTP request and
WebSocket handshake that does not carry the login cookie - the pages, their data
connection, uploads and media alike - with the login page (401) or a refused handshake;
only the health check ``/_stcore/health`` stays open.
"""

from __future__ import annotations

import html
import math
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from guardrail.config import Config
from guardrail.errors import ConfigError, GuardrailError

from .access import COOKIE_NAME, cookie_matches, cookie_value, is_loopback, token_matches

__all__ = ["APP", "LOGIN_PATH", "STORE_ENV", "TokenGate", "build_app", "load_config", "main",
           "streamlit_options"]

APP = Path(__file__).resolve().parent / "app.py"
#: the record store the dashboard reads (set by ``guardrail dashboard``); not a config key
STORE_ENV = "GUARDRAIL_STORE_URL"
#: where the login form posts the token
LOGIN_PATH = "/_guardrail/login"
#: paths that answer without the token (they reveal nothing but "ok")
OPEN_PATHS = frozenset({"/_stcore/health"})
_MAX_FORM_BYTES = 4096

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>guardrail dashboard - access token</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}}
input{{width:100%;padding:.5rem;margin:.5rem 0;box-sizing:border-box}}
.error{{color:#b00020}}</style></head>
<body><h1>guardrail dashboard</h1>
<p>This dashboard needs its access token: the one in the token file given to
<code>guardrail dashboard --token-file</code> (or <code>[dashboard] token_file</code>).</p>
{error}
<form method="post" action="{action}">
<label for="token">Access token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus>
<input name="next" type="hidden" value="{next}">
<input type="submit" value="Open the dashboard">
</form></body></html>
"""


def _safe_next(target: str) -> str:
    """A local path to go back to after the login (never another site)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class TokenGate:
    """ASGI middleware: lets a request through only with the login cookie for ``token``.

    A request proves the token by the cookie :data:`~dashboard.access.COOKIE_NAME`, set
    after a ``POST`` of the token to :data:`LOGIN_PATH` or a ``GET`` with ``?token=``
    (the link printed when the token was created; the answer redirects to the same page
    without the token in its address). Any other request gets the login page (HTTP 401);
    a WebSocket handshake without the cookie is refused (HTTP 403).

    Parameters
    ----------
    app
        The ASGI application behind the gate.
    token
        The access token (hex text).
    """

    def __init__(self, app: Callable[..., Awaitable[None]], *, token: str) -> None:
        self.app = app
        self._token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        if cookie_matches(self._token, _cookies(scope).get(COOKIE_NAME)):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        await self._login(scope, receive, send)

    async def _login(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path") or "/"
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                          keep_blank_values=True)
        method = scope.get("method", "GET")
        error = ""
        if method == "POST" and path == LOGIN_PATH:
            form = dict(parse_qsl((await _body(receive)).decode("utf-8", errors="replace")))
            if token_matches(self._token, form.get("token")):
                await self._admit(scope, send, _safe_next(form.get("next", "/")))
                return
            error, target = "That is not the access token.", _safe_next(form.get("next", "/"))
        else:
            given = [v for k, v in query if k == "token"]
            rest = [(k, v) for k, v in query if k != "token"]
            target = path + (f"?{urlencode(rest)}" if rest else "")
            if given and token_matches(self._token, given[-1]):
                await self._admit(scope, send, target)
                return
            if given:
                error = "That is not the access token."
        page = _LOGIN_PAGE.format(
            error=f'<p class="error">{html.escape(error)}</p>' if error else "",
            action=html.escape(LOGIN_PATH), next=html.escape(_safe_next(target)))
        await _respond(send, 401, page.encode("utf-8"), [
            (b"content-type", b"text/html; charset=utf-8"), (b"cache-control", b"no-store")])

    async def _admit(self, scope: Scope, send: Send, target: str) -> None:
        secure = scope.get("scheme") == "https" or _header(scope, b"x-forwarded-proto") == "https"
        cookie = (f"{COOKIE_NAME}={cookie_value(self._token)}; Path=/; HttpOnly; SameSite=Lax"
                  + ("; Secure" if secure else ""))
        await _respond(send, 303, b"", [(b"location", target.encode("latin-1", "replace")),
                                        (b"set-cookie", cookie.encode("latin-1")),
                                        (b"cache-control", b"no-store")])


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _cookies(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers") or ():
        if key.lower() != b"cookie":
            continue
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(value.decode("latin-1"))
        except CookieError:
            continue
        out.update({k: m.value for k, m in jar.items()})
    return out


async def _body(receive: Receive) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > _MAX_FORM_BYTES:
            return b""
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes,
                   headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def load_config(environ: Mapping[str, str] | None = None) -> Config:
    """The configuration as ``guardrail dashboard`` passed it (``$GUARDRAIL_CONFIG``, the
    ``GUARDRAIL_<SECTION>__<KEY>`` variables); :data:`STORE_ENV` is not a config key."""
    environ = os.environ if environ is None else environ
    return Config.load(environ={k: v for k, v in environ.items() if k != STORE_ENV})


def streamlit_options(config: Config) -> dict[str, Any]:
    """Streamlit's settings for the dashboard: the configured address and port, no Deploy
    button or developer menu (``client.toolbarMode = "viewer"``), no file watcher, no usage
    statistics, no welcome message (``guardrail dashboard`` prints the address itself;
    Streamlit's would look up this machine's public IP address on the internet for a
    wildcard address), and uploads up to ``[limits] max_file_bytes``."""
    dash = config.section("dashboard")
    max_bytes = int(config.section("limits")["max_file_bytes"])
    return {"server.address": str(dash["address"]), "server.port": int(dash["port"]),
            "server.headless": True, "server.fileWatcherType": "none",
            "server.runOnSave": False, "browser.gatherUsageStats": False,
            "logger.hideWelcomeMessage": True,
            "client.toolbarMode": "viewer",
            "server.maxUploadSize": max(1, math.ceil(max_bytes / 2**20))}


def build_app(token: str | None) -> Any:
    """``st.App`` on the dashboard's entry script, behind :class:`TokenGate` when ``token``."""
    import streamlit as st
    from starlette.middleware import Middleware

    middleware = [Middleware(TokenGate, token=token)] if token else []
    return st.App(str(APP), middleware=middleware)


def main() -> int:
    """Serve the dashboard until stopped (SIGTERM or SIGINT); the exit code."""
    from .access import load_token

    try:
        config = load_config()
        dash = config.section("dashboard")
        token = load_token(dash["token_file"], create=False)[0] if dash["token_file"] else None
        if token is None and not is_loopback(dash["address"]):
            raise ConfigError(f"refusing to serve on {dash['address']!r} without an "
                                 "access token ([dashboard] token_file)")
    except GuardrailError as exc:
        print(f"guardrail dashboard: {exc}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 1))
    build_app(token).run(config=streamlit_options(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
