"""``guardrail robustness``: the watermark robustness labs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import progress
from .._types import Modality
from ..benchmarks import write_section
from ._common import EXIT_OK, add_parser, emit_json, existing_dir, load_config, positive_int

__all__ = ["register"]


def cmd_robustness(args: argparse.Namespace) -> int:
    """Run the lab of one modality, store it as an evaluation, print (and write) its table."""
    from ..robustness.harness import use_engine
    from ..robustness.lab import format_table, run_robustness, to_markdown

    cfg = load_config(args)
    modality = Modality.parse(args.modality)
    with use_engine(args.engine, workers=args.workers, address=args.address):
        ev = run_robustness(cfg, modality, quick=args.quick, progress=progress.enabled(),
                            photo_dir=args.photos, items=args.items, sample=args.sample,
                            keys=args.keys)
    if args.json:
        emit_json(ev.to_dict())
    else:
        print(format_table(list(ev.rows)))
        print("\nsummary")
        for key, value in ev.summary.items():
            if not isinstance(value, (dict, list)):
                print(f"  {key:<28} {value}")
        print(f"\nstored as evaluation {ev.evaluation_id}")
    if args.out:
        write_section(Path(args.out), f"robustness-{modality.value}", to_markdown(ev))
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``guardrail robustness``."""
    rb = add_parser(subparsers, "robustness",
                    help="watermark robustness lab: attacks, TPR at the FPR, quality")
    rb.add_argument("--modality", required=True, help="image, audio or text")
    rb.add_argument("--quick", action="store_true", help="fewer items (a smoke run)")
    rb.add_argument("--out", metavar="FILE", help="also write a markdown section to FILE")
    rb.add_argument("--items", type=int, metavar="N",
                    help="text lab: number of generated texts (default 48; --quick 8)")
    rb.add_argument("--sample", type=int, metavar="N",
                    help="a smoke run on N items (image: the configured scheme only); "
                         "recorded and shown as a quick run")
    rb.add_argument("--keys", type=positive_int, default=1, metavar="N",
                    help="audio and image labs: run under the configured watermark key and N-1 "
                         "public lab keys; rows per key and pooled, a target met only under "
                         "every key (default 1)")
    rb.add_argument("--photos", metavar="DIR", action="append", type=existing_dir,
                    help="image lab: add the photographs in DIR (e.g. shared C2PA fixtures); "
                         "repeat for several folders")
    rb.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="local: in this process (default); ray: items x attacks spread over "
                         "Ray actors (pip install 'guardrail[ray]')")
    rb.add_argument("--workers", type=positive_int, default=2, metavar="N",
                    help="with --engine ray: actors (default 2)")
    rb.add_argument("--address", metavar="ADDR",
                    help="with --engine ray: an existing Ray cluster (default: start a local one)")
    rb.add_argument("--json", action="store_true")
    rb.set_defaults(func=cmd_robustness)
