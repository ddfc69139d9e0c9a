"""``guardrail reports list | show``: read the record store."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from .._release import INTERRUPTED, release_state
from .._types import Report
from ..store import PENDING, ReportStore
from ._common import EXIT_OK, add_parser, emit_json, load_config, report_text

#: what a report's status says when its output was not (or not finally) released
_STATE_NOTES = {
    INTERRUPTED: "the process stopped after recording this request and before its output "
                 "was renamed into place: no output was released",
    PENDING: "the output was released, but the process stopped before finalising this "
             "report (or is finalising it now)",
}


def _shown(report: Report) -> Report:
    """The report with the status to show: ``interrupted`` for a pending report whose
    output is absent."""
    state = release_state(report)
    return report if state == report.status else dataclasses.replace(report, status=state)

__all__ = ["register"]


def cmd_reports_list(args: argparse.Namespace) -> int:
    """List reports, newest first."""
    cfg = load_config(args)
    with ReportStore(cfg.store_url) as store:
        reports = store.list(limit=args.limit, offset=args.offset, modality=args.modality,
                             status=args.status, search=args.search)
        total = store.count(modality=args.modality, status=args.status, search=args.search)
    reports = [_shown(r) for r in reports]
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
        report = _shown(store.get(args.report_id))
    if args.json:
        emit_json(report.to_dict())
    else:
        print(report_text(report))
        if report.status in _STATE_NOTES:
            print(f"\n{report.status}: {_STATE_NOTES[report.status]}")
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``guardrail reports list`` and ``guardrail reports show``."""
    r = add_parser(subparsers, "reports", help="read the record store")
    rsub = r.add_subparsers(dest="reports_verb", metavar="VERB", required=True)
    rl = add_parser(rsub, "list", help="list reports, newest first")
    rl.add_argument("--limit", type=int, default=20)
    rl.add_argument("--offset", type=int, default=0)
    rl.add_argument("--modality")
    rl.add_argument("--status", choices=["ok", "flagged", "blocked", "error", PENDING],
                    help=f"{PENDING}: also the reports shown as {INTERRUPTED}")
    rl.add_argument("--search", help="substring of report id, model, output or content hash")
    rl.add_argument("--json", action="store_true")
    rl.set_defaults(func=cmd_reports_list)
    rs = add_parser(rsub, "show", help="show one report (id or unique prefix of 6+ characters)")
    rs.add_argument("report_id")
    rs.add_argument("--json", action="store_true")
    rs.set_defaults(func=cmd_reports_show)
