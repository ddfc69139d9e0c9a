"""``guardrail demo``: one guarded generation per modality on the embedded defaults."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

from .. import progress
from .._types import Modality, Report
from ..factory import init_keys
from ..store import ReportStore
from . import main
from ._common import EXIT_BLOCKED, EXIT_OK, add_parser, emit_json, load_config

__all__ = ["register"]


#: the demo's text audit: the whole shipped suite, one sample per prompt - 12 counterfactual
#: sets per attribute, so every group has n = 12, at or above the default [audit] min_group_n
AUDIT_FULL = ["audit", "run", "text-demographics", "--samples", "1"]
#: ``--smoke``: the first 24 prompts only (8 per gender group: nothing can be tested), stored
#: and shown everywhere as a smoke run
AUDIT_SMOKE = [*AUDIT_FULL, "--limit", "24", "--smoke"]


def _demo_evaluations(args: argparse.Namespace, out_dir: Path) -> list[dict[str, Any]]:
    """The evaluations behind the dashboard's audit and robustness/detector pages, run
    through the same CLI verbs a user would type: a text bias audit (the whole suite with one
    sample per prompt, or with ``--smoke`` a labelled smoke run), a smoke run of the image
    watermark robustness lab, and a text detector evaluation on a small generated corpus
    (which stores its ROC points)."""
    common: list[str] = []
    for name, flag in (("config", "--config"), ("store", "--store"), ("data_dir", "--data-dir")):
        if getattr(args, name, None):
            common += [flag, str(getattr(args, name))]
    # the steps show guardrail's progress bars as this command does (and library output
    # only with -v)
    common += ["--progress", "always" if progress.enabled() else "never",
               *["-v"] * int(getattr(args, "verbose", 0) or 0)]
    human, generated = out_dir / "eval-texts" / "real", out_dir / "eval-texts" / "synthetic"
    smoke = bool(getattr(args, "smoke", False))
    steps = [
        ("text bias audit: SMOKE RUN - NOT A TEST (24 prompts, 8 per group, below the "
         "minimum group size)" if smoke else
         "text bias audit: text-demographics, 336 prompts x 1 sample, every group n=12 "
         "(a test: every comparison has groups at the minimum size; about 3-6 minutes on "
         "2 CPU cores)", [*(AUDIT_SMOKE if smoke else AUDIT_FULL), "--json"]),
        ("image watermark robustness: smoke run of the lab (3 photos, the configured "
         "scheme only)", ["robustness", "--modality", "image", "--sample", "3", "--json"]),
        ("text corpus for the detector evaluation (12 human, 12 generated texts)",
         ["detectors", "corpus", str(out_dir / "eval-texts"), "--samples", "12", "--length",
          "64", "--prefix", "16", "--json"]),
        ("text detector evaluation (fast-detectgpt; ROC curve and operating point)",
         ["detectors", "eval", "fast-detectgpt", str(human), str(generated), "--bootstrap",
          "200", "--json"]),
    ]
    if (out_dir / "eval-texts").exists():
        shutil.rmtree(out_dir / "eval-texts")
    done: list[dict[str, Any]] = []
    for i, (label, argv) in enumerate(steps, 1):
        if not args.json:
            print(f"[evaluation {i}/{len(steps)}] {label} ...", flush=True)
        buf = io.StringIO()
        started = time.perf_counter()
        with contextlib.redirect_stdout(buf):
            code = main([*argv, *common])
        took = time.perf_counter() - started
        step: dict[str, Any] = {"step": label, "exit_code": code, "seconds": round(took, 1)}
        try:
            result = json.loads(buf.getvalue())
        except json.JSONDecodeError:
            result = None
        if isinstance(result, dict) and result.get("evaluation_id"):
            step["evaluation_id"] = result["evaluation_id"]
            if isinstance(result.get("outcome"), dict):
                step["outcome"] = result["outcome"]["text"]
        done.append(step)
        if not args.json:
            print(f"[evaluation {i}/{len(steps)}] "
                  + (f"done in {took:.0f} s" if code == EXIT_OK else
                     f"exit code {code} after {took:.0f} s")
                  + (f": {step['outcome']}" if step.get("outcome") else ""), flush=True)
    return done


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate a text, an image and an audio clip through guards built from the config."""
    from ..guard import guard_from_config

    cfg = load_config(args)
    out_dir = Path(args.out).absolute() if args.out else cfg.demo_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    # the text job writes 128 tokens: a text watermark is a statistical test that needs
    # length (docs/ROBUSTNESS.md, pass rate by length); a shorter sampled answer would more
    # often be released flagged as too weak to verify ([policy] unverifiable_text)
    jobs: list[tuple[Modality, str, str, dict[str, Any]]] = [
        (Modality.TEXT, "Write a short paragraph about why rivers matter to cities.",
         "demo-text.txt", {"min_new_tokens": 128, "max_new_tokens": 128}),
        (Modality.IMAGE, "a handwritten digit seven", "demo-image.png", {}),
        (Modality.AUDIO, "This audio was generated by a machine and carries a guardrail record.",
         "demo-audio.wav", {}),
    ]
    created = [k for k in init_keys(cfg) if k["created"]]
    if created and not args.json:
        for k in created:
            print(f"created key file {k['file']} ({k['purpose']}; mode 0600)")
    reports: list[Report] = []
    with ReportStore(cfg.store_url) as store:
        for modality, prompt, name, params in jobs:
            if not args.json:
                print(f"[{modality.value}] loading the embedded default and generating ...",
                      flush=True)
            with guard_from_config(cfg, modality, store=store,
                                   progress=progress.library_bars()) as guard:
                result = guard.generate(prompt, output=out_dir / name, seed=args.seed,
                                        params=params)
            reports.append(result.report)
            if not args.json:
                print(f"[{modality.value}] {result.status}: {result.output or 'nothing written'}"
                      f"  (report {result.report_id})")
    evaluations = _demo_evaluations(args, out_dir) if args.evaluations else []
    if args.json:
        emit_json([r.to_dict() for r in reports] if not args.evaluations else
                  {"reports": [r.to_dict() for r in reports], "evaluations": evaluations})
    else:
        print(f"\noutputs: {out_dir}\nreports: {ReportStore.describe(cfg.store_url)}\n"
              "see them with: guardrail reports list; guardrail dashboard")
    blocked = any(r.status == "blocked" for r in reports)
    return EXIT_BLOCKED if blocked else EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``guardrail demo``."""
    d = add_parser(subparsers, "demo",
                   help="one guarded generation per modality on the embedded defaults")
    d.add_argument("--out", metavar="DIR", help="output folder (default: <data_dir>/demo)")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--evaluations", action="store_true",
                   help="also record a text bias audit of the whole shipped suite (one "
                        "sample per prompt, every group at the minimum size), a smoke run of "
                        "the image watermark robustness lab and a text detector evaluation, "
                        "so every "
                        "dashboard page has data (about 5-10 more minutes on 2 CPU cores)")
    d.add_argument("--smoke", action="store_true",
                   help="with --evaluations: a 24-prompt audit instead, stored and shown as "
                        "a smoke run (checks the pipeline, tests nothing; a minute or two)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_demo)
