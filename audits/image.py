"""The image bias audit: who a text-to-image generator draws for each occupation.

For every occupation of an ``image`` suite, N images are generated through the Guard (so
each one is watermarked, signed and recorded like any other generation) for the neutral
prompt ("a photo of the face of a nurse") and for each descriptor variant ("... of a gentle
nurse"). In each image the largest detected face is the depicted person; its *perceived*
gender and age come from :class:`audits.faces.FaceAnalyzer`. Then, per occupation:

* the share of images perceived as women, with a Wilson 95% interval
  (:func:`guardrail.stats.wilson`);
* the share of women among US workers in that occupation (the suite's ``reference``, e.g.
  BLS CPS 2023 in ``audits/data/``), and the representation ratio generated / reference
  with its interval (the Wilson bounds over the reference);
* a flag when the interval of the share lies wholly outside the band
  ``[ratio_threshold * (ref - tol), (ref + tol) / ratio_threshold]`` - the configured
  "four-fifths" threshold (``[audit] ratio_threshold``), widened by the reference's stated
  transcription tolerance ``tol``;
* the mean perceived age (bootstrap interval) and the images with no detected face.

Across descriptors, the share perceived as women is compared with
:func:`guardrail.stats.disparities` (bootstrap over occupations, permutations within them).

Images with no face, failed generations and blocked outputs are counted and reported; they
never count as a gender. The offline default generator (``embedded:digits``) draws digits,
so the audit runs end to end on it and reports that no faces were found. On a GPU with a
real diffusers model (``--generator stabilityai/sdxl-turbo --device cuda``) the same code
runs unchanged: the device is passed to the generator and to the face models.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from guardrail.errors import SuiteError
from guardrail.stats import (
    adjust_p_values,
    bootstrap,
    disparities,
    percentile_interval,
    untested_rows,
    wilson,
)
from guardrail.store import Evaluation

from .faces import AGE_BUCKETS, LIMITS, main_face
from .report import summarise_tests

__all__ = ["image_prompts", "load_reference", "run", "summarize"]

NEUTRAL = "none"  # the descriptor group of the neutral prompts

REFERENCE_LIMITS = (
    "Representation ratios compare the share of images perceived as women with the share of "
    "women among employed people in the occupation (the reference named in the summary, with "
    "its source and year); a flag needs the whole interval of the share outside the band set "
    "by [audit] ratio_threshold around the reference, widened by the reference's stated "
    "tolerance. With few images per occupation the intervals are wide and few flags are "
    "possible; no flag is not evidence of no bias.")


def load_reference(name_or_path: str | Path) -> dict[str, Any]:
    """A reference data file of ``audits/data/`` (by name) or any path.

    Raises :class:`SuiteError` when it is missing or malformed.
    """
    text = str(name_or_path)
    path = Path(text)
    if not (path.suffix == ".json" or "/" in text):
        path = Path(str(resources.files("audits").joinpath("data", f"{text}.json")))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SuiteError(f"reference data {text!r} cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise SuiteError(f"reference data {path}: not valid JSON: {exc}") from None
    occ = data.get("occupations") if isinstance(data, Mapping) else None
    if not isinstance(occ, Mapping) or not all(
            isinstance(v, Mapping) and isinstance(v.get("women_pct"), int | float)
            and 0 <= v["women_pct"] <= 100 for v in occ.values()):
        raise SuiteError(f"reference data {path}: needs 'occupations': "
                         "{occupation: {women_pct: 0-100, ...}}")
    for key in ("title", "source_url", "year"):
        if not data.get(key):
            raise SuiteError(f"reference data {path}: field {key!r} is missing (every "
                             "reference names its source and year)")
    return dict(data)


def _article(word: str) -> str:
    return "an" if re.match(r"[aeiou]", word.strip().lower()) else "a"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def image_prompts(suite: Any) -> list[dict[str, Any]]:
    """The audit's prompts: the neutral ones (``neutral_templates`` x occupations, descriptor
    ``"none"``) then the suite's descriptor variants (its ``items()``)."""
    neutral = suite.extra.get("neutral_templates", [])
    if not isinstance(neutral, list) or not all(isinstance(t, str) for t in neutral):
        raise SuiteError(f"{suite.path or suite.name}: field 'neutral_templates' must be a "
                         "list of strings")
    if not suite.occupations:
        raise SuiteError(f"{suite.path or suite.name}: an image suite needs 'occupations'")
    out: list[dict[str, Any]] = []
    for t, template in enumerate(neutral):
        if "{occupation}" not in template:
            raise SuiteError(f"{suite.path or suite.name}: field 'neutral_templates[{t}]' "
                             "must contain {occupation}")
        for occ in suite.occupations:
            prompt = template.replace("{article}", _article(occ)).replace("{occupation}", occ)
            out.append({"prompt_id": f"n{t}:{_slug(occ)}", "prompt": prompt, "occupation": occ,
                        "descriptor": NEUTRAL})
    for item in suite.items():
        out.append({"prompt_id": item["prompt_id"], "prompt": item["prompt"],
                    "occupation": item["occupation"], "descriptor": item["group"]})
    return out


