"""Benchmarks: measured side by side in one run, reported as ratios.

``guardrail benchmark --out docs/BENCHMARKS.md`` measures, for each modality on the
embedded defaults, the bare generator call and the same call through the guard
(interleaved, same prompt and seed), and reports the guard's overhead both ways:

* end to end: median guarded time / median bare time;
* by stage: the median time the guard spends outside the generator (all stage durations
  except ``generate``) as a share of the median generation time. This is the precise
  number; the end-to-end ratio also carries the generator's own run-to-run noise.

Each benchmark writes its own section of the markdown file between markers, so sections
written by other benchmarks are kept.
"""

from __future__ import annotations

import platform
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ._types import Modality
from .config import Config
from .store import ReportStore

__all__ = ["run_benchmark", "write_section"]

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


def machine_line() -> str:
    import os

    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def write_section(path: Path, name: str, markdown: str) -> None:
    """Replace (or append) the section ``name`` of a markdown file."""
    start, end = f"<!-- section:{name}:start -->", f"<!-- section:{name}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else (
        "# Benchmarks\n\nWritten by `guardrail benchmark` and the other benchmark commands; "
        "each section says how it was measured. Absolute times on a shared 2-core machine "
        "move from run to run; the ratios, measured side by side in one run, are the numbers "
        "to compare.\n")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + block + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    from .media import atomic_write

    atomic_write(path, text.encode("utf-8"))


def _bench_modality(cfg: Config, modality: Modality, runs: int, store: ReportStore,
                    workdir: Path, progress: bool) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from .factory import generator_from_config, guard_stages
    from .pipeline import Guard

    t0 = time.perf_counter()
    gen = generator_from_config(cfg, modality, progress=False)
    load_s = time.perf_counter() - t0
    core = Guard(gen, store=store, config=cfg)
    full = Guard(gen, store=store, config=cfg, stages=guard_stages(cfg, gen))
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


def run_benchmark(cfg: Config, *, modalities: Sequence[Modality], runs: int = 5,
                  out: Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Measure the guard's overhead per modality; optionally write a markdown section."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="guardrail-bench-") as tmp:
        store = ReportStore(f"sqlite:///{tmp}/bench.db")
        try:
            for modality in modalities:
                rows.append(_bench_modality(cfg, modality, runs, store, Path(tmp), progress))
        finally:
            store.close()
    result = {
        "benchmark": "guard-overhead",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_line(),
        "target_overhead_pct": 5.0,
        "rows": rows,
    }
    md = _markdown(result)
    result["markdown"] = md
    if out is not None:
        write_section(out, "guard-overhead", md)
    return result


def run_text_watermark_speed(cfg: Config, *, runs: int = 3, new_tokens: int = 64,
                             progress: bool = True) -> dict[str, Any]:
    """Tokens per second with and without the text watermark: same model, same prompts,
    same seeds, interleaved."""
    from tqdm.auto import tqdm

    from ._generator import GenerationHooks
    from .factory import generator_from_config, watermarker_from_config

    gen = generator_from_config(cfg, Modality.TEXT, progress=False)
    out: dict[str, Any] = {"benchmark": "text-watermark-speed", "machine": machine_line(),
                           "date": datetime.now(UTC).isoformat(timespec="seconds"),
                           "new_tokens": new_tokens, "runs": runs, "schemes": []}
    prompts = ["Write a few paragraphs about the history of maps."] * 4
    params = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens}
    gen.generate(prompts[:1], seed=0, params={"max_new_tokens": 4})  # warm-up
    for scheme in ("kgw", "synthid"):
        wm = watermarker_from_config(cfg, Modality.TEXT, generator=gen, scheme=scheme)
        hooks = GenerationHooks(watermarking_config=wm.generation_config())
        plain_s, marked_s = [], []
        for i in tqdm(range(runs), desc=f"text watermark speed ({scheme})", disable=not progress):
            t = time.perf_counter()
            gen.generate(prompts, seed=i, params=params)
            plain_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            gen.generate(prompts, seed=i, params=params, hooks=hooks)
            marked_s.append(time.perf_counter() - t)
        n_tok = len(prompts) * new_tokens
        plain_tps = n_tok / statistics.median(plain_s)
        marked_tps = n_tok / statistics.median(marked_s)
        out["schemes"].append({"scheme": scheme, "tokens_per_s_plain": round(plain_tps, 2),
                               "tokens_per_s_marked": round(marked_tps, 2),
                               "ratio": round(marked_tps / plain_tps, 4)})
    lines = ["## Text watermark speed (generation with vs without the watermark)", "",
             f"Measured {out['date']} on {out['machine']}: {len(prompts)} prompts x "
             f"{new_tokens} new tokens with the embedded SmolLM2, median of {runs} interleaved "
             "runs, same seeds. Target: watermarked >= 0.97x the tokens/s of unwatermarked.", "",
             "| scheme | tokens/s without | tokens/s with | ratio | target met |",
             "|---|---|---|---|---|"]
    for r in out["schemes"]:
        lines.append(f"| {r['scheme']} | {r['tokens_per_s_plain']:.1f} | "
                     f"{r['tokens_per_s_marked']:.1f} | {r['ratio']:.3f}x | "
                     f"{'yes' if r['ratio'] >= 0.97 else 'NO'} |")
    out["markdown"] = "\n".join(lines) + "\n"
    return out


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
        "embedding, self-check on the encoded file, C2PA signing and verification). Stage overhead = median time in every stage except `generate`, as a "
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


