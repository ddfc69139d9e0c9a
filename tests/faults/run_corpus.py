"""Run the malformed corpus through guardrail and write its figures.

    python -m tests.faults.run_corpus [--out docs/RELIABILITY.md] [--limit N] [--json]
                                      [--corpus DIR] [--seed N] [--jobs 2] [--timeout 60]

Two passes over every input of the corpus (:mod:`tests.faults.corpus`, built into
``--corpus`` unless a ``manifest.json`` of the same seed is there already):

1. **warm**: one long-lived worker process loads the configuration, the text model and the
   detectors once, then calls :func:`guardrail.verify_file` on each input and reports its
   time and any exception (``verify_file`` must never raise). An input that takes longer
   than ``--timeout`` is a hang: the worker is killed and started again.
2. **CLI**: ``guardrail verify FILE --json`` (the installed command) in its own process for
   each input, ``--jobs`` at a time, with a timeout; its exit code, verdict and peak RSS
   (``os.wait4``) are recorded. Exit 1, a signal or a traceback is an internal error.

Both passes watch the resident memory of their processes and stop one that grows past
``--memory-cap-gb`` (default 8), so that a runaway input cannot take the machine down; such
an input counts as an internal error. The figures are measured, never assumed: the targets
of issue 11 are judged from them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import signal
import stat
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.faults.report import render, summarise

__all__ = ["main", "run_cli", "run_warm"]

CLEAN = "No evidence of AI generation found"
DEFAULT_CORPUS = Path(os.environ.get("TMPDIR", "/tmp")) / "guardrail-fault-corpus"


# -- environment ---------------------------------------------------------------------------
def child_env(corpus: Path) -> dict[str, str]:
    """The environment of every guardrail process: no user configuration, no
    ``GUARDRAIL_*`` variable (the model cache is kept, as a cache)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GUARDRAIL_") or k == "GUARDRAIL_PATHS__CACHE_DIR"}
    env["XDG_CONFIG_HOME"] = str(corpus / "home" / "config")
    env["XDG_DATA_HOME"] = str(corpus / "home" / "data")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def guardrail_command() -> list[str]:
    """The installed ``guardrail`` command next to this interpreter (else ``-m guardrail``)."""
    exe = Path(sys.executable).parent / "guardrail"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "guardrail"]


