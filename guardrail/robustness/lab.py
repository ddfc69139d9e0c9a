"""The robustness lab: content -> embed -> attack -> detect -> rates, for every modality,
stored in the record store as an evaluation and printed as a table.

``guardrail robustness --modality {image,audio,text} [--quick] [--json]``. Each modality's
lab (:mod:`.text_lab`, :mod:`.image_lab`, :mod:`.audio_lab`) runs on the skeleton of
:mod:`.harness` with the suite of :data:`.attacks.SUITES`, built through the attack registry.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .._types import Modality
from ..config import Config
from ..errors import InputError
from ..progress import enabled, library_bars, note, scope
from ..store import Evaluation, ReportStore

if TYPE_CHECKING:
    from .image_lab import PhotoDirs

__all__ = ["format_table", "lab_keys", "met_under_every_key", "run_robustness"]


def _text(cfg: Config, *, quick: bool, progress: bool, items: int | None = None
          ) -> dict[str, Any]:
    from ..factory import generator_from_config, watermarker_from_config
    from .attacks import build_attack, build_suite
    from .text_lab import run_text_lab

    generator = generator_from_config(cfg, Modality.TEXT, progress=library_bars())
    wm = watermarker_from_config(cfg, Modality.TEXT, generator=generator)
    attacks = [*build_suite(Modality.TEXT),
               build_attack(Modality.TEXT, "paraphrase", 1.0, generator=generator)]

    return run_text_lab(generator, wm, attacks=attacks,
                        n_texts=items or (8 if quick else 48),
                        n_human=200 if quick else 1000, progress=progress,
                        n_spoof=4 if quick or items else 16)


def _image(cfg: Config, *, quick: bool, progress: bool, photo_dir: PhotoDirs = None,
           sample: int | None = None, keys: int = 1) -> dict[str, Any]:
    from .image_lab import evaluate, load_natural_images, photo_dirs

    fpr = float(cfg.section("watermark")["image_fpr"])
    images = load_natural_images(photo_dir)
    if quick:
        images = images[:6]
    log = note if progress else None

    def run(key: bytes) -> dict[str, Any]:
        if sample:  # the configured scheme only, on a few photos: a smoke run of the lab
            return evaluate(images[:sample],
                            schemes=[str(cfg.section("watermark")["image_scheme"])],
                            fpr=fpr, key=key, n_unmarked=10 * sample, repeats=1,
                            keyless=False, log=log)
        return evaluate(images, fpr=fpr, key=key, n_unmarked=100 if quick else 1000,
                        max_images={"rivaGan": 2 if quick else 3},
                        max_unmarked={"rivaGan": 10 if quick else 40},
                        repeats=3 if quick else 7, log=log)

    runs = _under_keys(cfg, keys, progress, run)
    rows = _keyed_rows(runs, _image_rows)
    res = runs[0][1]
    schemes = {name: {k: r.get(k) for k in (
        "embed_ms", "detect_ms", "detect_unmarked_ms", "psnr_mean", "psnr_min", "ssim_mean",
        "fpr_measured", "false_positives", "n_unmarked", "n_images")}
        for name, r in res["schemes"].items()}
    for name, entry in schemes.items():  # false positives over every key
        per = [r["schemes"][name] for _, r in runs]
        fp, n = sum(e["false_positives"] for e in per), sum(e["n_unmarked"] for e in per)
        entry.update(false_positives=fp, n_unmarked=n, fpr_measured=fp / n if n else None)
    targets = res.get("targets")
    if targets:  # per scheme, met only when met under every key
        targets = {name: met_under_every_key([r["targets"].get(name) or {} for _, r in runs])
                   for name in targets}
    summary = {"fpr_target": fpr, "content": "natural photos (scikit-image, scikit-learn"
               + "".join(f", {d}" for d in photo_dirs(photo_dir)) + ")",
               "schemes": schemes, "speedup": res.get("speedup"), "targets": targets}
    if keys > 1:
        summary.update(_by_key(runs))
    return {"rows": rows, "summary": summary, "schemes": list(res["schemes"])}


def _image_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of one image lab run: per scheme and attack, then the keyless attacks."""
    rows = []
    for scheme, r in res["schemes"].items():
        for attack, tpr in r["tpr"].items():
            rows.append({"scheme": scheme, "attack": attack, "n": r.get("n", {}).get(attack),
                         "tpr": tpr, "payload_ok": r.get("payload_ok", {}).get(attack),
                         "bit_accuracy": r.get("bit_accuracy", {}).get(attack),
                         "n_images": r.get("n_images")})
        for rates in (r.get("keyless") or {}).values():  # copy: false detections
            rows.extend({"scheme": scheme, "attack": label, "n": v["n"], "tpr": v["rate"],
                         "n_images": v["n"]} for label, v in rates.items())
    return rows


