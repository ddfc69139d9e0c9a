"""``guardrail robustness``: the watermark robustness labs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .. import progress
from .._types import Modality
from ..benchmarks import write_section
from ._common import EXIT_OK, add_parser, emit_json, load_config

__all__ = ["register"]


def cmd_robustness(args: argparse.Namespace) -> int:
    """Run the lab of one modality, store it as an evaluation, print (and write) its table."""
    from ..robustness.lab import format_table, run_robustness, to_markdown

    cfg = load_config(args)
    modality = Modality.parse(args.modality)
    ev = run_robustness(cfg, modality, quick=args.quick, progress=progress.enabled(),
                        photo_dir=args.photos, items=args.items, sample=args.sample)
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
    rb.add_argument("--photos", metavar="DIR",
                    help="image lab: add the photographs in DIR (e.g. shared C2PA fixtures)")
    rb.add_argument("--json", action="store_true")
    rb.set_defaults(func=cmd_robustness)
