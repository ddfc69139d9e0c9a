"""The figures of a corpus run and their Markdown (``docs/RELIABILITY.md``).

Every figure is computed from the per-input records of
:mod:`tests.faults.run_corpus`; each target of issue 11 is judged from them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

__all__ = ["CLEAN", "failures", "render", "summarise"]

CLEAN = "No evidence of AI generation found"
GB = 2**30
WARM_LIMIT_S = 5.0
RSS_LIMIT = 1 * GB
MIN_INPUTS = 2000


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(q * (len(v) - 1)))))]


def failures(item: dict[str, Any]) -> list[str]:
    """What went wrong with one input (empty: nothing)."""
    out = []
    warm, cli = item.get("warm") or {}, item.get("cli") or {}
    if warm.get("exception"):
        out.append(f"warm: raised {warm['exception']}")
    if warm.get("hang"):
        out.append("warm: no answer within the timeout")
    elif warm.get("time") is not None and warm["time"] >= WARM_LIMIT_S:
        out.append(f"warm: {warm['time']:.1f} s")
    if warm.get("label") == CLEAN and warm.get("modality") is None:
        out.append("warm: clean verdict for undecodable bytes")
    if cli.get("internal"):
        tail = (cli.get("stderr") or "").strip().splitlines()
        out.append(f"CLI: internal error (exit {cli.get('exit')}"
                   + (f", {cli['killed']}" if cli.get("killed") else "")
                   + (f"): {tail[-1][:160]}" if tail else ")"))
    if cli.get("hang"):
        out.append(f"CLI: {cli.get('killed')}")
    elif not cli.get("internal") and cli.get("exit") not in (None, 0, 3, 4):
        out.append(f"CLI: exit {cli['exit']}")
    if cli.get("rss", 0) >= RSS_LIMIT:
        out.append(f"CLI: peak RSS {cli['rss'] / GB:.2f} GiB")
    if cli.get("label") == CLEAN and cli.get("modality") is None and "exit" in cli:
        out.append("CLI: clean verdict for undecodable bytes")
    return out


def summarise(items: list[dict[str, Any]], run: dict[str, Any]) -> dict[str, Any]:
    """The corpus figures and the targets, judged."""
    warm = [it["warm"] for it in items if "warm" in it]
    cli = [it["cli"] for it in items if "cli" in it]
    warm_times = [w["time"] for w in warm if w.get("time") is not None]
    cli_times = [c["time"] for c in cli if not c.get("hang")]
    rss = [c["rss"] for c in cli]
    by_cat: dict[str, dict[str, Any]] = defaultdict(lambda: Counter())
    for it in items:
        c = by_cat[it["category"]]
        c["inputs"] += 1
        w, k = it.get("warm") or {}, it.get("cli") or {}
        c["warm_exceptions"] += bool(w.get("exception"))
        c["cli_internal"] += bool(k.get("internal"))
        c["hangs"] += bool(w.get("hang")) + bool(k.get("hang"))
        c["clean_undecodable"] += any(x.get("label") == CLEAN and x.get("modality") is None
                                      and (x is w or "exit" in x) for x in (w, k) if x)
        c["over_5s_warm"] += bool(w.get("hang") or (w.get("time") or 0) >= WARM_LIMIT_S)
        c["rss_over_1g"] += k.get("rss", 0) >= RSS_LIMIT
        c["failing"] += bool(failures(it))
    counts = {
        "inputs": len(items),
        "warm_exceptions": sum(bool(w.get("exception")) for w in warm),
        "warm_hangs": sum(bool(w.get("hang")) for w in warm),
        "cli_internal": sum(bool(c.get("internal")) for c in cli),
        "cli_hangs": sum(bool(c.get("hang")) for c in cli),
        "clean_undecodable_warm": sum(w.get("label") == CLEAN and w.get("modality") is None
                                      for w in warm),
        "clean_undecodable_cli": sum(c.get("label") == CLEAN and c.get("modality") is None
                                     for c in cli),
        "undecodable_cli": sum(c.get("label") is not None and c.get("modality") is None
                               for c in cli),
    }
    times = {
        "warm_max_s": max(warm_times, default=None), "warm_p95_s": _pct(warm_times, 0.95),
        "warm_median_s": _pct(warm_times, 0.5),
        "warm_over_5s": sum(t >= WARM_LIMIT_S for t in warm_times) + counts["warm_hangs"],
        "cli_max_s": max(cli_times, default=None), "cli_p95_s": _pct(cli_times, 0.95),
        "cli_median_s": _pct(cli_times, 0.5),
        "rss_max_gib": round(max(rss) / GB, 3) if rss else None,
        "rss_p95_gib": round(_pct(rss, 0.95) / GB, 3) if rss else None,
        "rss_over_1gib": sum(r >= RSS_LIMIT for r in rss),
    }
    rss_by_mod: dict[str, list[int]] = defaultdict(list)
    for c in cli:
        rss_by_mod[c.get("modality") or "undecoded"].append(c["rss"])
    times["rss_max_by_modality_gib"] = {m: round(max(v) / GB, 3) for m, v in
                                        sorted(rss_by_mod.items())}
    verdicts = Counter(c.get("label") or f"no verdict (exit {c.get('exit')})" for c in cli)
    warm_verdicts = Counter(w.get("label") or ("hang" if w.get("hang") else "raised")
                            for w in warm)
    exits = Counter(str(c.get("exit")) for c in cli)
    n_in, have_warm, have_cli = len(items), bool(warm), bool(cli)
    targets = {
        f">= {MIN_INPUTS} malformed inputs": {"met": n_in >= MIN_INPUTS, "measured": f"{n_in}"},
        "0 internal errors": {
            "met": have_warm and have_cli and counts["warm_exceptions"] == 0
            and counts["cli_internal"] == 0,
            "measured": f"{counts['cli_internal']} CLI (exit 1, signal, traceback or memory "
                        f"cap), {counts['warm_exceptions']} verify_file raised"
                        + ("" if have_warm and have_cli else " (a pass was skipped)")},
        "0 hangs": {"met": have_warm and have_cli and counts["cli_hangs"] == 0
                    and counts["warm_hangs"] == 0,
                    "measured": f"{counts['cli_hangs']} CLI, {counts['warm_hangs']} warm "
                                f"(timeout {run.get('timeout')} s)"},
        "every input answered in under 5 s warm": {
            "met": have_warm and times["warm_over_5s"] == 0,
            "measured": f"max {_fmt(times['warm_max_s'])} s, 95th percentile "
                        f"{_fmt(times['warm_p95_s'])} s, {times['warm_over_5s']} inputs at "
                        "5 s or more (hangs included)"},
        "peak RSS under 1 GB for any file": {
            "met": have_cli and times["rss_over_1gib"] == 0,
            "measured": f"max {_fmt(times['rss_max_gib'])} GiB, {times['rss_over_1gib']} "
                        "inputs at 1 GiB or more (CLI process)"},
        "0 clean verdicts for undecodable inputs": {
            "met": have_warm and have_cli and counts["clean_undecodable_cli"] == 0
            and counts["clean_undecodable_warm"] == 0,
            "measured": f"{counts['clean_undecodable_cli']} CLI, "
                        f"{counts['clean_undecodable_warm']} warm, of "
                        f"{counts['undecodable_cli']} undecodable"},
    }
    return {"run": run, "counts": counts, "times": times, "targets": targets,
            "by_category": {k: dict(v) for k, v in sorted(by_cat.items())},
            "verdicts_cli": dict(verdicts.most_common()),
            "verdicts_warm": dict(warm_verdicts.most_common()),
            "exit_codes_cli": dict(sorted(exits.items()))}


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}" if x < 1 else f"{x:.2f}"


def _failure_lines(items: list[dict[str, Any]], per_category: int | None) -> list[str]:
    by: dict[str, list[str]] = defaultdict(list)
    for it in items:
        f = failures(it)
        if f:
            by[it["category"]].append(f"- `{it['file'].split('/')[-1]}` ({it['seed']}: "
                                      f"{it['change'][:90]}): {'; '.join(f)}")
    out: list[str] = []
    for cat in sorted(by):
        lines = by[cat]
        out.append(f"\n### {cat} ({len(lines)} failing)\n")
        shown = lines if per_category is None else lines[:per_category]
        out += shown
        if len(shown) < len(lines):
            out.append(f"- ... and {len(lines) - len(shown)} more")
    return out or ["\nNone."]


def render(summary: dict[str, Any], items: list[dict[str, Any]], *,
           failures_inline: bool = True, failures_only: bool = False) -> str:
    """The Markdown report (``failures_only``: the list of failing inputs alone)."""
    if failures_only:
        return "# Failing corpus inputs by category\n" + "\n".join(
            _failure_lines(items, None)) + "\n"
    run, c, t = summary["run"], summary["counts"], summary["times"]
    lines = [
        "# Reliability: the malformed-input corpus",
        "",
        f"Written by `{run['argv']}` on {run['started']} ({run['machine']}; load average "
        f"{run['load_avg']:.1f} at the start, so times include other work on the machine), "
        f"commit {run.get('commit') or 'unknown'}. Wall time {run['wall_s'] / 60:.0f} min.",
        "",
        "## Targets (issue 11)",
        "",
        "| target | met | measured |",
        "|---|---|---|",
    ]
    for name, tg in summary["targets"].items():
        lines.append(f"| {name} | {'yes' if tg['met'] else '**no**'} | {tg['measured']} |")
    limits = run.get("limits")
    lines += ["", "Limits in force (`[limits]`, the defaults): " + (
        ", ".join(f"`{k} = {v}`" for k, v in limits.items()) if limits
        else "none (this version has no `[limits]` section)") + "."]
    lines += [
        "",
        "## Corpus figures",
        "",
        f"- inputs: {c['inputs']} (corpus seed {run['seed']}"
        + (f", sample of {run['limit']}" if run.get("limit") else "")
        + f"; text seed {'from the embedded SmolLM2 model, watermarked' if run.get('real_text') else 'signed, not watermarked'})",
        f"- internal errors: {c['cli_internal']} from `guardrail verify` (exit 1, a signal, "
        f"a traceback or the {run['memory_cap_gb']:g} GiB memory cap), "
        f"{c['warm_exceptions']} exceptions from `verify_file`",
        f"- hangs (no answer in {run['timeout']:g} s): {c['cli_hangs']} CLI, {c['warm_hangs']} "
        f"warm (warm worker restarted {run['warm_restarts']} times)",
        f"- warm `verify_file` time: median {_fmt(t['warm_median_s'])} s, 95th percentile "
        f"{_fmt(t['warm_p95_s'])} s, max {_fmt(t['warm_max_s'])} s",
        f"- `guardrail verify` (a new process each, models loaded each time): median "
        f"{_fmt(t['cli_median_s'])} s, 95th percentile {_fmt(t['cli_p95_s'])} s, max "
        f"{_fmt(t['cli_max_s'])} s ({run['jobs']} at a time)",
        f"- peak RSS of a `guardrail verify` process: 95th percentile "
        f"{_fmt(t['rss_p95_gib'])} GiB, max {_fmt(t['rss_max_gib'])} GiB; max by decoded "
        "modality: " + ", ".join(f"{m} {v:.2f} GiB" for m, v in
                                 t["rss_max_by_modality_gib"].items()),
        f"- clean verdicts (\"{CLEAN}\") for inputs that could not be decoded: "
        f"{c['clean_undecodable_cli']} CLI, {c['clean_undecodable_warm']} warm "
        f"(of {c['undecodable_cli']} undecodable inputs)",
        "",
        "### By category",
        "",
        "| category | inputs | failing | internal (CLI) | raised (warm) | hangs | >= 5 s warm "
        "| RSS >= 1 GiB | clean but undecodable |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for cat, v in summary["by_category"].items():
        lines.append(f"| {cat} | {v.get('inputs', 0)} | {v.get('failing', 0)} | "
                     f"{v.get('cli_internal', 0)} | {v.get('warm_exceptions', 0)} | "
                     f"{v.get('hangs', 0)} | {v.get('over_5s_warm', 0)} | "
                     f"{v.get('rss_over_1g', 0)} | {v.get('clean_undecodable', 0)} |")
    lines += ["", "### Verdicts (`guardrail verify`)", "", "| verdict | inputs |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in summary["verdicts_cli"].items()]
    lines += ["", "Exit codes: " + ", ".join(f"{k}: {v}" for k, v in
                                              summary["exit_codes_cli"].items()) + "."]
    lines += [
        "",
        "## How to reproduce",
        "",
        "```",
        f"{run['argv']}",
        "```",
        "",
        "The command builds the corpus (`python -m tests.faults.corpus`: real guardrail outputs "
        "of every media type, watermarked and signed, plain files and the third-party C2PA "
        "fixtures in `../shared/fixtures/c2pa-peer`, each damaged in described, seeded ways, "
        "plus bombs and special files) in `--corpus` (default "
        "`$TMPDIR/guardrail-fault-corpus`), then runs every input twice: warm, through "
        "`guardrail.verify_file` in one process that has loaded the models and detectors once, "
        "and cold, through `guardrail verify FILE --json` in a process of its own, whose peak "
        "RSS is read with `os.wait4`. Per-input records go to `results.json` in the corpus "
        "folder. `--limit N` runs a sample spread over the categories; CI runs a fixed "
        "60-input sample through pytest (`tests/faults/test_corpus_sample.py`).",
    ]
    if failures_inline:
        lines += ["", "## Failing inputs (first 15 per category)"]
        lines += _failure_lines(items, 15)
    return "\n".join(lines) + "\n"
