"""Fairness of the safety layer itself: do watermark detection and the synthetic-media
detectors make more mistakes for some groups than for others?

A labelled evaluation set with a sensitive feature per item is scored by every configured
*scorer* - the watermark detector of the modality and each detector of
:func:`guardrail.detectors.build_all` - and, per scorer and group, the false-positive rate
(on content that is not watermarked / not generated) and the false-negative rate (on content
that is) are computed with fairlearn's ``MetricFrame`` (``false_positive_rate``,
``false_negative_rate``) with exact Clopper-Pearson intervals (:func:`guardrail.stats.group_table`:
a rate of 0 of 40 still has an upper bound). Their between-group differences get bootstrap
intervals and permutation p-values (labels shuffled within the true class), and fairlearn's
``equalized_odds_difference`` - the larger of the two differences - is reported with a
bootstrap interval (:func:`guardrail.stats.equalized_odds`).

Two parts, each optional in a ``safety`` suite (the items: :mod:`audits.safety_items`; the
scorers: :mod:`audits.safety_scorers`):

``text`` (sensitive feature: language)
    negatives: human-written text in each language (Debian's fortunes, :mod:`audits.languages`);
    positives: continuations of the suite's prompts for each language, generated through the
    text Guard with the generation-time watermark on (so every one is recorded).
``image`` (sensitive features: perceived gender and perceived age of the face)
    real photographs that ship offline (:func:`audits.faces.face_photos`, any ``photo_dirs``)
    in a few everyday variants (mirror, crop, resize, JPEG, exposure), the groups coming from
    :class:`audits.faces.FaceAnalyzer`; photos without a face form the group ``no face``. Every
    photo is scored as is (negative for both the watermark and the detectors) and with the
    image watermark embedded (positive for the watermark, still a real photo for detectors).

A scorer that cannot run on an item ("not performed": a missing calibration, too short a
text) is counted per scorer with its reason and left out of its rates - never counted as a
negative decision.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from guardrail.errors import SuiteError
from guardrail.stats import (
    adjust_p_values,
    disparities,
    equalized_odds,
    false_negative_rate,
    false_positive_rate,
    group_table,
)
from guardrail.store import Evaluation

from .faces import LIMITS as FACE_LIMITS
from .faces import main_face
from .languages import guess_language
from .report import summarise_tests
from .safety_items import IMAGE_VARIANTS, image_items, photos, text_items
from .safety_scorers import detector_scorers, watermark_scorer

__all__ = ["run", "summarize"]

NO_FACE = "no face"

LIMITS = (
    "Each rate is measured on the evaluation set the audit was given: human-written texts are "
    "fortune cookies (quotations, jokes, short stories) and the generated texts come from one "
    "model and a few prompts, so the rates describe that material, not every text in a "
    "language. The image groups come from a face classifier's perceived gender and age; with "
    "the photos that ship offline each group is one person in several variants, which tests "
    "the method, not the population: add labelled photo folders (the suite's photo_dirs) for "
    "a real measurement. A detector 'not performed' on an item is counted, never taken as a "
    "negative decision.")


# -- processing ------------------------------------------------------------------------------

def _artifact(modality: str, content: Any) -> Any:
    from guardrail._types import Artifact, GenerationMetadata, Modality

    return Artifact(modality=Modality.parse(modality), content=content,
                    metadata=GenerationMetadata(model_id="audit:evaluation-set"))


class _TextPart:
    def __init__(self, ctx: Any, params: Mapping[str, Any], keep_texts: bool) -> None:
        from .runner import audit_config

        self.ctx, self.params, self.keep_texts = ctx, dict(params), keep_texts
        if ctx.guard is not None:
            self.guard = ctx.guard
        else:
            from guardrail.guard import guard_from_config

            self.guard = guard_from_config(audit_config(ctx.config), "text", model=ctx.generator,
                                           device=ctx.device, store=ctx.store, progress=False)
        gen = self.guard.generator
        self.scorers = [watermark_scorer(ctx.config, "text", generator=gen),
                        *detector_scorers(ctx.config, "text", text_generator=gen)]

    def process(self, batch: Sequence[Mapping[str, Any]], seed: int) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        by_sample: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
        for w in batch:
            if w["synthetic"]:
                by_sample[int(w["sample"])].append(w)
        for sample, gen in by_sample.items():
            results = self.guard.generate_batch([w["prompt"] for w in gen], seed=seed + sample,
                                                params=self.params or None, raise_errors=False)
            for w, res in zip(gen, results, strict=True):
                rec = {**w, "report_id": res.report_id, "status": res.status}
                wm = next((s for s in res.report.stages if s.stage == "watermark"), None)
                rec["watermark_stage"] = wm.status.value if wm else None
                if res.artifact is None:
                    rec.update(outcome="failed", reason=res.report.error or res.status)
                    out[w["key"]] = rec
                    continue
                text = str(res.artifact.content)
                if wm is None or wm.status.value != "ok":
                    rec["watermarked"] = None  # not marked at generation: no truth for it
                    rec["watermark_reason"] = wm.reason if wm else "no watermark stage"
                rec["detected_language"] = guess_language(text)
                rec["results"] = {s.name: s(res.artifact) for s in self.scorers}
                rec["outcome"] = "scored"
                rec["text"] = text if self.keep_texts else None
                out[w["key"]] = rec
        for w in batch:
            if not w["synthetic"]:
                art = _artifact("text", w["text"])
                out[w["key"]] = {**w, "outcome": "scored",
                                 "results": {s.name: s(art) for s in self.scorers},
                                 "text": w["text"] if self.keep_texts else None}
        return [out[w["key"]] for w in batch]


class _ImagePart:
    def __init__(self, ctx: Any, spec: Mapping[str, Any]) -> None:
        from guardrail.factory import watermarker_from_config

        from .faces import FaceAnalyzer

        self.analyzer = FaceAnalyzer(device=str(ctx.device or "cpu")).load()
        self.photos = {name: img for name, img, _ in photos(spec)}
        self.scorers = [watermark_scorer(ctx.config, "image"),
                        *detector_scorers(ctx.config, "image")]
        try:
            self.marker = watermarker_from_config(ctx.config, "image")
        except Exception as exc:  # noqa: BLE001 - no key / no scheme: marked items not scored
            self.marker, self.marker_error = None, str(exc)
        self._faces: dict[tuple[str, str], Any] = {}

    def process(self, batch: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for w in batch:
            rec = dict(w)
            img = self.photos.get(w["photo"])
            if img is None:
                out.append({**rec, "outcome": "failed", "reason": "photo no longer available"})
                continue
            img = np.ascontiguousarray(IMAGE_VARIANTS[w["variant"]](img))
            faces = self.analyzer.analyze(img)
            if faces:
                main = main_face(faces)
                rec.update(faces=len(faces), perceived_gender=main.perceived_gender,
                           perceived_age=main.perceived_age, age_bucket=main.age_bucket)
            else:
                rec.update(faces=0, perceived_gender=NO_FACE, age_bucket=NO_FACE)
            art = _artifact("image", img)
            if w["watermarked"]:
                if self.marker is None:
                    out.append({**rec, "outcome": "failed",
                                "reason": f"cannot watermark: {self.marker_error}"})
                    continue
                try:
                    art = self.marker.embed(art, 0x5AFE)
                except Exception as exc:  # noqa: BLE001 - e.g. an image too small to mark
                    out.append({**rec, "outcome": "failed", "reason": f"cannot watermark: {exc}"})
                    continue
            rec["results"] = {s.name: s(art) for s in self.scorers}
            rec["outcome"] = "scored"
            out.append(rec)
        return out


# -- summary ---------------------------------------------------------------------------------

def _scorer_rows(records: Sequence[Mapping[str, Any]], scorer: str, truth: str,
                 attribute: str, settings: Mapping[str, Any],
                 flags: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    scored = [r for r in records if r.get("outcome") == "scored" and scorer in r["results"]]
    performed = [r for r in scored if r["results"][scorer]["decision"] is not None
                 and r.get(truth) is not None and r.get(attribute) is not None]
    reasons = Counter(r["results"][scorer]["reason"] for r in scored
                      if r["results"][scorer]["decision"] is None)
    info = {"scorer": scorer, "attribute": attribute, "items": len(scored),
            "performed": len(performed), "not_performed": sum(reasons.values()),
            "not_performed_reasons": dict(reasons.most_common(3))}
    if not performed:
        flags.append(f"{scorer}: not performed on any of {len(scored)} items "
                     f"({next(iter(reasons), 'no items')}); no rates for {attribute}")
        return [], info
    y = np.array([int(r[truth]) for r in performed])
    p = np.array([int(r["results"][scorer]["decision"]) for r in performed])
    g = [str(r[attribute]) for r in performed]
    n_boot = int(settings.get("n_boot", 1000))
    ci = [float(q) for q in settings.get("ci_quantiles", (0.025, 0.975))]
    seed = int(settings.get("seed", 0))
    rows: list[dict[str, Any]] = []
    extra = {"scorer": scorer, "truth": truth}
    for func, present in ((false_positive_rate, (y == 0).any()),
                          (false_negative_rate, (y == 1).any())):
        if not present:
            continue
        name = f"{func.__name__} ({scorer})"
        cls = 0 if func is false_positive_rate else 1
        table = group_table(p, g, y_true=y, metric=name, func=func, attribute=attribute,
                            interval="clopper-pearson", support=y == cls, ci_quantiles=ci)
        min_n = int(settings.get("min_group_n", 10))
        rows.extend({**row, **extra, "base_metric": func.__name__, "row_type": "group",
                     **({} if row["group"] == NO_FACE else {
                         "tested": row["n"] >= min_n,
                         "note": None if row["n"] >= min_n else f"not tested (n < {min_n})"})}
                    for row in table)
        # disparities compare people: photos without a face keep their rates, not a test
        people = np.array([gi != NO_FACE for gi in g])
        disp = disparities(p[people], [gi for gi in g if gi != NO_FACE], y_true=y[people],
                           metric=name, func=func, attribute=attribute,
                           n_boot=n_boot, ci_quantiles=ci,
                           permutations=int(settings.get("permutations", 2000)),
                           thresholds={"difference": float(settings.get("difference_threshold",
                                                                         0.1)),
                                       "alpha": float(settings.get("alpha", 0.05))},
                           random_state=seed, strata=y[people], kinds=("difference",),
                           min_group_n=min_n, untested=True)
        rows.extend({**d, **extra, "base_metric": func.__name__, "row_type": "disparity",
                     "group": "all groups" if not d.get("tested") else
                     f"{d['highest']} vs {d['lowest']}" if d["value"] else
                     "all groups equal"} for d in disp)
    people = np.array([gi != NO_FACE for gi in g])
    yp, pp, gp = y[people], p[people], [gi for gi in g if gi != NO_FACE]
    if len(set(gp)) >= 2 and (yp == 0).any() and (yp == 1).any():
        eod = equalized_odds(yp, pp, gp, n_boot=n_boot, ci_quantiles=ci, random_state=seed)
        rows.append({"attribute": attribute, "metric": f"equalized_odds_difference ({scorer})",
                     "kind": "equalized_odds_difference", **eod, "p_value": None,
                     "flagged": False, "groups": dict(Counter(gp)), "n": len(yp),
                     "group": "all groups", "row_type": "disparity", **extra,
                     "base_metric": "equalized_odds_difference"})
    return rows, info


def summarize(records: Sequence[Mapping[str, Any]], *, settings: Mapping[str, Any],
              attributes: Mapping[str, Sequence[str]], scorers: Mapping[str, Sequence[tuple[str, str]]],
              missing: Mapping[str, str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows and summary of the safety audit. ``attributes``: part -> sensitive features;
    ``scorers``: part -> ``(scorer name, truth field)``."""
    rows: list[dict[str, Any]] = []
    flags: list[str] = []
    scorer_info = []
    for part, attrs in attributes.items():
        recs = [r for r in records if r["part"] == part]
        for name, truth in scorers.get(part, ()):
            for attribute in attrs:
                part_rows, info = _scorer_rows(recs, name, truth, attribute, settings, flags)
                rows.extend({**r, "part": part} for r in part_rows)
                scorer_info.append({**info, "part": part})
    tested = [r for r in rows if r["row_type"] == "disparity" and r.get("p_value") is not None]
    if tested:
        alpha = float(settings.get("alpha", 0.05))
        adjusted = {id(r): a for r, a in zip(
            tested, adjust_p_values(tested, method=str(settings.get("p_adjust", "holm")),
                                    alpha=alpha), strict=True)}
        rows = [adjusted.get(id(r), r) for r in rows]
    for r in rows:  # an EOD is flagged when one of its two differences is
        if r.get("kind") == "equalized_odds_difference":
            r["flagged"] = any(d.get("flagged") for d in rows
                               if d.get("kind") == "difference" and d["scorer"] == r["scorer"]
                               and d["attribute"] == r["attribute"])
    for r in rows:
        if r["row_type"] == "disparity" and r.get("flagged"):
            flags.append(f"{r['scorer']} on {r['part']}: {r['base_metric'].replace('_', ' ')} "
                         f"differs by {r['value']:.2f} across {r['attribute']} "
                         f"(highest {r.get('highest', '?')}, lowest {r.get('lowest', '?')})"
                         if r.get("kind") == "difference" else
                         f"{r['scorer']} on {r['part']}: equalized-odds difference "
                         f"{r['value']:.2f} across {r['attribute']}")
    # did the model answer in the language it was asked for?
    gen = [r for r in records if r["part"] == "text" and r.get("synthetic")
           and r.get("outcome") == "scored"]
    langs = (settings.get("_languages") or {})
    by_lang: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in gen:
        by_lang[r["language"]].append(r)
    for g, recs in sorted(by_lang.items()):
        ok = sum(r.get("detected_language") == langs.get(g) for r in recs)
        rows.append({"part": "text", "attribute": "language", "metric": "output_in_language",
                     "group": g, "value": ok / len(recs), "ci_low": None, "ci_high": None,
                     "n": len(recs), "row_type": "group"})
    for g, pkg in missing.items():
        flags.append(f"no human-written {g} texts (install Debian's {pkg}): false-positive "
                     f"rates for {g} are not measured")
    not_marked = [r for r in gen if r.get("watermarked") is None]
    if not_marked:
        flags.append(f"{len(not_marked)} generated texts were not watermarked at generation "
                     f"({not_marked[0].get('watermark_reason')}); left out of the watermark's "
                     "false-negative rate")
    failed = [r for r in records if r.get("outcome") == "failed"]
    if failed:
        flags.append(f"{len(failed)} items failed and are not scored; see summary.failures")
    summary = {
        "items": len(records), "items_scored": sum(r.get("outcome") == "scored" for r in records),
        "items_failed": len(failed),
        "failures": [{"key": r["key"], "reason": r.get("reason"),
                      "report_id": r.get("report_id")} for r in failed[:50]],
        "scorers": scorer_info, "missing_corpora": dict(missing),
        "groups": {part: {a: dict(Counter(str(r.get(a)) for r in records
                                          if r["part"] == part and r.get("outcome") == "scored"))
                          for a in attrs} for part, attrs in attributes.items()},
        "flags": flags,
        "limits": [LIMITS, FACE_LIMITS] if "image" in attributes else [LIMITS],
        "testing": summarise_tests(rows, min_group_n=int(settings.get("min_group_n", 10)),
                                   smoke=bool(settings.get("_smoke"))),
    }
    return rows, summary


