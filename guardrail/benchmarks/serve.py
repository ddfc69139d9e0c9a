"""``guardrail serve`` under load, side by side with in-process verification.

The service runs as its own process (``python -m guardrail serve`` on 127.0.0.1 and a free
port, one worker, the configured detectors preloaded, rate limiting off, a queue long
enough for the highest concurrency) and is driven over HTTP with httpx:

* ``verify``: ``POST /v1/verify`` of a watermarked and signed 1024x1024 JPEG at
  concurrency 1, 8 and 32 - throughput, p50/p99 latency, errors - next to in-process
  :func:`~guardrail.verify.verify_file` throughput (warm, detectors built once, 1 and 2
  threads) measured in the same run; ``/healthz`` is polled during each load step;
* ``lookup``: ``GET /matches/byBinding`` p50/p99 with ``lookup_records`` manifests and
  bindings bulk-inserted into the record store (PostgreSQL when the configured store is
  one, else a temporary SQLite file);
* ``soak``: mixed load (verify, binding lookups, health, algorithm list) for
  ``soak_seconds``: failed requests and the server's resident memory growth.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._types import Modality
from ..config import Config
from ._report import machine_line, now
from .dashboard import free_port

__all__ = ["run_serve_benchmark"]

_BENCH_PREFIX = "urn:guardrail-benchmark:"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def _rss_mb(pgid: int) -> float:
    """Resident memory of every process in the group, MB (Linux /proc)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != pgid:
                continue
            with open(f"/proc/{entry}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (OSError, ValueError, ProcessLookupError):
            continue
    return total / 1024


class _Server:
    """``python -m guardrail serve`` in its own process group."""

    def __init__(self, cfg: Config, store_url: str, max_queue: int) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "GUARDRAIL_SERVE__RATE_LIMIT_PER_SECOND": "0",
               "GUARDRAIL_SERVE__MAX_QUEUE": str(max_queue),
               "GUARDRAIL_SERVE__PRELOAD_DETECTORS": "true",
               "GUARDRAIL_SERVE__REQUEST_TIMEOUT_SECONDS": "120"}
        cmd = [sys.executable, "-m", "guardrail", "serve", "--port", str(self.port),
               "--store", store_url, "--data-dir", str(cfg.data_dir)]
        if cfg.source:
            cmd[3:3] = ["--config", cfg.source]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        self.pgid = os.getpgid(self.proc.pid)

    def wait_ready(self, timeout: float = 300) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError("guardrail serve exited: "
                                   + self.log.read().decode(errors="replace")[-2000:])
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError("guardrail serve did not become ready")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.pgid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


async def _load(base: str, concurrency: int, total: int, make: Any,
                health: bool) -> dict[str, Any]:
    """``total`` requests from ``concurrency`` clients; ``/healthz`` polled meanwhile."""
    import httpx

    latencies: list[float] = []
    errors: dict[str, int] = {}
    health_lat: list[float] = []
    remaining = total
    done = asyncio.Event()
    limits = httpx.Limits(max_connections=concurrency + 2)
    async with httpx.AsyncClient(base_url=base, timeout=300, limits=limits) as http:

        async def client() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                method, url, kw = make()
                t = time.perf_counter()
                try:
                    r = await http.request(method, url, **kw)
                    code = str(r.status_code)
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                latencies.append(time.perf_counter() - t)
                if code != "200":
                    errors[code] = errors.get(code, 0) + 1

        async def poll() -> None:
            while not done.is_set():
                t = time.perf_counter()
                try:
                    await http.get("/healthz")
                    health_lat.append(time.perf_counter() - t)
                except httpx.HTTPError:
                    health_lat.append(float("inf"))
                await asyncio.sleep(0.05)

        poller = asyncio.create_task(poll()) if health else None
        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        done.set()
        if poller:
            await poller
    return {"concurrency": concurrency, "requests": total, "seconds": round(elapsed, 2),
            "per_second": round(total / elapsed, 3),
            "p50_ms": round(_pct(latencies, 0.5) * 1000, 1),
            "p99_ms": round(_pct(latencies, 0.99) * 1000, 1),
            "errors": sum(errors.values()), "error_kinds": errors,
            "healthz_n": len(health_lat),
            "healthz_p99_ms": round(_pct(health_lat, 0.99) * 1000, 1) if health_lat else None}


