"""The text bias audit: N continuations per counterfactual prompt, through the guard.

Every generation goes through a :class:`guardrail.Guard` (so each is recorded as a report,
with the prompt stored only as its keyed hash unless the operator opts in), in batches of
``audit.batch_size`` prompts with ``raise_errors=False``: a prompt that fails is recorded
(its report id and error) and counted, and the audit goes on. When a whole batch fails at
generation, its prompts are retried one by one, so one bad prompt does not cost the others.

Each continuation is scored (:mod:`audits.scorers`); per attribute and metric the audit
stores every group's value with a bootstrap interval and count, and the disparities between
groups with intervals, permutation p-values (labels shuffled within counterfactual sets),
Holm-adjusted p-values and flags.
"""

from __future__ import annotations

import functools
import time
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from guardrail.config import Config
from guardrail.stats import adjust_p_values, disparities, group_table, untested_rows
from guardrail.store import Evaluation

from .report import summarise_tests
from .runner import AuditContext, audit_config, finish_audit, run_samples, start_audit
from .scorers import LIMITS, TextScorer, clean_text
from .suites import Suite

__all__ = ["METRICS", "analyse", "build_guard", "run"]

#: metric name -> (score field, kind). "rate": a share of 0/1 values, tested as a difference
#: and a ratio; "score": a signed or continuous mean, tested as a difference only.
METRICS: dict[str, tuple[str, str]] = {
    "sentiment": ("sentiment", "score"),
    "negative_rate": ("negative", "rate"),
    "toxicity": ("toxicity", "score"),
    "toxic_rate": ("toxic", "rate"),
    "refusal_rate": ("refusal", "rate"),
    "gendered_term_rate": ("gendered", "rate"),
    "masculine_term_rate": ("masculine", "rate"),
    "feminine_term_rate": ("feminine", "rate"),
    "guard_intervention_rate": ("intervened", "rate"),
}
#: (attribute, metric) pairs whose disparities are expected by construction, not tested
EXPECTED = {("gender", m) for m in ("gendered_term_rate", "masculine_term_rate",
                                    "feminine_term_rate")}


def build_guard(config: Config, store: Any, *, model: str | None = None,
                device: str | None = None) -> Any:
    """The audit's guard around the configured text generator (``block`` policies of the
    output stages as ``flag`` when ``audit.block_as_flag``), whose generator decodes
    ``audit.batch_size`` prompts at a time (a 135M model on a CPU gains from wide batches)."""
    from guardrail.guard import guard_from_config

    guard = guard_from_config(audit_config(config), "text", model=model, device=device,
                              store=store, progress=False)
    if hasattr(guard.generator, "batch_size"):
        guard.generator.batch_size = max(int(guard.generator.batch_size),
                                         int(config.section("audit")["batch_size"]))
    return guard


def _seed(base: int, key: str) -> int:
    return (base * 1_000_003 + zlib.crc32(key.encode())) % (2**31 - 1)


def _record(item: Mapping[str, Any], result: Any, scores: dict[str, Any] | None,
            text: str | None, keep_texts: bool, retried: bool = False) -> dict[str, Any]:
    rec = {k: item[k] for k in ("key", "prompt_id", "set_id", "attribute", "group",
                                "occupation", "template", "sample")}
    rec.update(report_id=result.report_id, status=result.status,
               error=result.report.error, scores=scores)
    if result.status != "error":
        rec["intervened"] = int(result.status in ("flagged", "blocked"))
        rec["intervened_by"] = [f"{s.stage}:{s.status.value}: {s.reason}"
                                for s in result.report.stages if _intervened(s)]
    if keep_texts and text is not None:
        rec["text"] = text
    if retried:
        rec["retried_alone"] = True
    return rec


def _intervened(stage: Any) -> bool:
    """A stage record that made (or could make) the guard flag or block: not ok, and not
    merely unconfigured or not run."""
    reason = stage.reason or ""
    return stage.status.value != "ok" and not (
        stage.status.value == "skipped" and reason.startswith(("not configured", "not run")))


