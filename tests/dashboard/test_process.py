"""``guardrail dashboard`` as a real process: SIGTERM, SIGINT and ``kill -9`` leave no
server behind, and with a token file the HTTP gate answers before Streamlit does."""

from __future__ import annotations

import http.client
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from guardrail import ReportStore
from guardrail.benchmarks.dashboard import free_port

from .conftest import seed

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc and uses pidfd_open (Linux)")
STOP_WITHIN = 20.0  # seconds: generous, the server usually stops in well under one


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    port: int
    child: int
    log: Path


def processes() -> dict[int, tuple[int, int, str]]:
    """Every live process: pid -> (ppid, process group, state); zombies left out."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            out[int(entry)] = (int(fields[1]), int(fields[2]), fields[0])
    return out


def group_members(*groups: int) -> list[int]:
    return sorted(pid for pid, (_, pgid, _) in processes().items() if pgid in groups)


def wait_exit(pid: int, timeout: float) -> bool:
    """Whether the (not necessarily child) process ``pid`` exits within ``timeout``."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def get(port: int, path: str, cookie: str | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with ReportStore(url) as store:
        seed(store, tmp_path / "outputs")
    started: list[Running] = []

    def run(*extra: str) -> Running:
        port = free_port()
        log = tmp_path / f"dashboard-{port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAIL_")}
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "guardrail", "dashboard", "--port", str(port),
                 "--store", url, "--data-dir", str(tmp_path / "data"), *extra],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while True:
            try:
                if get(port, "/_stcore/health").status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("the dashboard did not start: " + log.read_text(errors="replace"))
            time.sleep(0.2)  # polling the port: there is no event to wait on
        children = [pid for pid, (ppid, _, _) in processes().items() if ppid == proc.pid]
        assert len(children) == 1, children
        running = Running(proc, port, children[0], log)
        started.append(running)
        return running

    yield run
    for r in started:  # whatever a failed test left behind
        for pid in group_members(r.proc.pid, r.child):
            os.kill(pid, signal.SIGKILL)
        r.proc.wait()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_server(start, signum: int, code: int) -> None:
    r = start()
    assert processes()[r.child][1] != r.proc.pid  # the server has a process group of its own
    assert group_members(r.child) == [r.child]
    os.kill(r.proc.pid, signum)
    assert r.proc.wait(timeout=STOP_WITHIN) == code
    assert wait_exit(r.child, STOP_WITHIN), "the server outlived guardrail dashboard"
    assert group_members(r.proc.pid, r.child) == []


def test_the_server_dies_with_its_parent(start) -> None:
    r = start()
    os.kill(r.proc.pid, signal.SIGKILL)  # no chance to pass anything on
    r.proc.wait(timeout=STOP_WITHIN)
    assert wait_exit(r.child, STOP_WITHIN), "kill -9 of guardrail dashboard left an orphan"
    assert group_members(r.proc.pid, r.child) == []


def test_the_token_gate_in_front_of_the_real_server(start, tmp_path: Path) -> None:
    token_file = tmp_path / "dashboard.key"
    r = start("--token-file", str(token_file))
    token = token_file.read_text().strip()
    assert f"?token={token}" in r.log.read_text()  # the link, printed once
    assert get(r.port, "/").status == 401
    assert get(r.port, "/generations").status == 401
    assert get(r.port, f"/?token={'0' * 64}").status == 401
    admitted = get(r.port, f"/generations?token={token}")
    assert admitted.status == 303 and admitted.getheader("Location") == "/generations"
    cookie = admitted.getheader("Set-Cookie").split(";", 1)[0]
    page = get(r.port, "/generations", cookie=cookie)
    assert page.status == 200 and page.getheader("Content-Type").startswith("text/html")
    os.kill(r.proc.pid, signal.SIGTERM)
    assert r.proc.wait(timeout=STOP_WITHIN) == 143
