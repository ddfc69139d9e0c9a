"""The HTTP gate in front of the dashboard (every request and WebSocket handshake needs the
login cookie), and the Streamlit settings the server starts with."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dashboard.access import COOKIE_NAME, cookie_value
from dashboard.server import LOGIN_PATH, TokenGate, streamlit_options
from guardrail import Config

TOKEN = "0123456789abcdef" * 4


class Inner:
    """The app behind the gate: records what reached it."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.seen.append(scope["path"])
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"app"})


def call(scope: dict[str, Any], body: bytes = b"") -> tuple[Inner, list[dict[str, Any]]]:
    inner, sent = Inner(), []
    incoming = [{"type": "websocket.connect"}] if scope["type"] == "websocket" else [
        {"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(TokenGate(inner, token=TOKEN)(scope, receive, send))
    return inner, sent


def http(path: str = "/", query: str = "", *, method: str = "GET", cookie: str | None = None,
         headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
    hs = list(headers or [])
    if cookie is not None:
        hs.append((b"cookie", f"other=1; {COOKIE_NAME}={cookie}".encode()))
    return {"type": "http", "path": path, "query_string": query.encode(), "method": method,
            "headers": hs, "scheme": "http"}


def status_and_headers(sent: list[dict[str, Any]]) -> tuple[int, dict[bytes, bytes]]:
    start = sent[0]
    return start["status"], dict(start["headers"])


def test_without_the_cookie_every_request_gets_the_login_page() -> None:
    for path in ("/", "/generations", "/_stcore/upload_file/x", "/media/abc.png",
                 "/static/js/main.js"):
        inner, sent = call(http(path))
        status, headers = status_and_headers(sent)
        assert (status, inner.seen) == (401, [])
        assert headers[b"cache-control"] == b"no-store"
        assert b"Access token" in sent[1]["body"]


def test_the_health_check_stays_open() -> None:
    inner, sent = call(http("/_stcore/health"))
    assert inner.seen == ["/_stcore/health"] and sent[0]["status"] == 200


def test_the_cookie_lets_requests_through() -> None:
    inner, sent = call(http("/audits", cookie=cookie_value(TOKEN)))
    assert inner.seen == ["/audits"] and sent[0]["status"] == 200
    inner, sent = call(http("/audits", cookie=TOKEN))  # the token itself is not the cookie
    assert inner.seen == [] and sent[0]["status"] == 401


def test_the_link_with_the_token_sets_the_cookie_and_drops_the_token() -> None:
    inner, sent = call(http("/generations", f"report=r1&token={TOKEN}"))
    status, headers = status_and_headers(sent)
    assert (status, inner.seen) == (303, [])
    assert headers[b"location"] == b"/generations?report=r1"
    cookie = headers[b"set-cookie"].decode()
    assert cookie.startswith(f"{COOKIE_NAME}={cookie_value(TOKEN)};")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    _, sent = call(http("/", f"token={TOKEN}",
                        headers=[(b"x-forwarded-proto", b"https")]))
    assert "; Secure" in status_and_headers(sent)[1][b"set-cookie"].decode()


def test_a_wrong_token_is_refused() -> None:
    inner, sent = call(http("/", "token=" + "f" * 64))
    assert (sent[0]["status"], inner.seen) == (401, [])
    assert b"That is not the access token." in sent[1]["body"]
    assert b"set-cookie" not in dict(sent[0]["headers"])


def test_the_login_form_posts_the_token() -> None:
    form = f"token={TOKEN}&next=%2Faudits".encode()
    _, sent = call(http(LOGIN_PATH, method="POST"), form)
    status, headers = status_and_headers(sent)
    assert status == 303 and headers[b"location"] == b"/audits"
    assert headers[b"set-cookie"].startswith(f"{COOKIE_NAME}=".encode())
    # never redirected to another site
    _, sent = call(http(LOGIN_PATH, method="POST"), f"token={TOKEN}&next=//evil.org".encode())
    assert status_and_headers(sent)[1][b"location"] == b"/"
    _, sent = call(http(LOGIN_PATH, method="POST"), b"token=nope&next=%2F")
    assert sent[0]["status"] == 401


@pytest.mark.parametrize("cookie", [None, "forged"])
def test_a_websocket_without_the_cookie_is_refused(cookie: str | None) -> None:
    scope = {**http("/_stcore/stream", cookie=cookie), "type": "websocket"}
    inner, sent = call(scope)
    assert inner.seen == [] and sent == [{"type": "websocket.close", "code": 1008}]


def test_a_websocket_with_the_cookie_passes() -> None:
    scope = {**http("/_stcore/stream", cookie=cookie_value(TOKEN)), "type": "websocket"}
    inner, _ = call(scope)
    assert inner.seen == ["/_stcore/stream"]


def test_streamlit_options(config: Config) -> None:
    opts = streamlit_options(config)
    assert opts["server.address"] == "127.0.0.1" and opts["server.port"] == 8501
    assert opts["client.toolbarMode"] == "viewer"  # no Deploy button, no developer menu
    assert opts["server.fileWatcherType"] == "none" and opts["server.headless"] is True
    assert opts["browser.gatherUsageStats"] is False
    assert opts["server.maxUploadSize"] == 256  # MiB: [limits] max_file_bytes
