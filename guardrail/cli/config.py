"""``guardrail config show``: the effective configuration."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..store import ReportStore
from ._common import EXIT_OK, add_parser, emit_json, load_config

__all__ = ["register"]


def cmd_config_show(args: argparse.Namespace) -> int:
    """Print the configuration in effect (files, folders, store, every setting)."""
    cfg = load_config(args)
    effective = {
        "config_file": cfg.source,
        "data_dir": str(cfg.data_dir),
        "keys_dir": str(cfg.keys_dir),
        "cache_dir": str(cfg.cache_dir),
        "store_url": ReportStore.describe(cfg.store_url),
        "settings": cfg.data,
    }
    if args.json:
        emit_json(effective)
    else:
        for key, value in effective.items():
            if key != "settings":
                print(f"{key:<12} {value}")
        print("settings     " + json.dumps(cfg.data, indent=2).replace("\n", "\n             "))
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``guardrail config show``."""
    c = add_parser(subparsers, "config", help="configuration")
    csub = c.add_subparsers(dest="config_verb", metavar="VERB", required=True)
    cs = add_parser(csub, "show", help="print the effective configuration")
    cs.add_argument("--json", action="store_true")
    cs.set_defaults(func=cmd_config_show)