def _make_process(guard: Any, scorer: TextScorer, params: Mapping[str, Any], base_seed: int,
                  keep_texts: bool) -> Any:
    def generate(batch: Sequence[Mapping[str, Any]]) -> list[Any]:
        return guard.generate_batch([w["prompt"] for w in batch],
                                    seed=_seed(base_seed, batch[0]["key"]), params=params,
                                    raise_errors=False)

    def gen_failed(result: Any) -> bool:
        return result.status == "error" and any(
            s.stage == "generate" and s.status.value == "error" for s in result.report.stages)

    def process(batch: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        results = generate(batch)
        retried = len(batch) > 1 and all(gen_failed(r) for r in results)
        if retried:  # isolate the prompt(s) that make the generator fail
            results = [generate([w])[0] for w in batch]
        # the visible text: without the embedded C2PA wrapper (~17 KB of invisible characters)
        texts = [clean_text(str(r.artifact.content)) if r.artifact is not None else None
                 for r in results]
        scored = [i for i, t in enumerate(texts) if t is not None]
        scores = dict(zip(scored, scorer.score([texts[i] for i in scored]), strict=True))
        return [_record(w, r, scores.get(i), texts[i], keep_texts, retried)
                for i, (w, r) in enumerate(zip(batch, results, strict=True))]

    return process


def _guard(ctx: AuditContext) -> Any:
    """``ctx.guard``, or the audit's guard built from ``ctx``."""
    return ctx.guard if ctx.guard is not None else build_guard(
        ctx.config, ctx.store, model=ctx.generator, device=ctx.device)


def _info(guard: Any) -> dict[str, Any]:
    info = guard.generator.info
    return {"model_id": info.model_id, "revision": info.revision, "device": info.device}


def _generator_info(ctx: AuditContext) -> dict[str, Any]:
    """In a Ray actor: the identity of the generator ``ctx`` loads (for the resume key)."""
    guard = _guard(ctx)
    try:
        return _info(guard)
    finally:
        if ctx.guard is None:
            guard.close()


def _actor_process(ctx: AuditContext, *, params: Mapping[str, Any], base_seed: int,
                   keep_texts: bool) -> Any:
    """In a Ray actor: its guard and scorer, loaded once, and the function that generates
    and scores a batch (the same as in-process)."""
    return _make_process(_guard(ctx), TextScorer.load(), params, base_seed, keep_texts)


def run(suite: Suite, ctx: AuditContext) -> Evaluation:
    """Run a text suite; returns the stored evaluation (kind ``audit``)."""
    audit = ctx.audit
    scorer = TextScorer.load()  # a missing package fails before a model is loaded
    items = suite.items()[: ctx.limit] if ctx.limit else suite.items()
    samples, base_seed = ctx.n_samples, ctx.base_seed
    params = {"max_new_tokens": int(audit["max_new_tokens"]), **dict(ctx.params)}
    work = [{**it, "key": f"{it['prompt_id']}#{s}", "sample": s}
            for s in range(samples) for it in items]
    on_ray = ctx.engine == "ray"
    if on_ray:  # the model loads in the actors; one of them says which model it is
        from .ray_run import gpus_for, probe

        gpus = gpus_for(ctx, "text")
        guard = None
        generator = probe(ctx, _generator_info, num_gpus=gpus)
    else:
        guard = _guard(ctx)
        generator = _info(guard)
    settings = {k: audit[k] for k in ("n_boot", "ci_quantiles", "bootstrap", "permutations",
                                      "alpha", "p_adjust", "min_group_n", "block_as_flag",
                                      "batch_size")}
    config = {"suite_name": suite.name, "suite_version": suite.version,
              "sources": [dict(s) for s in suite.sources], "generator": generator,
              "samples": samples, "seed": base_seed, "params": params, "limit": ctx.limit,
              "prompts": len(items), "store_prompts": ctx.config.store_prompts,
              "thresholds": {"difference": audit["difference_threshold"],
                             "ratio": audit["ratio_threshold"], "alpha": audit["alpha"]},
              "metrics": {m: kind for m, (_f, kind) in METRICS.items()},
              "smoke_run": ctx.smoke, **settings}
    key_parts = {"generator": generator, "samples": samples, "seed": base_seed,
                 "params": params, "limit": ctx.limit, "block_as_flag": audit["block_as_flag"],
                 **({"smoke_run": True} if ctx.smoke else {})}
    started = start_audit(suite, ctx, config=config, key_parts=key_parts, total=len(work))
    t0 = time.perf_counter()
    before = len(started.done)
    keep_texts = bool(audit["keep_texts"])
    process = None if guard is None else _make_process(guard, scorer, params, base_seed,
                                                       keep_texts)
    build = functools.partial(_actor_process, params=params, base_seed=base_seed,
                              keep_texts=keep_texts)
    try:
        records = run_samples(ctx, started, work, process, batch_size=int(audit["batch_size"]),
                              desc=f"audit {suite.name}", build=build,
                              num_gpus=gpus if on_ray else 0)
    finally:
        if ctx.guard is None and guard is not None:
            guard.close()
    wall = time.perf_counter() - t0
    rows, summary = analyse(records, audit, seed=base_seed, smoke=ctx.smoke)
    generated_now = len(records) - before
    summary.update(generations=len(work), resumed=started.resumed,
                   resumed_from=before, generated_this_run=generated_now,
                   wall_time_s=round(wall, 1),
                   generations_per_s=round(generated_now / wall, 3) if wall > 0 else None,
                   limits=list(LIMITS))
    return finish_audit(ctx, started, rows=rows, summary=summary)


def analyse(records: Sequence[Mapping[str, Any]], audit: Mapping[str, Any], *,
            seed: int = 0, smoke: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Group rows, disparity rows and the summary (flags, counts, failures, what was
    tested: :func:`audits.report.summarise_tests`) of the records; ``smoke`` marks a smoke
    run (it checks the pipeline and tests nothing)."""
    thresholds = {"difference": audit["difference_threshold"], "ratio": audit["ratio_threshold"],
                  "alpha": audit["alpha"]}
    common = {"n_boot": int(audit["n_boot"]), "ci_quantiles": list(audit["ci_quantiles"]),
              "engine": audit["bootstrap"]}
    min_n = int(audit["min_group_n"])
    scored = [r for r in records if r.get("scores") is not None]
    answered = [r for r in records if r.get("status") not in (None, "error")]
    group_rows: list[dict[str, Any]] = []
    disp_rows: list[dict[str, Any]] = []
    attributes = list(dict.fromkeys(r["attribute"] for r in records))
    for a_i, attribute in enumerate(attributes):
        recs = [r for r in answered if r["attribute"] == attribute]
        every_group = sorted({r["group"] for r in records if r["attribute"] == attribute})
        groups = [r["group"] for r in recs]
        sets = [r["set_id"] for r in recs]
        clusters = sets if audit["bootstrap"] == "numpy" else None
        for m_i, (metric, (fieldname, kind)) in enumerate(METRICS.items()):
            values = np.array([_value(r, fieldname) for r in recs], dtype=float)
            rs = seed * 7919 + a_i * 101 + m_i
            expected = (attribute, metric) in EXPECTED
            rows = _group_rows(values, groups, metric, attribute, kind, rs, clusters,
                               common) if recs else []
            seen = {r["group"] for r in rows}
            rows += [{"attribute": attribute, "metric": metric, "group": g, "value": None,
                      "ci_low": None, "ci_high": None, "n": 0} for g in every_group
                     if g not in seen]  # every sample of the group failed or was unscored
            for row in rows:
                if not expected:  # groups of a tested comparison: large enough or not
                    row.update(tested=row["n"] >= min_n,
                               note=None if row["n"] >= min_n else f"not tested (n < {min_n})")
                group_rows.append({"row_type": "group", **row})
            if expected:
                continue
            kinds = ("difference", "ratio") if kind == "rate" else ("difference",)
            counts = {r["group"]: r["n"] for r in rows}
            found = disparities(values, groups, metric=metric, attribute=attribute,
                                permutations=int(audit["permutations"]), thresholds=thresholds,
                                random_state=rs + 1, clusters=clusters, strata=sets,
                                kinds=kinds, min_group_n=min_n, untested=True,
                                **common) if recs else []
            if not found or not found[0]["tested"]:  # with the groups that have no value
                found = untested_rows(metric, attribute, counts, min_n, kinds=kinds,
                                      thresholds=thresholds)
            disp_rows.extend({"row_type": "disparity", "group": None, **row} for row in found)
    disp_rows = adjust_p_values(disp_rows, method=audit["p_adjust"], alpha=audit["alpha"])
    flags = [_flag_text(d, audit) for d in disp_rows if d["flagged"]]
    warnings = []
    tests = len({(d["attribute"], d["metric"]) for d in disp_rows if d.get("tested")})
    floor = tests / (int(audit["permutations"]) + 1) if audit["p_adjust"] == "holm" else 0.0
    if floor > audit["alpha"]:
        warnings.append(f"with {audit['permutations']} permutations and {tests} tests the "
                        f"smallest possible adjusted p-value is {floor:.3g} > alpha "
                        f"{audit['alpha']}: nothing can be flagged; raise audit.permutations")
    failures = [r for r in records if r.get("status") == "error"]
    status = Counter(r.get("status") for r in records)
    summary: dict[str, Any] = {
        "flags": flags,
        "scored": len(scored),
        "failed": len(failures),
        "blocked": status.get("blocked", 0),
        "flagged": status.get("flagged", 0),
        "statuses": dict(status),
        "failures": [{k: r.get(k) for k in ("prompt_id", "sample", "group", "report_id", "error")}
                     for r in failures[:200]],
        "failures_by_group": dict(Counter(f"{r['attribute']}:{r['group']}" for r in failures)),
        "disparities_tested": sum(bool(d.get("tested")) for d in disp_rows),
        "disparities_not_tested": sum(not d.get("tested") for d in disp_rows),
        "disparities_flagged": len(flags),
        "warnings": warnings,
    }
    rows = group_rows + disp_rows
    summary["testing"] = summarise_tests(rows, min_group_n=min_n, smoke=smoke)
    if smoke:
        summary["smoke_run"] = True
    return rows, summary


def _group_rows(values: np.ndarray, groups: list[str], metric: str, attribute: str, kind: str,
                rs: int, clusters: Any, common: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every group's value with its interval: the percentile bootstrap (whole counterfactual
    sets resampled) for scores; for rates the Wilson score interval, widened to the
    bootstrap's where that is wider (the samples of one prompt are not independent)."""
    boot = group_table(values, groups, metric=metric, attribute=attribute, random_state=rs,
                       clusters=clusters, **common)
    if kind != "rate":
        return [{**r, "interval": "bootstrap"} for r in boot]
    wil = {r["group"]: r for r in group_table(values, groups, metric=metric,
                                              attribute=attribute, interval="wilson",
                                              ci_quantiles=common["ci_quantiles"])}
    out = []
    for r in boot:
        w = wil[r["group"]]
        lo = min(x for x in (w["ci_low"], r["ci_low"]) if x is not None) \
            if w["ci_low"] is not None else r["ci_low"]
        hi = max(x for x in (w["ci_high"], r["ci_high"]) if x is not None) \
            if w["ci_high"] is not None else r["ci_high"]
        widened = (lo, hi) != (w["ci_low"], w["ci_high"])
        out.append({**r, "ci_low": lo, "ci_high": hi,
                    "interval": "wilson+bootstrap" if widened else "wilson"})
    return out


def _value(rec: Mapping[str, Any], fieldname: str) -> float:
    if fieldname == "intervened":
        return float(rec.get("intervened", np.nan))
    scores = rec.get("scores")
    return float(scores.get(fieldname, np.nan)) if scores else np.nan


def _flag_text(d: Mapping[str, Any], audit: Mapping[str, Any]) -> str:
    ci = list(audit["ci_quantiles"])
    level = f"{(ci[-1] - ci[0]) * 100:.0f}%"
    rel = ">" if d["kind"] == "difference" else "<"
    counts = ", ".join(f"{g} n={n}" for g, n in d["groups"].items())
    return (f"{d['attribute']} / {d['metric']}: {d['kind']} {d['value']:.3f} {rel} "
            f"{d['threshold']} ({level} CI {_num(d['ci_low'])}..{_num(d['ci_high'])}; "
            f"highest {d['highest']}, lowest {d['lowest']}; p={_num(d['p_value'])}, "
            f"adjusted p={_num(d['p_adjusted'])}; {counts})")


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.3g}"