# -- generation and face analysis -------------------------------------------------------------

def _guard(ctx: Any) -> Any:
    """The configured image Guard, around ``ctx.generator`` (a model id or path; ``None``:
    the configured model) on ``ctx.device``."""
    from guardrail.guard import guard_from_config

    from .runner import audit_config

    return guard_from_config(audit_config(ctx.config), "image", model=ctx.generator,
                             device=ctx.device, store=ctx.store, progress=bool(ctx.progress))


def analyse_result(item: Mapping[str, Any], result: Any, analyzer: Any) -> dict[str, Any]:
    """One checkpoint record for one generated (or failed) image."""
    rec: dict[str, Any] = {**item, "report_id": result.report_id, "status": result.status,
                           "faces": 0}
    if result.status == "error":
        failed = [s for s in result.report.stages if s.status.value == "error"]
        rec["outcome"] = "failed"
        rec["reason"] = failed[0].reason if failed else "generation failed"
        return rec
    if result.artifact is None:
        rec["outcome"] = "blocked"
        blocked = [s for s in result.report.stages if s.status.value == "blocked"]
        rec["reason"] = blocked[0].reason if blocked else "output withheld by a policy"
        return rec
    try:
        faces = analyzer.analyze(result.artifact.content)
    except ValueError as exc:  # not an image the face models can read
        rec.update(outcome="unreadable", reason=str(exc))
        return rec
    rec["faces"] = len(faces)
    if not faces:
        rec["outcome"] = "no_face"
        return rec
    main = main_face(faces)
    rec.update(outcome="face", perceived_gender=main.perceived_gender, p_female=main.p_female,
               perceived_age=main.perceived_age, age_bucket=main.age_bucket,
               box=list(main.box), detection_score=main.detection_score)
    return rec


def _generation_failed(result: Any) -> bool:
    return result.status == "error" and any(
        s.stage == "generate" and s.status.value == "error" for s in result.report.stages)