def _in_process(cfg: Config, path: Path, n: int, threads: int) -> float:
    """In-process verify_file throughput (files/s), warm, detectors built once."""
    from ..detectors import registry
    from ..store import ReportStore
    from ..verify import verify_file

    detectors = registry.build_all(cfg, [Modality.IMAGE])
    with ReportStore(cfg.store_url) as store:
        verify_file(path, cfg, store=store, detectors=detectors)  # warm
        t0 = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda _i: verify_file(path, cfg, store=store, detectors=detectors),
                          range(n)))
        return n / (time.perf_counter() - t0)


def _bulk_load(store_url: str, count: int) -> tuple[list[tuple[str, str]], float]:
    """``count`` benchmark manifests with one binding each; returns a sample of bindings
    and the seconds the load took."""
    import sqlalchemy as sa

    from .._schema import bindings_table, manifests_table
    from ..store import ReportStore

    alg = "io.guardrail.watermark.image.v1"
    sample: list[tuple[str, str]] = []
    rng = random.Random(7)
    t0 = time.perf_counter()
    with ReportStore(store_url) as store:
        with store.engine.begin() as conn:
            _cleanup(conn)
        batch = 20_000
        when = datetime.now(UTC)
        for start in range(0, count, batch):
            ids = range(start, min(count, start + batch))
            manifests = [{"manifest_id": f"{_BENCH_PREFIX}{i}", "report_id": None,
                          "created_at": when, "media_type": "image/jpeg",
                          "data": b"\0" * 16} for i in ids]
            values = [base64.b64encode(i.to_bytes(5, "big")).decode() for i in ids]
            bindings = [{"manifest_id": f"{_BENCH_PREFIX}{i}", "alg": alg, "value": v}
                        for i, v in zip(ids, values, strict=True)]
            with store.engine.begin() as conn:
                conn.execute(manifests_table.insert(), manifests)
                conn.execute(bindings_table.insert(), bindings)
            sample.extend((alg, values[j]) for j in rng.sample(range(len(values)),
                                                                 min(5, len(values))))
        with store.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("ANALYZE soft_bindings"))
                conn.execute(sa.text("ANALYZE manifests"))
    return sample, time.perf_counter() - t0


def _cleanup(conn: Any) -> None:
    import sqlalchemy as sa

    from .._schema import bindings_table, manifests_table

    like = f"{_BENCH_PREFIX}%"
    conn.execute(sa.delete(bindings_table).where(bindings_table.c.manifest_id.like(like)))
    conn.execute(sa.delete(manifests_table).where(manifests_table.c.manifest_id.like(like)))


def run_serve_benchmark(cfg: Config, *, requests_per_client: int = 3,
                        lookup_records: int = 100_000, lookups: int = 500,
                        soak_seconds: float = 180.0) -> dict[str, Any]:
    """Run the serve suite (see the module docstring); returns numbers and markdown."""
    from ..factory import init_keys
    from .provenance import test_image
    from .verify import _watermark_and_sign

    init_keys(cfg)
    tmp = Path(tempfile.mkdtemp(prefix="guardrail-bench-serve-"))
    pg = cfg.store_url.startswith("postgresql")
    store_url = cfg.store_url if pg else f"sqlite:///{tmp / 'serve.db'}"
    plain = tmp / "plain.jpg"
    plain.write_bytes(test_image(1024))
    signed = tmp / "signed.jpg"
    _watermark_and_sign(cfg, plain, signed)
    body = signed.read_bytes()
    inproc = {t: _in_process(cfg, signed, 12, t) for t in (1, 2)}
    best = max(inproc.values())
    sample, load_s = _bulk_load(store_url, lookup_records)
    server = _Server(cfg, store_url, max_queue=64)
    out: dict[str, Any] = {"when": now(), "store": "PostgreSQL" if pg else "SQLite",
                           "in_process_per_second": {str(k): round(v, 3)
                                                     for k, v in inproc.items()},
                           "lookup_records": lookup_records, "bulk_load_s": round(load_s, 1)}
    try:
        server.wait_ready()
        verify_req = ("POST", "/v1/verify", {"content": body,
                                             "headers": {"Content-Type": "image/jpeg"}})
        asyncio.run(_load(server.base, 2, 4, lambda: verify_req, health=False))  # warm up
        rows = []
        for c in (1, 8, 32):
            total = max(8, c * requests_per_client)
            res = asyncio.run(_load(server.base, c, total, lambda: verify_req, health=True))
            res["ratio_to_in_process"] = round(res["per_second"] / best, 2)
            rows.append(res)
        out["verify"] = rows
        look = asyncio.run(_load(server.base, 1, lookups, lambda: (
            "GET", "/matches/byBinding", {"params": dict(zip(("alg", "value"),
                                                             random.choice(sample),
                                                             strict=True))}), health=False))
        out["lookup"] = look
        rss0 = _rss_mb(server.pgid)
        mix = [verify_req] * 3 + [("GET", "/healthz", {})] * 2 + [
            ("GET", "/services/supportedAlgorithms", {})]

        def mixed() -> tuple[str, str, dict[str, Any]]:
            if random.random() < 0.4:
                alg, value = random.choice(sample)
                return "GET", "/matches/byBinding", {"params": {"alg": alg, "value": value}}
            return random.choice(mix)

        soak = asyncio.run(_soak(server.base, mixed, soak_seconds))
        soak["rss_start_mb"] = round(rss0, 1)
        soak["rss_end_mb"] = round(_rss_mb(server.pgid), 1)
        soak["rss_growth"] = round(soak["rss_end_mb"] / rss0 - 1, 4) if rss0 else None
        out["soak"] = soak
    finally:
        out["server_exit"] = server.stop()
        if pg:
            from ..store import ReportStore

            with ReportStore(store_url) as store, store.engine.begin() as conn:
                _cleanup(conn)
    out["markdown"] = _markdown(out)
    return out


