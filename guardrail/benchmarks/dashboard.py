"""``guardrail benchmark --suite dashboard``: dashboard pages in a real browser on a big store.

The record store is filled with ``reports`` synthetic reports (every modality and status, a
watermark and provenance evidence each, five or six stage rows each) plus audit, robustness
and detector evaluations; then ``guardrail dashboard`` runs on it as its own process, and
Debian's headless chromium (driven by Selenium) logs in with the access token and opens each
page by its direct link. A page counts as rendered when its own heading and first table are
drawn and Streamlit's "running" indicator has been gone for three consecutive polls: the
time covers the queries, the script run and the browser's rendering, not only the SQL.

Each page is loaded ``loads`` times: the first load of a page (a cold Streamlit session
cache) and the median of the rest are reported. The suite runs against SQLite and, when a
PostgreSQL URL is given (``GUARDRAIL_BENCHMARK_POSTGRES_URL``), against PostgreSQL in the
same run.

Needs chromium and chromedriver (Debian ``chromium``, ``chromium-driver``) and Selenium (the
``dev`` extra); a missing piece is reported by name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import DependencyError
from ._report import machine_line, now

__all__ = ["PAGES", "browser", "dashboard_process", "fill_store", "free_port",
           "run_dashboard_benchmark"]

CHROMIUM = Path(os.environ.get("GUARDRAIL_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("GUARDRAIL_CHROMEDRIVER", "/usr/bin/chromedriver"))
#: (name, URL path, the title the page shows)
PAGES = (("overview", "", "Overview"), ("generations", "generations", "Generations"),
         ("audits", "audits", "Bias audits"),
         ("robustness", "robustness", "Robustness and detectors"))
TARGET_S = 2.0
_BATCH = 5_000
_T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _rows(i: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One synthetic report row and its stage rows (the shape the guard records)."""
    modality = ("text", "image", "audio")[i % 3]
    status = {7: "flagged", 11: "blocked", 13: "error"}.get(i % 17, "ok")
    payload = f"{i:08x}"
    stages = [("input_policy", "ok", 0.1, None), ("generate", "ok", 120.0 + i % 50, None),
              ("watermark", "ok", 8.0, None), ("self_check", "ok", 4.0, None),
              ("provenance", "ok", 13.0, None)]
    if status == "flagged":
        stages.append(("output_checks", "flagged", 1.0, "detector score above threshold"))
    elif status == "blocked":
        stages.append(("output_checks", "blocked", 1.0, "blocked term"))
    evidence = {"watermark": {"scheme": f"guardrail-{modality}", "version": "1",
                              "key_id": "k-bench", "payload": payload},
                "provenance": {"state": "TRUSTED", "signer": "CN=benchmark signer"}}
    row = {
        "report_id": f"bench{i:09d}" + "0" * 18,
        "created_at": _T0 + timedelta(seconds=37 * i),
        "modality": modality, "status": status, "model_id": f"bench:{modality}",
        "model_revision": "1", "prompt_hash": f"{i:064x}", "prompt": None,
        "content_hash": f"sha256:{i:064x}", "output": None,
        "media_type": {"image": "image/png", "audio": "audio/wav", "text": "text/plain"}[modality],
        "device": "cpu", "seed": i, "parameters": {}, "timings": {},
        "error": "generator crashed: out of memory" if status == "error" else None,
        "extra": {"evidence": evidence, "fingerprint": f"{modality}-{i:016x}"},
        "total_ms": sum(s[2] for s in stages), "watermark_scheme": f"guardrail-{modality}",
        "watermark_id": payload, "content_fingerprint": f"{modality}-{i:016x}",
        "text_fingerprint": f"text-{i:016x}" if modality == "text" else None,
    }
    stage_rows = [{"report_id": row["report_id"], "position": p, "stage": name,
                   "status": st, "duration_ms": ms, "reason": reason, "details": {}}
                  for p, (name, st, ms, reason) in enumerate(stages)]
    return row, stage_rows