def _rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its children (the launcher and guardrail)."""
    total = 0
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as fh:
            pids = [pid, *map(int, fh.read().split())]
    except (OSError, ValueError):
        pids = [pid]
    for p in pids:
        try:
            with open(f"/proc/{p}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError):
            pass
    return total


class _Watch:
    """Kill a process group on a deadline or when its RSS passes a cap."""

    def __init__(self, pid: int, timeout: float, cap: int) -> None:
        self.pid, self.timeout, self.cap = pid, timeout, cap
        self.reason: str | None = None
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        end = time.monotonic() + self.timeout
        while not self._done.wait(0.05):
            rss = _rss_bytes(self.pid)
            self.peak = max(self.peak, rss)
            if rss > self.cap:
                self.reason = f"memory cap: RSS {rss / 2**30:.1f} GiB"
            elif time.monotonic() > end:
                self.reason = f"timeout after {self.timeout:g} s"
            if self.reason:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


# -- the CLI pass --------------------------------------------------------------------------
#: Runs a command and writes its wait status and peak RSS (KiB) to a file. It stands between
#: the runner and ``guardrail`` because Linux seeds a child's ``ru_maxrss`` with the memory
#: of the process that forked it: forked from this small process, the figure is guardrail's.
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execv(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(f"{status} {usage.ru_maxrss}")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_cli_one(path: Path, data_dir: Path, env: dict[str, str], *, timeout: float,
                cap: int, scratch: Path) -> dict[str, Any]:
    """``guardrail verify PATH --json`` in its own process: exit code, verdict, time, RSS."""
    out_f, err_f = scratch / f"{path.name}.out", scratch / f"{path.name}.err"
    usage_f = scratch / f"{path.name}.usage"
    cmd = [*guardrail_command(), "verify", str(path), "--json", "--data-dir", str(data_dir)]
    t0 = time.monotonic()
    with open(out_f, "wb") as out, open(err_f, "wb") as err:
        proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(usage_f), *cmd],
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
        watch = _Watch(proc.pid, timeout, cap)
        _, status, _ = os.wait4(proc.pid, 0)
        watch.stop()
    elapsed = time.monotonic() - t0
    rss = watch.peak
    try:
        raw_status, maxrss_kib = usage_f.read_text().split()
        status, rss = int(raw_status), max(rss, int(maxrss_kib) * 1024)
        usage_f.unlink()
    except (OSError, ValueError):
        pass  # the launcher was killed with guardrail (timeout, memory cap): polled peak
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_f.read_bytes().decode("utf-8", "replace")
    stderr = err_f.read_bytes().decode("utf-8", "replace")
    out_f.unlink()
    err_f.unlink()
    rec: dict[str, Any] = {"exit": proc.returncode, "time": round(elapsed, 3),
                           "rss": rss, "label": None, "modality": None,
                           "state": None, "killed": watch.reason}
    try:
        doc = json.loads(stdout) if stdout.strip() else None
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and "verdict" in doc:
        rec.update(label=doc["verdict"]["label"], modality=doc.get("modality"),
                   state=(doc.get("provenance") or {}).get("state"))
    killed_by_cap = bool(watch.reason and watch.reason.startswith("memory"))
    rec["internal"] = (killed_by_cap or proc.returncode == 1
                       or (proc.returncode < 0 and not watch.reason)
                       or "Traceback (most recent call last)" in stderr
                       or (proc.returncode == 0 and doc is None))
    rec["hang"] = bool(watch.reason and watch.reason.startswith("timeout"))
    if rec["internal"] or rec["hang"] or proc.returncode not in (0, 3, 4):
        rec["stderr"] = stderr.strip()[-600:]
    return rec


def run_cli(items: list[dict[str, Any]], corpus: Path, *, jobs: int, timeout: float, cap: int,
            progress: Callable[[], None]) -> None:
    """The CLI pass: fills ``item["cli"]`` for every item."""
    env = child_env(corpus)
    scratch = corpus / "scratch"
    scratch.mkdir(exist_ok=True)
    data_dir = corpus / "data"

    def one(item: dict[str, Any]) -> None:
        item["cli"] = run_cli_one(corpus / item["file"], data_dir, env, timeout=timeout,
                                  cap=cap, scratch=scratch)
        progress()

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for fut in [pool.submit(one, it) for it in items]:
            fut.result()


# -- the warm pass -------------------------------------------------------------------------
def _worker(data_dir: str) -> int:
    """The warm worker: reads paths on stdin, writes one JSON line per path."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever the libraries print goes to the log, not the protocol
    import resource

    from guardrail import Config, ReportStore
    from guardrail._types import Modality
    from guardrail.detectors import build_all
    from guardrail.factory import generator_from_config
    from guardrail.media import MEDIA_TYPES, sniff_media_type
    from guardrail.verify import verify_file

    cfg = Config.load(overrides={"paths": {"data_dir": data_dir}})
    store = ReportStore(cfg.store_url)
    try:
        text_gen = generator_from_config(cfg, Modality.TEXT, progress=False)
    except Exception as exc:  # noqa: BLE001 - reported; text is then checked without it
        print(f"no text generator: {exc}", file=sys.stderr)
        text_gen = None
    dets = {m: build_all(cfg, [m], text_generator=text_gen) for m in Modality}

    def modality_of(path: str) -> Modality | None:
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                return None
            with open(path, "rb") as fh:
                head = fh.read(4096)
        except OSError:
            return None
        sniffed = sniff_media_type(head) if head else None
        for mt, mod in MEDIA_TYPES.values():
            if mt == sniffed:
                return mod
        return None

    def verify(path: str) -> dict[str, Any]:
        mod = modality_of(path)
        t0 = time.perf_counter()
        try:
            res = verify_file(path, cfg, store=store, detectors=dets[mod] if mod else [],
                              text_generator=text_gen)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            return {"time": round(time.perf_counter() - t0, 4), "exception":
                    f"{type(exc).__name__}: {str(exc)[:300]}",
                    "traceback": traceback.format_exc()[-1500:]}
        return {"time": round(time.perf_counter() - t0, 4), "label": res.label,
                "modality": res.modality.value if res.modality else None,
                "state": res.provenance.state.value}

    for line in sys.stdin:
        path = line.rstrip("\n")
        if path.startswith("#warmup "):
            verify(path.split(" ", 1)[1])
            proto.write(json.dumps({"ready": True}) + "\n")
            continue
        rec = verify(path)
        rec["worker_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        proto.write(json.dumps(rec) + "\n")
    return 0


class _WarmWorker:
    def __init__(self, corpus: Path, warmups: list[Path], cap: int, log) -> None:
        self.corpus, self.warmups, self.cap, self.log = corpus, warmups, cap, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = -1

    def start(self) -> None:
        self.restarts += 1
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.run_corpus", "--worker",
             str(self.corpus / "data")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, env=child_env(self.corpus), start_new_session=True,
            cwd=str(Path(__file__).resolve().parents[2]))
        for w in self.warmups:
            reply = self.ask(f"#warmup {w}", timeout=600)
            if not reply.get("ready"):
                raise RuntimeError(f"the warm worker failed to start: {reply}")

    def ask(self, line: str, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(line.encode("utf-8", "surrogateescape") + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            return self._dead("the worker had exited")
        watch = _Watch(self.proc.pid, timeout, self.cap)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while True:
                if sel.select(timeout=0.2):
                    raw = self.proc.stdout.readline()
                    if not raw:
                        break
                    return json.loads(raw)
                if watch.reason or self.proc.poll() is not None:
                    break
        finally:
            watch.stop()
            sel.close()
        return self._dead(watch.reason)

    def _dead(self, reason: str | None) -> dict[str, Any]:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait()
        rec = {"died": reason or f"the worker exited with {code}", "exit": code}
        self.start()
        return rec

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def run_warm(items: list[dict[str, Any]], corpus: Path, warmups: list[Path], *, timeout: float,
             cap: int, progress: Callable[[], None]) -> int:
    """The warm pass: fills ``item["warm"]``; returns how often the worker was restarted."""
    with open(corpus / "warm-worker.log", "ab") as log:
        worker = _WarmWorker(corpus, warmups, cap, log)
        worker.start()
        try:
            for item in items:
                rec = worker.ask(str(corpus / item["file"]), timeout)
                died = rec.pop("died", None)
                if died:
                    rec = {"time": None, "hang": died.startswith("timeout"),
                           "exception": None if died.startswith("timeout") else died}
                item["warm"] = rec
                progress()
        finally:
            worker.close()
    return worker.restarts


# -- command line --------------------------------------------------------------------------
def _load_or_build(corpus: Path, seed: int, limit: int | None, real_text: bool,
                   rebuild: bool) -> dict[str, Any]:
    from tests.faults.corpus import build_corpus

    manifest = corpus / "manifest.json"
    if manifest.exists() and not rebuild:
        doc = json.loads(manifest.read_text())
        if doc.get("seed") == seed and doc.get("limit") == limit:
            return doc
    print(f"building the corpus in {corpus} (seed {seed}) ...", file=sys.stderr)
    build_corpus(corpus, seed=seed, real_text=real_text, limit=limit)
    doc = json.loads(manifest.read_text())
    doc["limit"] = limit
    manifest.write_text(json.dumps(doc, indent=1))
    return doc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.faults.run_corpus", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="write the report (Markdown) here, e.g. docs/RELIABILITY.md")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--limit", type=int, help="about N inputs, spread over the categories")
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="corpus folder (built if "
                    "missing; default %(default)s)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--rebuild", action="store_true", help="build the corpus again")
    ap.add_argument("--fake-text", action="store_true", help="make the text seed without the "
                    "embedded model (signed, not watermarked)")
    ap.add_argument("--jobs", type=int, default=2, help="CLI processes at a time")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per input and pass")
    ap.add_argument("--memory-cap-gb", type=float, default=6.0)
    ap.add_argument("--skip-cli", action="store_true")
    ap.add_argument("--skip-warm", action="store_true")
    ap.add_argument("--failures", help="also write every failing input, by category, here")
    ap.add_argument("--worker", metavar="DATA_DIR", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return _worker(args.worker)

    from tqdm import tqdm

    corpus = Path(args.corpus).absolute()
    doc = _load_or_build(corpus, args.seed, args.limit, not args.fake_text, args.rebuild)
    items = [dict(e) for e in doc["entries"]]
    cap = int(args.memory_cap_gb * 2**30)
    warmups = [p for p in sorted((corpus / "seeds").glob("*.*"))
               if p.stem in ("guardrail", "plain") and p.suffix in (".png", ".wav", ".txt")]
    t_start = time.time()
    restarts = 0
    if not args.skip_warm:
        with tqdm(total=len(items), desc="warm verify_file", unit="file") as bar:
            restarts = run_warm(items, corpus, warmups, timeout=args.timeout, cap=cap,
                                progress=bar.update)
    if not args.skip_cli:
        with tqdm(total=len(items), desc="guardrail verify", unit="file") as bar:
            lock = threading.Lock()

            def tick() -> None:
                with lock:
                    bar.update()

            run_cli(items, corpus, jobs=args.jobs, timeout=args.timeout, cap=cap, progress=tick)
    run = {"seed": args.seed, "limit": args.limit, "real_text": doc.get("real_text"),
           "jobs": args.jobs, "timeout": args.timeout, "memory_cap_gb": args.memory_cap_gb,
           "warm_restarts": restarts, "wall_s": round(time.time() - t_start, 1),
           "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(t_start)),
           "machine": f"{os.cpu_count()} cores, "
                      f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} "
                      f"GiB, {platform.python_implementation()} {platform.python_version()}",
           "load_avg": os.getloadavg()[0], "commit": _commit(), "limits": _limits(corpus),
           "argv": " ".join(["python -m tests.faults.run_corpus", *(argv or sys.argv[1:])])}
    (corpus / "results.json").write_text(json.dumps({"run": run, "items": items}, indent=1))
    summary = summarise(items, run)
    if args.out:
        Path(args.out).write_text(render(summary, items, failures_inline=True))
    if args.failures:
        Path(args.failures).write_text(render(summary, items, failures_only=True))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for name, t in summary["targets"].items():
            print(f"{'met    ' if t['met'] else 'NOT MET'}  {name}: {t['measured']}")
    return 0


def _limits(corpus: Path) -> dict[str, Any] | None:
    """The ``[limits]`` in force for the runs (the defaults: no user configuration)."""
    from guardrail import Config
    from guardrail.errors import GuardrailError
    from tests.faults.seeds import isolated_config_env

    with isolated_config_env(corpus / "home"):
        try:
            return dict(Config.load().section("limits"))
        except (GuardrailError, KeyError):
            return None


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).resolve().parents[2], timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10,
                               cwd=Path(__file__).resolve().parents[2]).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + (" (with uncommitted changes)" if dirty else "")


if __name__ == "__main__":
    raise SystemExit(main())
