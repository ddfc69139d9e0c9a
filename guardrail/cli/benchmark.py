"""``guardrail benchmark``: the speed suites of ``docs/BENCHMARKS.md``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import progress
from .._types import Modality
from ..benchmarks import SUITES, run_suite, section_name, write_section
from ._common import EXIT_OK, add_parser, emit_json, load_config

__all__ = ["register"]


def cmd_benchmark(args: argparse.Namespace) -> int:
    """Run the chosen suites (default: all), print them and write their sections."""
    cfg = load_config(args)
    out = Path(args.out) if args.out else None
    suites = args.suite or list(SUITES)
    modalities = ([Modality.parse(m) for m in (args.modality or ["text", "image", "audio"])]
                  if "overhead" in suites else [])
    results: dict[str, Any] = {}
    for suite in suites:
        res = run_suite(cfg, suite, runs=args.runs, modalities=modalities,
                        progress=progress.enabled())
        if out is not None:
            write_section(out, section_name(suite), res["markdown"])
        results[suite] = res
        if not args.json:
            print(res["markdown"])
    if args.json:
        emit_json(results)
    elif out is not None:
        print(f"written to {out}")
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``guardrail benchmark``."""
    b = add_parser(subparsers, "benchmark",
                   help="measure the guard's overhead per modality; writes docs/BENCHMARKS.md")
    b.add_argument("--suite", action="append", choices=SUITES,
                   help="repeatable; default: every suite")
    b.add_argument("--modality", action="append",
                   help="overhead suite: repeatable; default: all three")
    b.add_argument("--runs", type=int, default=5, help="timed runs per arm (default 5)")
    b.add_argument("--out", metavar="FILE", help="markdown file to write (default: none)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_benchmark)
