"""Property-based fuzzing of the whole API with schemathesis: no request it generates from
the published OpenAPI document gets a 500. Bounded (a few examples per operation) so it
runs in well under a minute; anonymous requests get every scope here, so the fuzzing
reaches the handlers rather than stopping at 401."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # about 30 s: every operation, 12 examples each
schemathesis = pytest.importorskip("schemathesis")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from guardrail.serve.app import create_app  # noqa: E402
from guardrail.testing import EchoTextGenerator, NoiseAudioGenerator  # noqa: E402

from .conftest import ALL_SCOPES, PhotoGenerator, make_config  # noqa: E402


def _app():
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="guardrail-fuzz-"))
    cfg = make_config(folder, anonymous_scopes=list(ALL_SCOPES), rate_limit_per_second=0.0,
                      max_body_bytes=1 << 20, request_timeout_seconds=20.0)
    # no text model here: text uploads are answered without one ("not checked"), fast
    cfg = type(cfg).load(overrides={**cfg.data, "generators": {
        "text": {"model": str(folder / "no-text-model")}}})
    app = create_app(cfg, generators={"image": PhotoGenerator(), "text": EchoTextGenerator(),
                                      "audio": NoiseAudioGenerator()})
    client = TestClient(app)
    client.__enter__()  # runs the lifespan: the worker's state stays for the whole module
    return app, client


APP, _CLIENT = _app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def _shutdown():
    yield
    _CLIENT.__exit__(None, None, None)


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_error(case):
    response = case.call()
    # 503 is the service protecting itself (queue full, time limit), never a crash
    assert response.status_code < 500 or response.status_code == 503, (
        f"{case.method} {case.path} -> {response.status_code}: {response.text[:300]}")
    if response.status_code >= 400:
        kind = response.headers["content-type"]
        assert (kind[0] if isinstance(kind, list) else kind) == "application/problem+json"
