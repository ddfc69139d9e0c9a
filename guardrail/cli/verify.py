"""``guardrail verify FILE``: credentials, watermark, recovered record, detectors."""

from __future__ import annotations

import argparse
from typing import Any

from ._common import EXIT_BLOCKED, EXIT_OK, EXIT_UNVERIFIED, add_parser, emit_json, load_config

__all__ = ["register"]

#: exit codes by verdict label; every other verdict exits 0. "Could not be verified" covers
#: every file whose content could not be read or decoded (damaged, unsupported, special,
#: beyond a ``[limits]`` value): such a file never exits 0 with a clean verdict.
EXIT_CODES = {"Tampered": EXIT_BLOCKED, "Could not be verified": EXIT_UNVERIFIED}


def cmd_verify(args: argparse.Namespace) -> int:
    """Check a file and print one verdict with its evidence (exit 3: Tampered, 4: Could not
    be verified, else 0)."""
    from ..verify import verify_file

    cfg = load_config(args)
    res = verify_file(args.file, cfg)
    out = res.to_dict()
    if args.json:
        emit_json(out)
    else:
        from ..verify_report import render_text

        print(render_text(out))
    return EXIT_CODES.get(res.label, EXIT_OK)


def register(subparsers: Any) -> None:
    """Add ``guardrail verify``."""
    v = add_parser(subparsers, "verify",
                   help="credentials, watermark, recovered record, detectors: one verdict")
    v.add_argument("file")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_verify)
