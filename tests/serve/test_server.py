"""The real thing: ``guardrail serve`` as its own process (uvicorn) on 127.0.0.1 and a free
port, called over HTTP, then stopped with SIGTERM - no process left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_guardrail_serve_process_answers_and_stops_cleanly(tmp_path: Path):
    from guardrail import Config, init_keys
    from guardrail.benchmarks.provenance import test_image

    conf = tmp_path / "config.toml"
    conf.write_text('[paths]\ndata_dir = "data"\n[detectors]\nimage = []\ntext = []\n'
                    'audio = []\n[serve]\nworkers = 1\n', encoding="utf-8")
    init_keys(Config.load(conf))
    port = _free_port()
    exe = [sys.executable, "-m", "guardrail", "serve", "--config", str(conf), "--port",
           str(port)]
    proc = subprocess.Popen(exe, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start in 60 s"
            time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=30) as http:
            assert http.get("/readyz").json()["checks"]["store"] is True
            algs = http.get("/services/supportedAlgorithms").json()
            assert {"alg": "io.guardrail.watermark.image.v1"} in algs["watermarks"]
            # a verify in flight while the health check answers
            results: dict[str, int] = {}

            def heavy() -> None:
                r = http.post("/v1/verify", content=test_image(1024),
                              headers={"Content-Type": "image/jpeg"})
                results["verify"] = r.status_code
                results["label"] = r.json()["verdict"]["label"]

            t = threading.Thread(target=heavy)
            t.start()
            assert http.get("/healthz").status_code == 200
            t.join(60)
            assert results["verify"] == 200
            assert results["label"] == "No evidence of AI generation found"
            assert http.get("/v1/reports").status_code == 401
            assert "guardrail_http_requests_total" in http.get("/metrics").text
    finally:
        pgid = os.getpgid(proc.pid)
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            raise
        err = proc.stderr.read().decode()
    # uvicorn finishes the requests in flight and the application's shutdown, then ends by
    # the signal it was sent (the shell sees 143)
    assert code in (0, -signal.SIGTERM), err[-2000:]
    assert "Application shutdown complete" in err
    deadline = time.monotonic() + 10
    while not _gone(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(pgid), "a server process outlived guardrail serve"
    # JSON logs: one object per line, routes without queries, never a token or a body
    lines = [ln for ln in err.splitlines() if ln.startswith("{")]
    assert any('"route": "/v1/verify"' in ln for ln in lines)
    assert "Bearer" not in err