def fill_store(url: str, reports: int, *, progress: bool = False) -> float:
    """Put ``reports`` synthetic reports and a few evaluations into the store at ``url``.

    Rows go in with one multi-row insert per batch of 5,000 (the store's own ``save`` is one
    transaction per report, which is what a guard does, not what loading a benchmark needs).

    Returns
    -------
    float
        Seconds taken.
    """
    from tqdm import tqdm

    from .._schema import reports_table, stages_table
    from ..store import Evaluation, ReportStore

    t0 = time.perf_counter()
    with ReportStore(url) as store:
        with tqdm(total=reports, desc="filling the store", unit="report",
                  disable=not progress) as pbar:
            for start in range(0, reports, _BATCH):
                batch = [_rows(i) for i in range(start, min(reports, start + _BATCH))]
                with store.engine.begin() as conn:
                    conn.execute(reports_table.insert(), [r for r, _ in batch])
                    conn.execute(stages_table.insert(), [s for _, ss in batch for s in ss])
                pbar.update(len(batch))
        for k in range(20):
            rows = [{"group": g, "metric": m, "value": v, "ci_low": v - 0.04,
                     "ci_high": v + 0.04, "n": 200}
                    for m, v in (("refusal_rate", 0.1 + k / 400), ("toxicity_rate", 0.02))
                    for g in ("women", "men", "non-binary")]
            store.save_evaluation(Evaluation(
                evaluation_id=f"bench-audit-{k}", kind="audit", name=f"benchmark audit {k}",
                created_at=(_T0 + timedelta(days=k)).isoformat(), rows=rows,
                summary={"flags": [], "generations": 600}))
            store.save_evaluation(Evaluation(
                evaluation_id=f"bench-rob-{k}", kind="robustness", name=f"benchmark lab {k}",
                created_at=(_T0 + timedelta(days=k)).isoformat(),
                rows=[{"scheme": s, "attack": a, "tpr": t}
                      for s in ("guardrail-image", "dwtDct")
                      for a, t in (("none", 1.0), ("jpeg-50", 0.9), ("crop-0.5", 0.4))]))
    return time.perf_counter() - t0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the system's pick)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dashboard_process(url: str, data_dir: Path, *, timeout: float = 90
                      ) -> Iterator[tuple[str, str]]:
    """``guardrail dashboard`` on ``url`` as a child process: yields (base URL, token)."""
    import urllib.request

    port = free_port()
    token_file = data_dir / "dashboard.key"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDRAIL_")}
    log_path = data_dir / "dashboard.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "guardrail", "dashboard", "--port", str(port),
             "--store", url, "--data-dir", str(data_dir), "--token-file", str(token_file)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=data_dir,
            start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with urllib.request.urlopen(base + "/_stcore/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the dashboard did not start: "
                                       + log_path.read_text(errors="replace")[-1500:])
                time.sleep(0.3)
            yield base, token_file.read_text().strip()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def browser(profile: Path) -> Iterator[Any]:
    """Headless chromium through Selenium, with its profile in ``profile``."""
    try:
        from selenium import webdriver
    except ImportError as exc:
        raise DependencyError("selenium", "dashboard",
                              purpose="the dashboard benchmark drives a real browser; "
                                      "pip install 'guardrail[dev]'") from exc
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            raise DependencyError(pkg, "dashboard",
                                  purpose=f"{path} is missing; apt-get install {pkg}")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", f"--user-data-dir={profile}", "--window-size=1400,1100"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=webdriver.ChromeService(str(CHROMEDRIVER)), options=opts)
    try:
        yield drv
    finally:
        drv.quit()


def _body(drv: Any) -> str:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    try:
        return str(drv.find_element(By.TAG_NAME, "body").text)
    except WebDriverException:
        return ""