async def _soak(base: str, make: Any, seconds: float, concurrency: int = 4) -> dict[str, Any]:
    import httpx

    counts = {"requests": 0, "failed": 0}
    stop = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=300) as http:

        async def client() -> None:
            while time.monotonic() < stop:
                method, url, kw = make()
                try:
                    r = await http.request(method, url, **kw)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                counts["requests"] += 1
                counts["failed"] += 0 if ok else 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return {"seconds": seconds, "concurrency": concurrency, **counts}


def _markdown(r: dict[str, Any]) -> str:
    ip = r["in_process_per_second"]
    best = max(ip.values())
    lines = [
        f"`guardrail serve` (one uvicorn worker, 2 executor threads, configured image "
        f"detectors preloaded) driven over HTTP on 127.0.0.1 by httpx, measured {r['when']} "
        "side by side with in-process `verify_file` (warm, detectors built once).", "",
        machine_line(), "",
        f"In-process `verify_file` of the 1024x1024 watermarked and signed JPEG: "
        f"{ip['1']:.2f} files/s on 1 thread, {ip['2']:.2f} files/s on 2 threads (12 files "
        "each). Target: HTTP throughput at least 80% of in-process, 0 errors, `/healthz` "
        "p99 under 50 ms during the load.", "",
        "| concurrency | requests | files/s | vs in-process (best) | p50 | p99 | errors | "
        "`/healthz` p99 (n) |", "|---|---|---|---|---|---|---|---|"]
    for row in r.get("verify", []):
        lines.append(
            f"| {row['concurrency']} | {row['requests']} | {row['per_second']:.2f} | "
            f"{row['per_second'] / best:.0%} | {row['p50_ms']:.0f} ms | {row['p99_ms']:.0f} ms"
            f" | {row['errors']} | {row['healthz_p99_ms']} ms ({row['healthz_n']}) |")
    if "lookup" in r:
        lk = r["lookup"]
        lines += ["", f"Manifest lookup `GET /matches/byBinding` with {r['lookup_records']:,} "
                  f"manifests and bindings in {r['store']} (bulk-loaded in "
                  f"{r['bulk_load_s']} s): {lk['requests']} sequential lookups, p50 "
                  f"{lk['p50_ms']} ms, p99 {lk['p99_ms']} ms over HTTP, {lk['errors']} errors "
                  "(target: p99 under 20 ms with 1,000,000 records in PostgreSQL)."]
    if "soak" in r:
        s = r["soak"]
        lines += ["", f"Soak: {s['seconds']:.0f} s of mixed load (verify, binding lookups, "
                  f"health, algorithm list; {s['concurrency']} clients): {s['requests']} "
                  f"requests, {s['failed']} failed; server resident memory {s['rss_start_mb']} "
                  f"MB -> {s['rss_end_mb']} MB ({s['rss_growth']:+.1%}). The issue's 30-minute "
                  "soak was not run here."]
    return "\n".join(lines)

