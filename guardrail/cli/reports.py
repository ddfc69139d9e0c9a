"""``guardrail reports list | show``: read the record store."""

from __future__ import annotations

import argparse
from typing import Any

from ..store import ReportStore
from ._common import EXIT_OK, add_parser, emit_json, load_config, report_text

__all__ = ["register"]


def cmd_reports_list(args: argparse.Namespace) -> int:
    """List reports, newest first."""
    cfg = load_config(args)
    with ReportStore(cfg.store_url) as store:
        reports = store.list(limit=args.limit, offset=args.offset, modality=args.modality,
                             status=args.status, search=args.search)
        total = store.count(modality=args.modality, status=args.status, search=args.search)
    if args.json:
        emit_json([r.to_dict() for r in reports])
        return EXIT_OK
    if not reports:
        print("no reports" + (" match" if (args.modality or args.status or args.search) else
                              " yet: run `guardrail demo` or `guardrail generate`"))
        return EXIT_OK
    print(f"{'report':<12}  {'created (UTC)':<19}  {'modality':<8}  {'status':<8}  model / output")
    for r in reports:
        modality = r.modality.value if r.modality else "?"
        print(f"{r.report_id[:12]}  {r.created_at[:19].replace('T', ' ')}  {modality:<8}  "
              f"{r.status:<8}  {r.metadata.model_id}  {r.output or '-'}")
    shown_to = args.offset + len(reports)
    print(f"\n{args.offset + 1}-{shown_to} of {total}" +
          ("  (use --offset to see more)" if shown_to < total else ""))
    return EXIT_OK


def cmd_reports_show(args: argparse.Namespace) -> int:
    """Show one report by id or unique prefix."""
    cfg = load_config(args)
    with ReportStore(cfg.store_url) as store:
        report = store.get(args.report_id)
    if args.json:
        emit_json(report.to_dict())
    else:
        print(report_text(report))
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``guardrail reports list`` and ``guardrail reports show``."""
    r = add_parser(subparsers, "reports", help="read the record store")
    rsub = r.add_subparsers(dest="reports_verb", metavar="VERB", required=True)
    rl = add_parser(rsub, "list", help="list reports, newest first")
    rl.add_argument("--limit", type=int, default=20)
    rl.add_argument("--offset", type=int, default=0)
    rl.add_argument("--modality")
    rl.add_argument("--status", choices=["ok", "flagged", "blocked", "error"])
    rl.add_argument("--search", help="substring of report id, model, output or content hash")
    rl.add_argument("--json", action="store_true")
    rl.set_defaults(func=cmd_reports_list)
    rs = add_parser(rsub, "show", help="show one report (id or unique prefix)")
    rs.add_argument("report_id")
    rs.add_argument("--json", action="store_true")
    rs.set_defaults(func=cmd_reports_show)
