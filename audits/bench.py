"""``guardrail audit benchmark``: time a full text audit of the default generator.

Runs the shipped ``text-demographics`` suite through the guard with the configured (or
given) samples per prompt, from model load to the stored evaluation, and reports the number
of generations, the wall time and generations per second. ``--out FILE`` writes the result
as the ``audit-text`` section of a markdown file (``docs/BENCHMARKS.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from guardrail import progress
from guardrail.benchmarks import machine_line, write_section
from guardrail.config import Config
from guardrail.store import ReportStore

from .runner import AuditContext, run_audit
from .suites import load_suite

__all__ = ["cmd_benchmark", "run_text_benchmark", "to_markdown"]

TARGET_S = 15 * 60  # the target for >= 500 generations on a 2-core CPU


def run_text_benchmark(cfg: Config, *, samples: int | None = None, limit: int | None = None,
                       progress: bool = True) -> dict[str, Any]:
    suite = load_suite("text-demographics")
    import os

    with ReportStore(cfg.store_url) as store:
        t0, cpu0 = time.perf_counter(), time.process_time()
        from .text import build_guard

        guard = build_guard(cfg, store)
        load_s = time.perf_counter() - t0
        ctx = AuditContext(config=cfg, store=store, samples=samples, resume=False,
                           progress=progress, guard=guard, limit=limit,
                           name=f"benchmark: {suite.name}")
        try:
            ev = run_audit(suite, ctx)
        finally:
            guard.close()
        total_s = time.perf_counter() - t0
        cpu_s = time.process_time() - cpu0
        load = os.getloadavg()[1]
    s = ev.summary
    result = {"audit_id": ev.evaluation_id, "suite": f"{suite.name} v{suite.version}",
              "model": ev.config["generator"]["model_id"], "prompts": ev.config["prompts"],
              "samples": ev.config["samples"], "generations": s["generations"],
              "scored": s["scored"], "failed": s["failed"], "flags": len(s["flags"]),
              "max_new_tokens": ev.config["params"]["max_new_tokens"],
              "batch_size": ev.config["batch_size"], "load_s": round(load_s, 1),
              "generate_and_score_s": s["wall_time_s"],
              "analysis_s": round(total_s - load_s - s["wall_time_s"], 1),
              "total_s": round(total_s, 1), "cpu_s": round(cpu_s, 1),
              "load_average_5min_at_end": round(load, 1),
              "generations_per_s": round(s["generations"] / total_s, 3),
              "target_s": TARGET_S, "meets_target": total_s <= TARGET_S,
              "machine": machine_line()}
    result["markdown"] = to_markdown(result)
    return result


def to_markdown(r: dict[str, Any]) -> str:
    verdict = "meets" if r["meets_target"] else "MISSES"
    return "\n".join([
        "## Text bias audit (`guardrail audit benchmark`)",
        "",
        f"A full text audit of the default generator ({r['model']}) over the shipped suite "
        f"{r['suite']}: {r['prompts']} counterfactual prompts x {r['samples']} samples = "
        f"**{r['generations']} generations**, each through the full guard (KGW watermark while "
        f"decoding, self-check, C2PA signing, one report per generation), "
        f"{r['max_new_tokens']} new tokens, batches of {r['batch_size']}; then scoring, "
        "bootstrap intervals and permutation tests for every attribute and metric.",
        "",
        "| generations | model load | generate + score | analysis | total | generations/s | "
        "target (15 min) |",
        "|---:|---:|---:|---:|---:|---:|---|",
        f"| {r['generations']} | {r['load_s']} s | {r['generate_and_score_s']} s | "
        f"{r['analysis_s']} s | **{r['total_s']} s** ({r['total_s'] / 60:.1f} min) | "
        f"{r['generations_per_s']} | {verdict} it |",
        "",
        f"Scored {r['scored']}, failed {r['failed']}, flags {r['flags']}. CPU time of the "
        f"process (all threads): {r['cpu_s']} s. Machine: {r['machine']}; 5-minute load "
        f"average at the end: {r['load_average_5min_at_end']} (other jobs share the machine).",
    ])


def cmd_benchmark(cfg: Config, args: argparse.Namespace) -> int:
    res = run_text_benchmark(cfg, samples=args.samples, limit=args.limit,
                             progress=progress.enabled())
    if args.out:
        write_section(Path(args.out), "audit-text", res["markdown"])
    if args.json:
        sys.stdout.write(json.dumps(res, indent=2) + "\n")
    else:
        print(res["markdown"])
    return 0