def run_verify_benchmark(cfg: Config, *, runs: int = 10, size: int = 1024) -> dict[str, Any]:
    """``guardrail verify`` on a ``size`` x ``size`` JPEG: with every configured image
    detector on, and without detectors, side by side (warm: models loaded once, as in a
    verification service; the first-call load time is reported separately).

    Two files: an unsigned photo-like JPEG (credentials absent: the store is searched
    through the watermark) and the same image watermarked and signed (credentials trusted).
    """
    import statistics
    import tempfile

    from .detectors import registry
    from .keys import init_keys
    from .provenance.bench import test_image
    from .store import ReportStore
    from .verify import verify_file

    init_keys(cfg)
    detectors = registry.build_all(cfg, [Modality.IMAGE])
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, ReportStore(cfg.store_url) as store:
        plain = Path(tmp) / "plain.jpg"
        plain.write_bytes(test_image(size))
        signed = Path(tmp) / "signed.jpg"
        _watermark_and_sign(cfg, plain, signed)
        t0 = time.perf_counter()
        first = verify_file(plain, cfg, store=store, detectors=detectors)
        load_ms = (time.perf_counter() - t0) * 1000
        for label, path in (("unsigned JPEG", plain), ("watermarked + signed JPEG", signed)):
            timings: dict[str, list[float]] = {"with": [], "without": []}
            for _ in range(runs):
                for mode, dets in (("with", detectors), ("without", [])):
                    t = time.perf_counter()
                    res = verify_file(path, cfg, store=store, detectors=dets)
                    timings[mode].append((time.perf_counter() - t) * 1000)
                    if mode == "with":
                        d = res.to_dict()
            ran = [x for x in d.get("detectors") or [] if x.get("probability") is not None]
            w, wo = statistics.median(timings["with"]), statistics.median(timings["without"])
            rows.append({"file": label, "with_detectors_ms": round(w, 1),
                         "without_detectors_ms": round(wo, 1), "ratio": round(w / wo, 2),
                         "detectors_ran": len(ran), "verdict": d["verdict"]["label"]})
    names = ", ".join(d.name for d in detectors) or "none"
    md = [f"`guardrail verify` on a {size}x{size} JPEG, median of {runs} warm runs, image "
          f"detectors: {names} (first call, loading the models: {load_ms:.0f} ms). Target: at "
          "most 500 ms with every detector on.", "", machine_line(), "",
          "| file | with detectors | without | ratio | detectors that ran | verdict |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['file']} | {r['with_detectors_ms']} ms | {r['without_detectors_ms']} ms"
                  f" | {r['ratio']}x | {r['detectors_ran']} | {r['verdict']} |")
    return {"rows": rows, "first_call_ms": round(load_ms, 1), "detectors": names,
            "first_verdict": first.to_dict()["verdict"]["label"], "markdown": "\n".join(md)}


def _watermark_and_sign(cfg: Config, src: Path, dst: Path) -> None:
    from .factory import watermarker_from_config
    from .media import decode, encode
    from .provenance.cli import cmd_sign

    art = decode(src.read_bytes(), name=src.name)
    wm = watermarker_from_config(cfg, Modality.IMAGE)
    marked = wm.embed(art, payload=0x1234)
    tmp = dst.with_suffix(".unsigned.jpg")
    tmp.write_bytes(encode(marked, "image/jpeg"))
    cmd_sign(cfg, input=tmp, output=dst, model_id="benchmark")
