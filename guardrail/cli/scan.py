"""``guardrail scan SOURCE``: verify every file of a collection into one Parquet file."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import EXIT_OK, add_parser, emit_json, load_config

__all__ = ["register"]


def cmd_scan(args: argparse.Namespace) -> int:
    """Scan, print the summary (or ``--json``), optionally record it; exit 0 whatever the
    files' verdicts (per-file failures are rows)."""
    from ..scan import record_scan, scan
    from ..scan.worker import cpu_count

    cfg = load_config(args)
    workers = args.workers if args.workers is not None else cpu_count()
    summary = scan(args.source, args.out, cfg, engine=args.engine, workers=workers,
                   threads=args.threads,
                   address=args.address, chunk=args.chunk, num_gpus=args.num_gpus,
                   flush_rows=args.flush_rows)
    if args.record:
        summary["evaluation_id"] = record_scan(cfg, summary)
    if args.json:
        emit_json(summary)
        return EXIT_OK
    print(f"{summary['files']} files: {summary['verified']} verified, {summary['skipped']} "
          f"skipped (already in {summary['out']}), {summary['errors']} scan errors; "
          f"{summary['files_per_s']} files/s with {summary['engine']} x {summary['workers']}")
    print(f"{summary['rows']} rows in {summary['out']}:")
    for label, n in summary["labels"].items():
        print(f"  {n:>8}  {label}")
    if args.record:
        print(f"recorded as evaluation {summary['evaluation_id']}")
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``guardrail scan``."""
    s = add_parser(subparsers, "scan",
                   help="verify every file of a folder, glob or list into a Parquet file",
                   description="Verify every file of SOURCE (a folder, a glob, a list file "
                   "with one path or URL per line, '-' for a list on standard input, or an "
                   "fsspec URL) and write one row per file to a Parquet file. A rerun skips "
                   "files whose path already has a row with the same content hash.")
    s.add_argument("source", metavar="SOURCE")
    s.add_argument("--out", default="scan.parquet", metavar="FILE",
                   help="the Parquet file (default scan.parquet); read first to resume")
    s.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: worker processes (default); ray: Ray Data actors")
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes or Ray actors (default: the usable CPU cores; "
                   "local 0: in-process)")
    s.add_argument("--threads", type=int, default=None, metavar="N",
                   help="native threads per worker (default: the cores divided by the "
                   "workers; ray: the CPUs each actor declares)")
    s.add_argument("--address", metavar="ADDR",
                   help="ray: the cluster's address (default: start a local Ray instance)")
    s.add_argument("--chunk", type=int, default=4, metavar="N",
                   help="files per task (default 4)")
    s.add_argument("--flush-rows", type=int, default=200, metavar="N",
                   help="rows per part file: a scan killed mid-way redoes at most these and "
                   "the files in flight (default 200)")
    s.add_argument("--num-gpus", type=float, default=0, metavar="G",
                   help="ray: GPUs each actor declares (default 0)")
    s.add_argument("--record", action="store_true",
                   help="also save the summary as a 'scan' evaluation in the record store")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.set_defaults(func=cmd_scan)
