"""The guard's overhead per modality, measured side by side in one run.

For each modality on the embedded defaults, the bare generator call and the same call
through the guard (interleaved, same prompt and seed); the overhead is reported both ways:

* end to end: median guarded time / median bare time;
* by stage: the median time the guard spends outside the generator (all stage durations
  except ``generate``) as a share of the median generation time. This is the precise
  number; the end-to-end ratio also carries the generator's own run-to-run noise.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._types import Modality
from ..config import Config
from ..store import ReportStore
from ._report import machine_line, now

__all__ = ["run_overhead"]

PROMPTS = {
    Modality.TEXT: "Write one sentence about the weather.",
    Modality.IMAGE: "a handwritten digit three",
    Modality.AUDIO: "The quick brown fox jumps over the lazy dog.",
}
EXTENSIONS = {Modality.TEXT: ".txt", Modality.IMAGE: ".png", Modality.AUDIO: ".wav"}
# keep the benchmark short on a CPU: small, fixed generation sizes
PARAMS: dict[Modality, dict[str, Any]] = {
    Modality.TEXT: {"max_new_tokens": 32},
    Modality.IMAGE: {},
    Modality.AUDIO: {},
}
TARGET_OVERHEAD_PCT = 5.0


def _bench_modality(cfg: Config, modality: Modality, runs: int, store: ReportStore,
                    workdir: Path, progress: bool) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from ..factory import default_stages, generator_from_config
    from ..guard import Guard

    t0 = time.perf_counter()
    gen = generator_from_config(cfg, modality, progress=False)
    load_s = time.perf_counter() - t0
    core = Guard(gen, store=store, config=cfg, stages=())
    full = Guard(gen, store=store, config=cfg, stages=default_stages(cfg, gen))
    prompt, params = PROMPTS[modality], PARAMS[modality]
    ext = EXTENSIONS[modality]
    # warm-up (first calls pay for lazy initialisation)
    gen.generate([prompt], seed=0, params=params)
    core.generate(prompt, output=workdir / f"warm{ext}", seed=0, params=params)
    full.generate(prompt, output=workdir / f"warmf{ext}", seed=0, params=params)
    bare: list[float] = []
    arms: dict[str, dict[str, list[float]]] = {
        name: {"total": [], "outside": [], "inside": []} for name in ("core", "full")}
    statuses = set()
    for i in tqdm(range(runs), desc=f"benchmark {modality.value}", disable=not progress):
        seed = 1000 + i
        t = time.perf_counter()
        gen.generate([prompt], seed=seed, params=params)
        bare.append(time.perf_counter() - t)
        for name, guard in (("core", core), ("full", full)):
            t = time.perf_counter()
            res = guard.generate(prompt, output=workdir / f"{name}{i}{ext}", seed=seed,
                                 params=params)
            arms[name]["total"].append(time.perf_counter() - t)
            stage_ms: dict[str, float] = {}
            for rec in res.report.stages:
                stage_ms[rec.stage] = stage_ms.get(rec.stage, 0.0) + rec.duration_ms
            arms[name]["inside"].append(stage_ms["generate"] / 1000)
            arms[name]["outside"].append(
                sum(v for k, v in stage_ms.items() if k != "generate") / 1000)
            if name == "full":
                statuses.add(res.status)
    med = statistics.median
    row: dict[str, Any] = {
        "modality": modality.value, "model": gen.info.model_id, "device": gen.info.device,
        "runs": runs, "load_s": round(load_s, 2), "bare_median_s": round(med(bare), 4),
        "full_guard_statuses": sorted(statuses)}
    for name, a in arms.items():
        row[f"{name}_guarded_median_s"] = round(med(a["total"]), 4)
        row[f"{name}_end_to_end_ratio"] = round(med(a["total"]) / med(bare), 4)
        row[f"{name}_stage_overhead_median_ms"] = round(med(a["outside"]) * 1000, 2)
        row[f"{name}_stage_overhead_pct"] = round(100 * med(a["outside"]) / med(a["inside"]), 3)
    return row


def run_overhead(cfg: Config, *, modalities: Sequence[Modality], runs: int = 5,
                 progress: bool = True) -> dict[str, Any]:
    """Measure the guard's overhead per modality.

    Returns
    -------
    dict
        ``rows`` (one per modality), ``date``, ``machine``, ``target_overhead_pct`` and
        ``markdown`` (the ``guard-overhead`` section of ``docs/BENCHMARKS.md``).
    """
    rows = []
    with tempfile.TemporaryDirectory(prefix="guardrail-bench-") as tmp:
        store = ReportStore(f"sqlite:///{tmp}/bench.db")
        try:
            for modality in modalities:
                rows.append(_bench_modality(cfg, modality, runs, store, Path(tmp), progress))
        finally:
            store.close()
    result: dict[str, Any] = {
        "benchmark": "guard-overhead",
        "date": now(),
        "machine": machine_line(),
        "target_overhead_pct": TARGET_OVERHEAD_PCT,
        "rows": rows,
    }
    result["markdown"] = _markdown(result)
    return result


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        "## Guard overhead per modality",
        "",
        f"Measured {result['date']} on {result['machine']} with `guardrail benchmark`. "
        "Each run calls the bare generator, then the same generation through two guards, with "
        "the same prompt and seed, interleaved: the *core* guard (input policy, encode, atomic "
        "file write, record in SQLite: the stages of the guarded-generation issue, target "
        f"under {result['target_overhead_pct']:.0f}% of generation time) and the *full* guard "
        "(as `guardrail generate` runs it: also the detectors of the modality, watermark "
        "embedding, self-check on the encoded file, C2PA signing and verification). Stage "
        "overhead = median time in every stage except `generate`, as a "
        "share of the median generation time; the end-to-end ratio also carries the "
        "generator's own run-to-run noise.",
        "",
        "| modality | model | runs | bare median (s) | core: overhead (ms) | core: % of generation "
        "| core target met | full: overhead (ms) | full: % of generation | full: end-to-end ratio |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        met = "yes" if r["core_stage_overhead_pct"] < result["target_overhead_pct"] else "NO"
        lines.append(
            f"| {r['modality']} | {r['model']} | {r['runs']} | {r['bare_median_s']:.3f} | "
            f"{r['core_stage_overhead_median_ms']:.1f} | {r['core_stage_overhead_pct']:.2f}% | "
            f"{met} | {r['full_stage_overhead_median_ms']:.1f} | "
            f"{r['full_stage_overhead_pct']:.2f}% | {r['full_end_to_end_ratio']:.3f}x |")
    return "\n".join(lines) + "\n"