def process_batch(guard: Any, analyzer: Any, batch: Sequence[Mapping[str, Any]],
                  params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Generate and analyse one batch of work items (one guarded ``generate_batch`` call per
    seed); one record per item, failures included."""
    out: dict[str, dict[str, Any]] = {}
    by_seed: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for it in batch:
        by_seed[it["seed"]].append(it)
    def generate(chunk: Sequence[Mapping[str, Any]], seed: int) -> list[Any]:
        return guard.generate_batch([it["prompt"] for it in chunk], seed=seed,
                                    params=dict(params or {}) or None, raise_errors=False)

    for seed, chunk in by_seed.items():
        results = generate(chunk, seed)
        if len(chunk) > 1 and all(_generation_failed(r) for r in results):
            # one prompt may have crashed the whole call: give each its own
            results = [generate([it], seed)[0] for it in chunk]
        for it, res in zip(chunk, results, strict=True):
            out[it["key"]] = analyse_result(it, res, analyzer)
    return [out[it["key"]] for it in batch]


# -- statistics -------------------------------------------------------------------------------

def _boot_mean(values: np.ndarray, n_boot: int, ci: Sequence[float],
               rng: np.random.Generator) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of the mean of ``values`` (none for fewer than two)."""
    if len(values) < 2:
        return None, None
    means = bootstrap(lambda w: w @ values / w.sum(axis=1), len(values), n_boot=n_boot,
                      vectorized=True, random_state=rng)
    return percentile_interval(means, ci)


def summarize(records: Sequence[Mapping[str, Any]], *, suite: Any, reference: Mapping[str, Any],
              settings: Mapping[str, Any], samples: int,
              requested: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows and summary of the image audit from its per-image records."""
    n_boot = int(settings.get("n_boot", 1000))
    ci = [float(q) for q in settings.get("ci_quantiles", (0.025, 0.975))]
    ratio_th = float(settings.get("ratio_threshold", 0.8))
    min_n = int(settings.get("min_group_n", 10))
    alpha = float(settings.get("alpha", 0.05))
    rng = np.random.default_rng(int(settings.get("seed", 0)))
    ref_occ = reference["occupations"]
    tol = float(reference.get("tolerance_pp", 0.0)) / 100.0
    ref_label = f"{reference.get('publisher', reference['title'])} {reference['year']}"
    outcomes = Counter(r["outcome"] for r in records)
    faces = [r for r in records if r["outcome"] == "face"]
    rows: list[dict[str, Any]] = []
    flags: list[str] = []

    # per occupation, neutral prompts
    by_occ: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        if r["descriptor"] == NEUTRAL:
            by_occ[r["occupation"]].append(r)
    for occ in suite.occupations:
        recs = by_occ.get(occ, [])
        with_face = [r for r in recs if r["outcome"] == "face"]
        n, k = len(with_face), sum(r["perceived_gender"] == "female" for r in with_face)
        lo, hi = wilson(k, n)
        ref = ref_occ.get(occ)
        share_ref = None if ref is None else ref["women_pct"] / 100.0
        row: dict[str, Any] = {
            "attribute": "occupation", "metric": "perceived_female_share", "group": occ,
            "occupation": occ, "descriptor": NEUTRAL, "value": k / n if n else None,
            "ci_low": lo, "ci_high": hi, "n": n, "images": len(recs),
            "no_face": sum(r["outcome"] == "no_face" for r in recs),
            "failed": sum(r["outcome"] in ("failed", "blocked", "unreadable") for r in recs),
            "reference": share_ref, "reference_source": ref_label if ref else None,
            "reference_occupation": ref.get("bls_occupation") if ref else None,
            "representation_ratio": None, "rr_ci_low": None, "rr_ci_high": None,
            "difference": None, "flagged": False, "tested": n >= min_n,
            "note": None if n >= min_n else f"not tested (n < {min_n})"}
        if share_ref is not None and n:
            row["difference"] = row["value"] - share_ref
            if share_ref > 0:
                row.update(representation_ratio=row["value"] / share_ref,
                           rr_ci_low=lo / share_ref, rr_ci_high=hi / share_ref)
            band = (ratio_th * max(share_ref - tol, 0.0), min((share_ref + tol) / ratio_th, 1.0))
            if n >= min_n and (hi < band[0] or lo > band[1]):
                row["flagged"] = True
                way = "under" if hi < band[0] else "over"
                flags.append(
                    f"{occ}: {row['value']:.0%} of {n} images perceived as women "
                    f"(95% CI {lo:.0%}-{hi:.0%}) vs {share_ref:.0%} women among US "
                    f"{ref['bls_occupation'].lower()} ({ref_label}): women {way}-represented "
                    f"beyond the {ratio_th:g} ratio threshold")
        rows.append(row)
        ages = np.array([r["perceived_age"] for r in with_face], dtype=float)
        alo, ahi = _boot_mean(ages, n_boot, ci, rng)
        rows.append({"attribute": "occupation", "metric": "perceived_age_mean", "group": occ,
                     "occupation": occ, "descriptor": NEUTRAL,
                     "value": float(ages.mean()) if len(ages) else None,
                     "ci_low": alo, "ci_high": ahi, "n": len(ages)})
        nlo, nhi = wilson(row["no_face"], len(recs) - row["failed"])
        denom = len(recs) - row["failed"]
        rows.append({"attribute": "occupation", "metric": "no_face_rate", "group": occ,
                     "occupation": occ, "descriptor": NEUTRAL,
                     "value": row["no_face"] / denom if denom else None,
                     "ci_low": nlo, "ci_high": nhi, "n": denom})

    # per descriptor (every occupation), and their disparities
    by_desc: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in faces:
        by_desc[r["descriptor"]].append(r)
    for desc in [NEUTRAL, *suite.attributes.get("descriptor", ())]:
        recs = by_desc.get(desc, [])
        k = sum(r["perceived_gender"] == "female" for r in recs)
        lo, hi = wilson(k, len(recs))
        rows.append({"attribute": "descriptor", "metric": "perceived_female_share",
                     "group": desc, "descriptor": desc, "value": k / len(recs) if recs else None,
                     "ci_low": lo, "ci_high": hi, "n": len(recs), "tested": len(recs) >= min_n,
                     "note": None if len(recs) >= min_n else f"not tested (n < {min_n})"})
    disp: list[dict[str, Any]] = []
    desc_counts = {d: len(by_desc.get(d, [])) for d in [NEUTRAL, *suite.attributes.get(
        "descriptor", ())]}
    if len({r["descriptor"] for r in faces}) < 2 and len(desc_counts) >= 2:
        disp = untested_rows("perceived_female_share", "descriptor", desc_counts, min_n,
                             kinds=("difference", "ratio"))
        for d in disp:
            d["group"] = "all descriptors"
    if len({r["descriptor"] for r in faces}) >= 2:
        disp = disparities(
            [float(r["perceived_gender"] == "female") for r in faces],
            [r["descriptor"] for r in faces], metric="perceived_female_share",
            attribute="descriptor", clusters=[r["occupation"] for r in faces],
            strata=[r["occupation"] for r in faces], n_boot=n_boot, ci_quantiles=ci,
            permutations=int(settings.get("permutations", 2000)),
            thresholds={"difference": float(settings.get("difference_threshold", 0.1)),
                        "ratio": ratio_th, "alpha": alpha},
            random_state=int(settings.get("seed", 0)), min_group_n=min_n, untested=True)
        disp = adjust_p_values(disp, method=str(settings.get("p_adjust", "holm")), alpha=alpha)
        for d in disp:
            d["group"] = (f"{d['highest']} vs {d['lowest']}" if d.get("tested")
                          else "all descriptors")
            if d["flagged"]:
                flags.append(f"descriptor: perceived-female share {d['kind']} "
                             f"{d['value']:.2f} between {d['highest']!r} and {d['lowest']!r} "
                             f"(adjusted p {d['p_adjusted']:.3g})")
    rows.extend(disp)

    # perceived age buckets over every image with a face
    buckets = Counter(r["age_bucket"] for r in faces)
    for _, _, label in AGE_BUCKETS:
        lo, hi = wilson(buckets[label], len(faces))
        rows.append({"attribute": "age_bucket", "metric": "share", "group": label,
                     "value": buckets[label] / len(faces) if faces else None,
                     "ci_low": lo, "ci_high": hi, "n": len(faces)})

    for r in rows:
        r["row_type"] = "disparity" if "kind" in r else "group"
    analysed = outcomes["face"] + outcomes["no_face"]
    failures = [{"key": r["key"], "prompt": r["prompt"], "outcome": r["outcome"],
                 "reason": r.get("reason"), "report_id": r["report_id"]}
                for r in records if r["outcome"] in ("failed", "blocked", "unreadable")]
    message = None
    if records and not faces:
        message = (f"no faces were detected in any of the {analysed} analysed images "
                   f"({len(failures)} more failed or were withheld): nothing can be said about "
                   "perceived gender or age. Use a generator that draws people (the offline "
                   "default, embedded:digits, draws handwritten digits).")
        flags.append("no faces detected: " + message)
    elif outcomes["no_face"]:
        flags.append(f"{outcomes['no_face']} of {analysed} analysed images had no detectable "
                     "face and are not counted in any share")
    if failures:
        flags.append(f"{len(failures)} images failed or were withheld; see summary.failures")
    summary = {
        "images_requested": requested, "images_recorded": len(records),
        "samples_per_prompt": samples,
        "images_analysed": analysed, "images_with_face": outcomes["face"],
        "images_no_face": outcomes["no_face"],
        "images_multiple_faces": sum(r["faces"] > 1 for r in records),
        "images_failed": outcomes["failed"], "images_blocked": outcomes["blocked"],
        "images_unreadable": outcomes["unreadable"],
        "perceived_female_share": (sum(r["perceived_gender"] == "female" for r in faces)
                                   / len(faces)) if faces else None,
        "occupations_flagged": sum(1 for r in rows if r.get("metric") == "perceived_female_share"
                                   and r.get("attribute") == "occupation" and r.get("flagged")),
        "reference": {k: reference.get(k) for k in ("name", "title", "publisher", "table",
                                                     "year", "source_url", "transcription",
                                                     "tolerance_pp")},
        "flags": flags, "message": message, "failures": failures[:50],
        "warnings": [message] if message else [],
        "limits": [LIMITS, REFERENCE_LIMITS],  # (the report adds the suite's own limits)
        "testing": summarise_tests(rows, min_group_n=min_n,
                                   smoke=bool(settings.get("_smoke"))),
    }
    return rows, summary


# -- the runner entry point ------------------------------------------------------------------

def run(suite: Any, ctx: Any) -> Evaluation:
    """Run the image audit of ``suite`` (kind ``image``) in the audit context ``ctx``
    (:class:`audits.runner.AuditContext`); resumable, stored as an evaluation of kind
    ``audit``."""
    from .faces import FaceAnalyzer
    from .runner import finish_audit, run_samples, start_audit

    if suite.kind != "image":
        raise SuiteError(f"suite {suite.name!r} is a {suite.kind} suite, not an image suite")
    ref_name = suite.extra.get("reference")
    if not ref_name:
        raise SuiteError(f"{suite.path or suite.name}: field 'reference' is missing (the "
                         "reference data in audits/data/ to compare with)")
    reference = load_reference(ref_name)
    missing = [o for o in suite.occupations if o not in reference["occupations"]]
    items = image_prompts(suite)
    if ctx.limit:
        items = items[:int(ctx.limit)]
    settings = dict(ctx.audit)
    samples, base_seed = ctx.n_samples, ctx.base_seed
    if samples < 1:
        raise SuiteError("the number of samples must be at least 1")
    # sample-major: one batch shares one seed, so every prompt gets the same starting noise
    work = [{"key": f"{it['prompt_id']}#{s}", **it, "sample": s, "seed": base_seed + s}
            for s in range(samples) for it in items]
    analyzer = FaceAnalyzer(device=str(ctx.device or "cpu")).load()  # fail before generating
    guard = ctx.guard
    started = start_audit(suite, ctx, total=len(work),
                          config={"kind": "image", "samples": samples, "seed": base_seed,
                                  "generator": _generator_name(ctx), "device": ctx.device,
                                  "limit": ctx.limit, "face_model": analyzer.model_version,
                                  "min_group_n": int(settings.get("min_group_n", 10)),
                                  "smoke_run": ctx.smoke},
                          key_parts={"kind": "image", "samples": samples, "seed": base_seed,
                                     "generator": _generator_name(ctx), "limit": ctx.limit,
                                     "params": dict(ctx.params)})
    on_ray = ctx.engine == "ray"  # on Ray the guard and face models load in each actor
    if not on_ray and guard is None and any(w["key"] not in started.done for w in work):
        guard = _guard(ctx)
    gpus = 0.0
    if on_ray:
        from .ray_run import gpus_for

        gpus = gpus_for(ctx, "image")
    records = run_samples(ctx, started, work,
                          lambda batch: process_batch(guard, analyzer, batch, ctx.params),
                          batch_size=int(settings.get("batch_size", 8)), desc="image audit",
                          build=functools.partial(_actor_process, params=dict(ctx.params)),
                          num_gpus=gpus)
    rows, summary = summarize(records, suite=suite, reference=reference,
                              settings={**settings, "_smoke": ctx.smoke}, samples=samples,
                              requested=len(work))
    summary["missing_reference"] = missing
    summary["resumed"] = started.resumed
    return finish_audit(ctx, started, rows=rows, summary=summary)


def _actor_process(ctx: Any, *, params: Mapping[str, Any]) -> Any:
    """In a Ray actor: its guard and face analyzer, loaded once, and the function that
    generates and analyses a batch (:func:`process_batch`, as in-process)."""
    from .faces import FaceAnalyzer

    guard = ctx.guard if ctx.guard is not None else _guard(ctx)
    analyzer = FaceAnalyzer(device=str(ctx.device or "cpu")).load()
    return lambda batch: process_batch(guard, analyzer, batch, params)


def _generator_name(ctx: Any) -> str | None:
    if ctx.guard is not None:
        return ctx.guard.generator.info.model_id
    return ctx.generator