# -- entry point -----------------------------------------------------------------------------

def run(suite: Any, ctx: Any) -> Evaluation:
    """Run a ``safety`` suite (parts ``text`` and/or ``image``); resumable, stored as an
    evaluation of kind ``audit``."""
    from .runner import finish_audit, run_samples, start_audit

    if suite.kind != "safety":
        raise SuiteError(f"suite {suite.name!r} is a {suite.kind} suite, not a safety suite")
    text_spec, image_spec = suite.extra.get("text"), suite.extra.get("image")
    if not text_spec and not image_spec:
        raise SuiteError(f"{suite.path or suite.name}: a safety suite needs a 'text' or an "
                         "'image' part")
    settings = dict(ctx.audit)
    samples, seed = ctx.n_samples, ctx.base_seed
    work: list[dict[str, Any]] = []
    missing: dict[str, str] = {}
    attributes: dict[str, list[str]] = {}
    if text_spec:
        items, missing = text_items(suite, text_spec, samples, ctx.limit)
        work.extend(items)
        attributes["text"] = ["language"]
    if image_spec:
        work.extend(image_items(image_spec))
        attributes["image"] = list(image_spec.get("attributes", ["perceived_gender",
                                                                 "age_bucket"]))
    params = {"max_new_tokens": int((text_spec or {}).get("max_new_tokens",
                                                          settings.get("max_new_tokens", 64)))}
    if (text_spec or {}).get("min_new_tokens") is not None:
        # a generation too short to test for the watermark would be "not performed": the
        # false-negative rate is measured on texts long enough to carry the mark
        params["min_new_tokens"] = int(text_spec["min_new_tokens"])
    params.update(ctx.params)
    started = start_audit(suite, ctx, total=len(work),
                          config={"kind": "safety", "samples": samples, "seed": seed,
                                  "generator": ctx.generator, "params": params,
                                  "limit": ctx.limit, "parts": sorted(attributes),
                                  "min_group_n": int(settings.get("min_group_n", 10)),
                                  "smoke_run": ctx.smoke},
                          key_parts={"kind": "safety", "samples": samples, "seed": seed,
                                     "generator": ctx.generator, "params": params,
                                     "limit": ctx.limit})
    keep_texts = bool(settings.get("keep_texts", True))
    on_ray = ctx.engine == "ray"  # on Ray the models load in each actor
    parts = _Parts(ctx, params=params, keep_texts=keep_texts, image_spec=image_spec, seed=seed)
    if not on_ray:
        for name in sorted({w["part"] for w in work if w["key"] not in started.done}):
            parts.get(name)  # a missing dependency fails before anything is generated
    gpus = 0.0
    if on_ray:
        from .ray_run import gpus_for

        gpus = gpus_for(ctx, "text") if text_spec else 0.0
    build = functools.partial(_Parts, params=params, keep_texts=keep_texts,
                              image_spec=image_spec, seed=seed)
    records = run_samples(ctx, started, work, parts,
                          batch_size=int(settings.get("batch_size", 8)), desc="safety audit",
                          build=build, num_gpus=gpus)
    scorer_names = {name: [(s.name, s.truth) for s in parts.loaded[name].scorers]
                    if name in parts.loaded else
                    _names_in_order(records, name) if on_ray else _names_from(records, name)
                    for name in attributes}
    langs = (text_spec or {}).get("languages", {})
    rows, summary = summarize(records, settings={**settings, "_languages": langs,
                                                 "_smoke": ctx.smoke},
                              attributes=attributes, scorers=scorer_names, missing=missing)
    summary["resumed"] = started.resumed
    return finish_audit(ctx, started, rows=rows, summary=summary)


