"""``guardrail audit run | list | show | export | benchmark``: the ``audit`` verb, registered
as a ``guardrail.cli`` entry point."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from guardrail import progress
from guardrail.cli import add_parser, load_config, positive_int
from guardrail.config import Config
from guardrail.errors import InputError, OutputError
from guardrail.store import Evaluation, ReportNotFound, ReportStore

from . import report
from .runner import AuditContext, run_audit
from .suites import load_suite

__all__ = ["cmd_audit", "exports_for", "register"]


def _emit(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def find_audit(store: ReportStore, ident: str) -> Evaluation:
    """An audit by id or unique id prefix."""
    try:
        return store.get_evaluation(ident)
    except ReportNotFound:
        pass
    matches = [e for e in store.list_evaluations(kind="audit", limit=10_000)
               if e.evaluation_id.startswith(ident)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise InputError(f"audit id prefix {ident!r} is ambiguous ({len(matches)} audits)")
    raise ReportNotFound(f"no audit {ident!r} in the record store (see: guardrail audit list)")


def exports_for(ev: Evaluation, out_dir: Path) -> dict[str, str]:
    """Write ``<id>.csv``, ``<id>.json`` and ``<id>.html`` into ``out_dir``."""
    return {fmt: str(report.export(ev, Path(out_dir) / f"{ev.evaluation_id}.{fmt}", fmt))
            for fmt in report.FORMATS}


def _summary_text(ev: Evaluation) -> str:
    s = ev.summary
    lines = [f"audit    {ev.evaluation_id}", f"name     {ev.name}", f"status   {ev.status}",
             f"created  {ev.created_at}"]
    gen = ev.config.get("generator") or {}
    if gen:
        lines.append(f"model    {gen.get('model_id')}"
                     + (f" @ {gen['revision']}" if gen.get("revision") else ""))
    for key in ("generations", "scored", "failed", "flagged", "blocked", "wall_time_s",
                "generations_per_s", "samples_done", "samples_total"):
        if key in s:
            lines.append(f"{key.replace('_', ' '):<9}{' ' if len(key) < 9 else '  '}{s[key]}")
    lines.extend(f"WARNING: {w}" for w in s.get("warnings") or [])
    result = report.outcome(ev)
    if result["state"] == "smoke":
        lines.append(f"\nSMOKE RUN - NOT A TEST: {result['text']}")
    flags = s.get("flags")
    if flags:
        lines.append(f"\nFLAGGED ({len(flags)}):")
        lines.extend(f"  - {f}" for f in flags)
    if result["state"] != "smoke":
        lines.append(f"\n{result['text']}")
    disp = report.disparity_rows(ev)
    if disp:
        lines.append("\n  attribute        metric                   kind        value   "
                     "95% interval          p      p_adj   flag")
        for d in disp:
            if d.get("tested") is False:
                lines.append(f"  {str(d['attribute']):<16} {d['metric']:<24} {d['kind']:<10} "
                             f"{'-':>7}  {d.get('reason') or 'not tested'}")
                continue
            ci = f"[{_n(d.get('ci_low'))}, {_n(d.get('ci_high'))}]"
            lines.append(f"  {str(d['attribute']):<16} {d['metric']:<24} {d['kind']:<10} "
                         f"{_n(d.get('value')):>7}  {ci:<18} {_n(d.get('p_value')):>6} "
                         f"{_n(d.get('p_adjusted')):>6}   {'FLAG' if d.get('flagged') else ''}"
                         + (f"  ({len(d['excluded'])} group(s) below n="
                            f"{d.get('min_group_n')} left out)" if d.get("excluded") else ""))
    return "\n".join(lines)


def _n(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


def cmd_audit(cfg: Config, args: argparse.Namespace) -> int:
    verb = args.audit_verb
    if verb == "benchmark":
        from .bench import cmd_benchmark

        return cmd_benchmark(cfg, args)
    with ReportStore(cfg.store_url) as store:
        if verb == "run":
            return _run(cfg, store, args)
        if verb == "list":
            audits = store.list_evaluations(kind="audit", limit=args.limit)
            if args.json:
                _emit([{**{k: v for k, v in e.to_dict().items() if k != "rows"},
                        "outcome": report.outcome(e)} for e in audits])
            elif not audits:
                print("no audits yet: run one with `guardrail audit run text-demographics`")
            else:
                for e in audits:
                    state = f"{e.status}, {report.outcome(e)['text']}"
                    print(f"{e.evaluation_id}  {e.created_at[:19].replace('T', ' ')}  "
                          f"{e.name}  ({state})")
            return 0
        ev = find_audit(store, args.audit_id)
    if verb == "show":
        if args.json:
            _emit({**ev.to_dict(), "outcome": report.outcome(ev)})
        else:
            print(_summary_text(ev))
        return 0
    # export
    path = report.export(ev, args.out, args.format)
    if args.json:
        _emit({"audit_id": ev.evaluation_id, "format": args.format or path.suffix[1:],
               "file": str(path)})
    else:
        print(f"written {path}")
    return 0


def _run(cfg: Config, store: ReportStore, args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    if args.out:  # fail before hours of generation, not after
        try:
            Path(args.out).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the export folder {args.out!r}: "
                              f"{exc.strerror or exc}") from None
    ctx = AuditContext(config=cfg, store=store, generator=args.generator, samples=args.samples,
                       seed=args.seed, resume=not args.no_resume, progress=progress.enabled(),
                       device=args.device, out_dir=Path(args.out) if args.out else None,
                       name=args.name, limit=args.limit, smoke=args.smoke,
                       engine=args.engine, workers=args.workers, address=args.address)
    try:
        ev = run_audit(suite, ctx)
    except KeyboardInterrupt:
        print("guardrail: audit interrupted; finished samples are kept - run the same "
              "command again to continue", file=sys.stderr)
        raise
    files = exports_for(ev, ctx.out_dir) if ctx.out_dir else {}
    if args.json:
        _emit({**ev.to_dict(), "outcome": report.outcome(ev), "exports": files})
    else:
        print(_summary_text(ev))
        for fmt, file in files.items():
            print(f"{fmt:<5} {file}")
        print(f"\nstored as evaluation {ev.evaluation_id}; HTML report: "
              f"guardrail audit export {ev.evaluation_id} --format html --out audit.html")
    return 0


def _handle(args: argparse.Namespace) -> int:
    return cmd_audit(load_config(args), args)


def register(subparsers: Any) -> None:
    """Add ``guardrail audit`` and its sub-verbs."""
    au = add_parser(subparsers, "audit", help="bias audits of a generator and of the safety layer")
    ausub = au.add_subparsers(dest="audit_verb", metavar="VERB", required=True)
    ar = add_parser(ausub, "run", help="run a prompt suite through the guard; store the audit")
    ar.add_argument("suite", metavar="SUITE", help="shipped suite name (text-demographics) or "
                                                   "a suite file")
    for flags, options in (
            (("--generator",), {"metavar": "ID_OR_PATH", "help": "model (default: from config)"}),
            (("--samples",), {"type": int, "metavar": "N", "help": "generations per prompt"}),
            (("--seed",), {"type": int}),
            (("--device",), {"help": "cpu, cuda, cuda:N (default: auto)"}),
            (("--limit",), {"type": int, "metavar": "N", "help": "only the first N prompts"}),
            (("--name",), {"help": "name of the stored audit"}),
            (("--out",), {"metavar": "DIR", "help": "also export CSV, JSON and HTML into DIR"}),
            (("--smoke",), {"action": "store_true",
                            "help": "label the run a smoke run: it checks that the audit "
                                    "runs end to end and tests nothing"}),
            (("--engine",), {"choices": ("local", "ray"), "default": "local",
                             "help": "local: in this process (default); ray: the "
                                     "generations spread over Ray actors, one model load "
                                     "per actor (pip install 'guardrail[ray]')"}),
            (("--workers",), {"type": positive_int, "default": 2, "metavar": "N",
                              "help": "with --engine ray: actors (default 2)"}),
            (("--address",), {"metavar": "ADDR",
                              "help": "with --engine ray: an existing Ray cluster (default: "
                                      "start a local one)"}),
            (("--no-resume",), {"action": "store_true",
                                "help": "start afresh instead of continuing an interrupted run"}),
            (("--store-prompts",), {"action": "store_true",
                                    "help": "store the raw prompts in the reports (off by default)"}),
            (("--json",), {"action": "store_true"})):
        ar.add_argument(*flags, **options)
    al = add_parser(ausub, "list", help="stored audits, newest first")
    al.add_argument("--limit", type=int, default=50)
    al.add_argument("--json", action="store_true")
    ash = add_parser(ausub, "show", help="one audit: flags and disparities")
    ash.add_argument("audit_id", metavar="ID", help="audit id or unique prefix")
    ash.add_argument("--json", action="store_true")
    ae = add_parser(ausub, "export", help="write an audit as CSV, JSON or HTML")
    ae.add_argument("audit_id", metavar="ID", help="audit id or unique prefix")
    ae.add_argument("--format", choices=["csv", "json", "html"],
                    help="default: from the file suffix")
    ae.add_argument("--out", required=True, metavar="FILE")
    ae.add_argument("--json", action="store_true")
    abn = add_parser(ausub, "benchmark", help="time a full text audit of the default generator")
    abn.add_argument("--samples", type=int, metavar="N", help="generations per prompt")
    abn.add_argument("--limit", type=int, metavar="N", help="only the first N prompts")
    abn.add_argument("--out", metavar="FILE", help="markdown file to update (a section)")
    abn.add_argument("--json", action="store_true")
    for p in (ar, al, ash, ae, abn):
        p.set_defaults(func=_handle)
