"""``guardrail scan``: verify every file of a collection, one Parquet row per file.

:func:`scan` lists the source (:mod:`~guardrail.scan.sources`), skips the files whose path
already has a row with the same content hash, verifies the others on an engine - worker
processes (:mod:`~guardrail.scan.local_engine`) or Ray actors
(:mod:`~guardrail.scan.ray_engine`) running the same per-file code
(:mod:`~guardrail.scan.worker`) - and writes the rows crash-safely
(:mod:`~guardrail.scan.output`), with a summary and, optionally, an evaluation in the
record store.

``scan("uploads/", "uploads.parquet", cfg, engine="local", workers=2)`` returns the
summary; :func:`read_rows` reads the rows back.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import InputError
from .output import ResultSink, read_rows
from .rows import COLUMNS
from .sources import list_sources

__all__ = ["COLUMNS", "ENGINES", "read_rows", "record_scan", "scan"]

ENGINES = ("local", "ray")
#: rows kept in the record store's evaluation of a scan (the Parquet file has them all)
RECORD_ROWS = 10_000


def scan(source: str, out: str | os.PathLike[str], config: Config, *, engine: str = "local",
         workers: int = 1, address: str | None = None, chunk: int = 4,
         num_gpus: float = 0, progress: bool | None = None,
         flush_rows: int = 200, threads: int | None = None) -> dict[str, Any]:
    """Verify every file of ``source`` and write one row per file to ``out`` (Parquet).

    Parameters
    ----------
    source
        A folder, a glob, a list file (one path or URL per line) or an fsspec URL.
    out
        The Parquet file. It is read first: a file whose path has a row with the same
        content hash is skipped (resuming an interrupted scan).
    config
        The configuration each worker loads (detectors, keys, trust settings, store).
    engine
        ``local`` (worker processes) or ``ray``.
    workers
        Worker processes or Ray actors (``local`` with 0: in this process).
    address
        ``ray``: a cluster's address; none starts a local Ray instance.
    chunk
        Files per task (a worker lost mid-task costs at most its chunk again).
    num_gpus
        ``ray``: GPUs each actor declares.
    progress
        A progress bar on standard error (default: when it is a terminal).
    flush_rows
        Rows per part file (a scan killed mid-way loses at most the unwritten ones).
    threads
        Native threads each worker or actor may use (torch, OpenCV, BLAS, ONNX Runtime);
        default: the cores divided by ``workers`` (``ray``: the CPUs each actor declares).

    Returns
    -------
    dict
        The summary: counts, files per second, the verdict labels of all rows.
    """
    from ..progress import bar

    if engine not in ENGINES:
        raise InputError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers < 0 or (engine == "ray" and workers < 1):
        raise InputError(f"--workers must be at least {1 if engine == 'ray' else 0}, "
                         f"got {workers}")
    for name, value in (("--chunk", chunk), ("--flush-rows", flush_rows),
                        ("--threads", 1 if threads is None else threads)):
        if value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    sink = ResultSink(out, flush_rows=flush_rows)
    own = {str(sink.out.absolute()), str(sink.parts.absolute())}
    paths = [p for p in list_sources(source)
             if p not in own and not p.startswith(str(sink.parts.absolute()) + os.sep)]
    done = sink.done()
    counts = {"verified": 0, "skipped": 0, "errors": 0}
    t0 = time.perf_counter()
    progress_bar = bar(total=len(paths), desc="scanning", unit="file", show=progress)

    def on_rows(rows: list[dict[str, Any]], n: int) -> None:
        sink.add(rows)
        counts["verified"] += len(rows)
        counts["skipped"] += n - len(rows)
        counts["errors"] += sum(1 for r in rows if r.get("error"))
        progress_bar.update(n)

    try:
        if engine == "local":
            from .local_engine import run_local

            run_local(paths, config, on_rows, done=done, workers=workers, chunk=chunk,
                      threads=threads)
        else:
            from .ray_engine import run_ray

            run_ray(paths, config, on_rows, done=done, workers=workers, chunk=chunk,
                    address=address, num_gpus=num_gpus, threads=threads)
    finally:
        progress_bar.close()
        sink.flush()  # an interrupted scan keeps what it did
    seconds = time.perf_counter() - t0
    table = sink.merge()
    labels = Counter(table.column("label").to_pylist())
    return {"source": source, "out": str(sink.out), "engine": engine, "workers": workers,
            "files": len(paths), **counts, "seconds": round(seconds, 2),
            "files_per_s": round(len(paths) / seconds, 2) if seconds > 0 else None,
            "rows": table.num_rows, "row_errors": sum(
                1 for e in table.column("error").to_pylist() if e),
            "labels": dict(sorted(labels.items(), key=lambda kv: (-kv[1], str(kv[0]))))}


def record_scan(config: Config, summary: dict[str, Any]) -> str:
    """Save a scan as an evaluation (kind ``scan``) in the record store: the summary and
    the first :data:`RECORD_ROWS` rows' path, hash, verdict, credentials state and error.
    Returns the evaluation id."""
    from ..store import Evaluation, ReportStore

    rows = [{k: r.get(k) for k in ("path", "sha256", "label", "provenance_state",
                                   "watermark_detected", "record_id", "error")}
            for r in read_rows(summary["out"])[:RECORD_ROWS]]
    ev = Evaluation(evaluation_id=f"scan-{uuid.uuid4().hex[:12]}", kind="scan",
                    name=f"scan {summary['source']}",
                    created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    config={"engine": summary["engine"], "workers": summary["workers"],
                            "out": str(Path(summary["out"]).absolute())},
                    summary={k: v for k, v in summary.items() if k != "out"}, rows=rows)
    with ReportStore(config.store_url) as store:
        store.save_evaluation(ev)
    return ev.evaluation_id