def _ci(interval: Any) -> str | None:
    """``[low, high]`` as ``"[0.951, 1.000]"``."""
    if not interval or interval[0] is None:
        return None
    return f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def lab_keys(cfg: Config, n: int) -> list[tuple[str, bytes]]:
    """``(key id, key)`` of the ``n`` keys a lab run measures: the configured watermark key,
    then ``n - 1`` public lab keys (fixed, so that a run can be repeated; never a key a
    platform uses). The aimed removals and the copies depend on the key: one key's counts
    are a sample of one."""
    from ..keys import key_id, load_secret

    keys = [load_secret(cfg.watermark_key_file)]
    keys += [hashlib.sha256(b"guardrail robustness lab key %d" % i).digest() for i in range(1, n)]
    return [(key_id(k), k) for k in keys]


def _under_keys(cfg: Config, keys: int, progress: bool,
                run: Callable[[bytes], dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """``(key id, run(key))`` for each of the :func:`lab_keys`."""
    runs = []
    for i, (kid, key) in enumerate(lab_keys(cfg, keys)):
        if keys > 1 and progress:
            note(f"key {i + 1} of {keys} ({kid})")
        runs.append((kid, run(key)))
    return runs


def _keyed_rows(runs: list[tuple[str, dict[str, Any]]],
                rows_of: Callable[[dict[str, Any]], list[dict[str, Any]]]
                ) -> list[dict[str, Any]]:
    """The rows of one run as they are; of several, each with its ``key``, then pooled."""
    if len(runs) == 1:
        return rows_of(runs[0][1])
    rows = [{"key": kid, **row} for kid, res in runs for row in rows_of(res)]
    return rows + _pooled(rows)


def _by_key(runs: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The summary's ``keys`` and ``targets_by_key`` of a run under several keys."""
    return {"keys": [kid for kid, _ in runs],
            "targets_by_key": {kid: r.get("targets") for kid, r in runs}}


def _audio(cfg: Config, *, quick: bool, progress: bool, sample: int | None = None,
           keys: int = 1) -> dict[str, Any]:
    from ..factory import watermarker_from_config
    from .audio_corpus import human_clips, piper_clips
    from .audio_lab import evaluate

    clips = piper_clips(sample or (12 if quick else 120))
    human = [] if sample else human_clips(20 if quick else 150)

    def run(key: bytes) -> dict[str, Any]:
        wm = watermarker_from_config(cfg, Modality.AUDIO, key=key)
        return evaluate(clips, key=b"unused", fpr=wm.fpr, watermarker=wm,
                        n_unmarked=10 * sample if sample else 200 if quick else 1000,
                        timing_repeats=2 if sample else 5 if quick else 20,
                        progress=note if progress else None, keyless=not sample, human=human,
                        n_copy_targets=40 if quick else 300, n_removal=10 if quick else 40)

    runs = _under_keys(cfg, keys, progress, run)
    res = runs[0][1]
    scheme = res["scheme"]
    rows = _keyed_rows(runs, lambda r: _audio_rows(scheme, r))
    summary = {"scheme": scheme, "fpr_target": res["fpr"], "content": "embedded Piper speech"
               + (f"; keyless copies also onto {len(human)} recorded human prompts"
                  if res.get("keyless") and human else ""),
               "n_clips": len(clips), "fpr_measured": res["unmarked"].get("fpr_measured"),
               "n_unmarked": res["unmarked"].get("n"),
               "false_positives": res["unmarked"].get("false_positives"),
               "embed_ms_10s": res["timing"].get("embed_ms_median"),
               "detect_ms_10s": res["timing"].get("detect_ms_median"),
               "snr_db": res.get("snr_db"),
               "pesq_wb": _pesq([r for _, r in runs]),
               "targets": met_under_every_key([r.get("targets") or {} for _, r in runs])}
    if keys > 1:  # pooled false positives; a target counts as met only under every key
        n_fp = sum(r["unmarked"].get("false_positives") or 0 for _, r in runs)
        n_un = sum(r["unmarked"].get("n") or 0 for _, r in runs)
        summary.update(fpr_measured=n_fp / n_un if n_un else 0.0, n_unmarked=n_un,
                       false_positives=n_fp,
                       snr_db={"min": min((r["snr_db"]["min"] for _, r in runs
                                           if r["snr_db"]["min"] is not None), default=None)},
                       **_by_key(runs))
    return {"rows": rows, "summary": summary, "schemes": [scheme]}


def _pesq(runs: list[dict[str, Any]]) -> dict[str, Any] | str:
    """The runs' wideband PESQ pooled over keys (:func:`.audio_quality.pooled`), or why it
    was not measured."""
    from .audio_quality import pooled

    q = pooled(r.get("quality") or {} for r in runs)
    if q["pesq_wb"] is None:
        return str(q["reason"])
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in q["pesq_wb"].items()}


def met_under_every_key(targets: list[dict[str, bool]]) -> dict[str, bool]:
    """Each target of any run, met only when every run reports it met."""
    names = dict.fromkeys(t for ts in targets for t in ts)
    return {t: all(ts.get(t, False) for ts in targets) for t in names}


def _audio_rows(scheme: str, res: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of one audio lab run: per attack, then the keyless copies and removals."""
    rows = []
    for attack, r in res["attacks"].items():
        rows.append({"scheme": scheme, "attack": attack, "n": r.get("n"),
                     "tpr": r.get("tpr"), "tpr_ci": _ci(r.get("tpr_ci")),
                     "payload_ok": r.get("payload_ok"),
                     "payload_ok_ci": _ci(r.get("payload_ok_ci")),
                     "payload_wrong": r.get("payload_wrong"),
                     "bit_accuracy": r.get("coded_bit_accuracy"), "score_min": r.get("score_min"),
                     })
    kl = res.get("keyless") or {}
    for kind in ("copy", "removal", "removal_sweep"):  # copy: false detections; removal: kept
        rows.extend({"scheme": scheme, "attack": label, "n": v["n"], "tpr": v["rate"],
                     "tpr_ci": _ci([v["ci_low"], v["ci_high"]]),
                     "victim_ids": v.get("victim_ids"), "ai_verdicts": v.get("ai_verdicts")}
                    for label, v in (kl.get(kind) or {}).items())
    return rows


def _pooled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (scheme, attack) over every key's rows (``key`` "pooled"): counts summed,
    rates and their exact intervals from the sums, the lowest score, the mean bit accuracy."""
    from ..stats import clopper_pearson

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["scheme"], r["attack"]), []).append(r)
    out = []
    for (scheme, attack), rs in groups.items():
        rs = [r for r in rs if r.get("n")]
        if not rs:
            continue
        n = sum(r["n"] for r in rs)
        row: dict[str, Any] = {"scheme": scheme, "attack": attack, "n": n}
        for col in ("tpr", "payload_ok"):
            if all(r.get(col) is not None for r in rs):
                k = sum(round(r[col] * r["n"]) for r in rs)
                row[col], row[f"{col}_ci"] = k / n, _ci(clopper_pearson(k, n))
        for col in ("payload_wrong", "victim_ids", "ai_verdicts"):
            if all(r.get(col) is not None for r in rs):
                row[col] = sum(r[col] for r in rs)
        if all(r.get("bit_accuracy") is not None for r in rs):
            row["bit_accuracy"] = sum(r["bit_accuracy"] * r["n"] for r in rs) / n
        if all(r.get("score_min") is not None for r in rs):
            row["score_min"] = min(r["score_min"] for r in rs)
        out.append({"key": "pooled", **row})
    return out


def run_robustness(cfg: Config, modality: Modality, *, quick: bool = False,
                   progress: bool = True, store: ReportStore | None = None,
                   photo_dir: PhotoDirs = None, items: int | None = None,
                   sample: int | None = None, keys: int = 1) -> Evaluation:
    """Run the lab for ``modality`` and record it as an evaluation (kind ``robustness``).

    ``photo_dir`` adds a folder of photographs, or several, to the image content (e.g. the
    third-party C2PA test photos). ``sample`` runs a smoke run on that many items (images: the
    configured scheme only, no keyless attacks; text: that many generated texts), recorded
    as ``quick`` with its ``sample``. ``progress``: guardrail's progress bars
    (:mod:`guardrail.progress`) while the lab runs. ``keys`` (audio, image): run the lab under the
    configured key and ``keys - 1`` public lab keys (:func:`lab_keys`); the rows carry a
    ``key`` column, pooled rows are added, and a target counts as met only under every key.
    """
    if sample is not None and sample < 1:
        raise ValueError(f"sample must be at least 1, got {sample}")
    if keys < 1:
        raise ValueError(f"keys must be at least 1, got {keys}")
    if keys > 1 and modality is Modality.TEXT:
        raise InputError(f"--keys {keys}: runs under several keys are built for the audio and "
                         "image labs, not the text lab (it already tests its human texts under "
                         "four keys)")
    with scope(progress):
        progress = enabled(progress)  # the labs' own bars follow guardrail's progress mode
        if modality is Modality.IMAGE:
            result = _image(cfg, quick=quick, progress=progress, photo_dir=photo_dir,
                            sample=sample, keys=keys)
        elif modality is Modality.TEXT:
            result = _text(cfg, quick=quick or bool(sample), progress=progress,
                           items=sample or items)
        else:
            result = _audio(cfg, quick=quick, progress=progress, sample=sample, keys=keys)
    ev = Evaluation(
        evaluation_id=uuid.uuid4().hex, kind="robustness", name=f"{modality.value} watermarks"
        + (" (smoke run)" if sample else ""),
        created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        config={"modality": modality.value, "quick": quick or bool(sample), "sample": sample,
                "keys": keys,
                "schemes": result.get("schemes") or [result["summary"].get("scheme")]},
        summary=result["summary"], rows=result["rows"])
    owned = store is None
    store = store or ReportStore(cfg.store_url)
    try:
        store.save_evaluation(ev)
    finally:
        if owned:
            store.close()
    return ev


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def to_markdown(ev: Evaluation) -> str:
    """A markdown section for an evaluation: the rows as a table, then the summary."""
    rows = list(ev.rows)
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = [f"## Robustness: {ev.name}", "",
             f"`guardrail robustness --modality {ev.config.get('modality')}` on "
             f"{ev.created_at[:19]} UTC (evaluation {ev.evaluation_id}); TPR is the share of "
             "marked items detected at the configured false-positive rate.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    lines += ["", "Summary:", ""]
    for key, value in ev.summary.items():
        lines.append(f"- {key}: {value if not isinstance(value, float) else _fmt(value)}")
    return "\n".join(lines) + "\n"


def format_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A plain-text table of ``rows`` (columns: the given ones, or every key seen)."""
    if not rows:
        return "(no rows)"
    cols = columns or list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)