def login(drv: Any, base: str, token: str, *, timeout: float = 60) -> None:
    """Pass the dashboard's login page with ``token``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    drv.get(base + "/")
    WebDriverWait(drv, timeout).until(lambda d: "Access token" in _body(d))
    drv.find_element(By.ID, "token").send_keys(token)
    drv.find_element(By.CSS_SELECTOR, 'input[type="submit"]').click()
    WebDriverWait(drv, timeout).until(lambda d: "Overview" in _body(d))


def _rendered(drv: Any, title: str) -> bool:
    """The page's own heading is ``title`` and its first table has been drawn."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By

    try:
        heads = drv.find_elements(By.CSS_SELECTOR, '[data-testid="stMain"] h1')
        if not any(title in h.text for h in heads):
            return False
        return bool(drv.find_elements(By.CSS_SELECTOR,
                                      '[data-testid="stMain"] [data-testid="stDataFrame"]'))
    except WebDriverException:  # the DOM changed under the query
        return False


def load_page(drv: Any, url: str, title: str, *, timeout: float = 120) -> float:
    """Seconds from requesting ``url`` until the page has rendered and finished running.

    Rendered: the page's heading (not the navigation's link of the same name) reads
    ``title`` and its first table is drawn; finished: Streamlit's "running" indicator has
    been absent for three consecutive polls 50 ms apart (the time of those polls is not
    counted).

    Raises
    ------
    RuntimeError
        The page did not render within ``timeout`` or shows an error.
    """
    from selenium.webdriver.common.by import By

    t0 = time.perf_counter()
    drv.get(url)
    idle, first_idle = 0, 0.0
    while time.perf_counter() - t0 < timeout:
        body = _body(drv)
        if "Traceback" in body or "Error running app" in body:
            raise RuntimeError(f"{url} shows an error: {body[:500]}")
        running = drv.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
        if not running and _rendered(drv, title):
            if idle == 0:
                first_idle = time.perf_counter() - t0
            idle += 1
            if idle == 3:
                return first_idle
        else:
            idle = 0
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not finish rendering in {timeout:.0f} s")