class _Parts:
    """The parts' models, each loaded when its part first has work (once per process or Ray
    actor), and the function that processes a batch of work items of either part."""

    def __init__(self, ctx: Any, *, params: Mapping[str, Any], keep_texts: bool,
                 image_spec: Mapping[str, Any] | None, seed: int) -> None:
        self.ctx, self.params, self.keep_texts = ctx, dict(params), keep_texts
        self.image_spec, self.seed = image_spec, seed
        self.loaded: dict[str, Any] = {}

    def get(self, name: str) -> Any:
        if name not in self.loaded:
            self.loaded[name] = (_TextPart(self.ctx, self.params, self.keep_texts)
                                 if name == "text" else _ImagePart(self.ctx, self.image_spec))
        return self.loaded[name]

    def __call__(self, batch: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name in ("text", "image"):
            sub = [w for w in batch if w["part"] == name]
            if sub:
                recs = (self.get(name).process(sub, self.seed) if name == "text"
                        else self.get(name).process(sub))
                out.update((r["key"], r) for r in recs)
        return [out[w["key"]] for w in batch]


def _names_in_order(records: Sequence[Mapping[str, Any]],
                    part: str) -> list[tuple[str, str]]:
    """Scorer names of a part run on Ray actors, in the order the actors' scorers gave them
    (the order of the in-process scorer list, so the rows come in the same order)."""
    names: dict[str, str] = {}
    for r in records:
        if r["part"] == part and r.get("results"):
            for n in r["results"]:
                names.setdefault(n, "watermarked" if n.startswith("watermark:") else "synthetic")
    return list(names.items())


def _names_from(records: Sequence[Mapping[str, Any]], part: str) -> list[tuple[str, str]]:
    """Scorer names found in a finished part's records (a resumed run loads no model)."""
    names: dict[str, str] = {}
    for r in records:
        if r["part"] == part and r.get("results"):
            for n in r["results"]:
                names[n] = "watermarked" if n.startswith("watermark:") else "synthetic"
    return sorted(names.items())
