"""``guardrail keys init``: the key files."""

from __future__ import annotations

import argparse
from typing import Any

from ..factory import init_keys
from ._common import EXIT_OK, add_parser, emit_json, load_config

__all__ = ["register"]


def cmd_keys_init(args: argparse.Namespace) -> int:
    """Create the missing key files (mode 0600); never overwrite one."""
    cfg = load_config(args)
    result = {"keys_dir": str(cfg.keys_dir), "keys": init_keys(cfg)}
    if args.json:
        emit_json(result)
    else:
        for k in result["keys"]:
            state = "created" if k["created"] else "exists "
            print(f"{state}  {k['file']}  ({k['purpose']}; key id {k['key_id']}, mode 0600)")
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``guardrail keys init``."""
    k = add_parser(subparsers, "keys", help="key files")
    ksub = k.add_subparsers(dest="keys_verb", metavar="VERB", required=True)
    ki = add_parser(ksub, "init", help="create missing key files (mode 0600)")
    ki.add_argument("--json", action="store_true")
    ki.set_defaults(func=cmd_keys_init)