def screenshot_pages(drv: Any, base: str, out_dir: Path, *,
                     pages: tuple[tuple[str, str, str], ...] = PAGES) -> list[Path]:
    """One screenshot per page (``dashboard-NAME.png``) of a logged-in browser."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shots = []
    for name, path, title in pages:
        load_page(drv, f"{base}/{path}", title)
        time.sleep(1.5)  # charts draw after the script run
        shot = out_dir / f"dashboard-{name}.png"
        drv.save_screenshot(str(shot))
        shots.append(shot)
    return shots


def _measure(url: str, label: str, reports: int, loads: int,
             progress: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="guardrail-dash-bench-") as tmp:
        tmpd = Path(tmp)
        fill_s = fill_store(url, reports, progress=progress)
        with dashboard_process(url, tmpd) as (base, token), browser(tmpd / "chromium") as drv:
            login(drv, base, token)
            pages = []
            for name, path, title in PAGES:
                times = [load_page(drv, f"{base}/{path}", title) for _ in range(loads)]
                rest = times[1:] or times
                pages.append({"page": name, "first_s": round(times[0], 3),
                              "median_s": round(statistics.median(rest), 3),
                              "max_s": round(max(times), 3), "loads": loads,
                              "meets_target": max(times) < TARGET_S})
    return {"store": label, "reports": reports, "fill_s": round(fill_s, 1), "pages": pages}


def run_dashboard_benchmark(*, reports: int = 100_000, loads: int = 4,
                            postgres_url: str | None = None,
                            progress: bool = True) -> dict[str, Any]:
    """Fill a fresh SQLite store (and PostgreSQL, if given) and time every page.

    Parameters
    ----------
    reports
        Reports in each store (the issue's target is 100,000).
    loads
        Loads per page (the first is reported separately).
    postgres_url
        An empty PostgreSQL database to fill (default: ``GUARDRAIL_BENCHMARK_POSTGRES_URL``);
        its tables are dropped first.

    Returns
    -------
    dict
        The numbers and a ``markdown`` section.
    """
    postgres_url = postgres_url or os.environ.get("GUARDRAIL_BENCHMARK_POSTGRES_URL")
    results = []
    with tempfile.TemporaryDirectory(prefix="guardrail-dash-db-") as tmp:
        results.append(_measure(f"sqlite:///{Path(tmp) / 'bench.db'}", "SQLite", reports,
                                loads, progress))
    if postgres_url:
        _drop_tables(postgres_url)
        try:
            results.append(_measure(postgres_url, "PostgreSQL", reports, loads, progress))
        finally:
            _drop_tables(postgres_url)
    res: dict[str, Any] = {"target_s": TARGET_S, "results": results,
                           "postgres": bool(postgres_url)}
    res["markdown"] = render_markdown(res)
    return res


def _drop_tables(url: str) -> None:
    from .._schema import metadata
    from ..store import ReportStore

    with ReportStore(url) as store:
        metadata.drop_all(store.engine)


def render_markdown(res: dict[str, Any]) -> str:
    """The ``dashboard`` section of ``docs/BENCHMARKS.md``."""
    lines = [
        "## Dashboard pages in a real browser",
        "",
        f"{now()}; {machine_line()}. Written by `guardrail benchmark --suite dashboard` "
        "(`guardrail/benchmarks/dashboard.py`): the store is filled with synthetic reports, "
        "`guardrail dashboard` runs as its own process, and headless chromium logs in and "
        "opens each page by its direct link; a page counts as rendered when its heading and "
        "first table are drawn and Streamlit has stopped running. Target: every page under "
        f"{res['target_s']:.0f} s.",
        "",
        "| store | reports | page | first load (s) | median of later loads (s) | max (s) "
        "| under target |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for r in res["results"]:
        for p in r["pages"]:
            lines.append(f"| {r['store']} | {r['reports']:,} | {p['page']} | "
                         f"{p['first_s']:.2f} | {p['median_s']:.2f} | {p['max_s']:.2f} | "
                         f"{'yes' if p['meets_target'] else '**no**'} |")
    if not res["postgres"]:
        lines += ["", "PostgreSQL was not measured in this run: set "
                  "`GUARDRAIL_BENCHMARK_POSTGRES_URL` to an empty database."]
    fills = ", ".join(f"{r['store']} {r['fill_s']:.0f} s" for r in res["results"])
    lines += ["", f"Filling the stores took {fills} (not part of the page times)."]
    return "\n".join(lines) + "\n"


def take_screenshots(url: str, data_dir: Path, out_dir: Path) -> list[Path]:
    """Screenshots of every page of ``guardrail dashboard`` on the store at ``url``."""
    with tempfile.TemporaryDirectory(prefix="guardrail-shots-") as tmp:
        with dashboard_process(url, Path(data_dir)) as (base, token), \
                browser(Path(tmp) / "chromium") as drv:
            login(drv, base, token)
            return screenshot_pages(drv, base, Path(out_dir))


def main(argv: list[str] | None = None) -> int:
    """``python -m guardrail.benchmarks.dashboard [--reports N] [--json]``, or
    ``--screenshots DIR --store URL --data-dir DIR`` for the README's screenshots."""
    import argparse

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reports", type=int, default=100_000)
    p.add_argument("--loads", type=int, default=4)
    p.add_argument("--postgres-url")
    p.add_argument("--json", action="store_true")
    p.add_argument("--screenshots", metavar="DIR",
                   help="only take one screenshot per page of the store at --store")
    p.add_argument("--store", metavar="URL", help="with --screenshots: the record store")
    p.add_argument("--data-dir", metavar="DIR", help="with --screenshots: its data folder")
    args = p.parse_args(argv)
    if args.screenshots:
        if not (args.store and args.data_dir):
            p.error("--screenshots needs --store and --data-dir")
        for shot in take_screenshots(args.store, Path(args.data_dir), Path(args.screenshots)):
            print(shot)
        return 0
    res = run_dashboard_benchmark(reports=args.reports, loads=args.loads,
                                  postgres_url=args.postgres_url, progress=not args.json)
    print(json.dumps(res, indent=2) if args.json else res["markdown"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
