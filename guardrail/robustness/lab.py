"""The robustness lab: content -> embed -> attack -> detect -> rates, for every modality,
stored in the record store as an evaluation and printed as a table.

``guardrail robustness --modality {image,audio,text} [--quick] [--json]``. Each modality's
lab (:mod:`.text_lab`, :mod:`.image_lab`, :mod:`.audio_lab`) runs on the skeleton of
:mod:`.harness` with the suite of :data:`.attacks.SUITES`, built through the attack registry.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from .._types import Modality
from ..config import Config
from ..store import Evaluation, ReportStore

__all__ = ["format_table", "run_robustness"]


def _text(cfg: Config, *, quick: bool, progress: bool, items: int | None = None
          ) -> dict[str, Any]:
    from ..factory import generator_from_config, watermarker_from_config
    from .attacks import build_attack, build_suite
    from .text_lab import run_text_lab

    generator = generator_from_config(cfg, Modality.TEXT, progress=progress)
    wm = watermarker_from_config(cfg, Modality.TEXT, generator=generator)
    attacks = [*build_suite(Modality.TEXT),
               build_attack(Modality.TEXT, "paraphrase", 1.0, generator=generator)]

    return run_text_lab(generator, wm, attacks=attacks,
                        n_texts=items or (8 if quick else 48),
                        n_human=200 if quick else 1000, progress=progress)


def _image(cfg: Config, *, quick: bool, progress: bool, photo_dir: str | None = None
           ) -> dict[str, Any]:
    from ..keys import load_secret
    from .image_lab import evaluate, load_natural_images

    key = load_secret(cfg.watermark_key_file)
    fpr = float(cfg.section("watermark")["image_fpr"])
    images = load_natural_images(photo_dir)
    if quick:
        images = images[:6]
    log = (lambda msg: __import__("logging").getLogger(__name__).info(msg)) if progress else None
    res = evaluate(images, fpr=fpr, key=key, n_unmarked=100 if quick else 1000,
                   max_images={"rivaGan": 2 if quick else 3},
                   max_unmarked={"rivaGan": 10 if quick else 40},
                   repeats=3 if quick else 7, log=log)
    rows = []
    for scheme, r in res["schemes"].items():
        for attack, tpr in r["tpr"].items():
            rows.append({"scheme": scheme, "attack": attack, "tpr": tpr,
                         "payload_ok": r.get("payload_ok", {}).get(attack),
                         "bit_accuracy": r.get("bit_accuracy", {}).get(attack),
                         "n_images": r.get("n_images")})
    summary = {"fpr_target": fpr, "content": "natural photos (scikit-image, scikit-learn"
               + (f", {photo_dir}" if photo_dir else "") + ")",
               "schemes": {name: {k: r.get(k) for k in (
                   "embed_ms", "detect_ms", "detect_unmarked_ms", "psnr_mean", "psnr_min",
                   "ssim_mean", "fpr_measured", "false_positives", "n_unmarked", "n_images")}
                   for name, r in res["schemes"].items()},
               "speedup": res.get("speedup"), "targets": res.get("targets")}
    return {"rows": rows, "summary": summary, "schemes": list(res["schemes"])}


def _audio(cfg: Config, *, quick: bool, progress: bool) -> dict[str, Any]:
    from ..factory import watermarker_from_config
    from .audio_corpus import piper_clips
    from .audio_lab import evaluate

    wm = watermarker_from_config(cfg, Modality.AUDIO)
    clips = piper_clips(12 if quick else 120)
    res = evaluate(clips, key=b"unused", fpr=wm.fpr, watermarker=wm,
                   n_unmarked=200 if quick else 1000, timing_repeats=5 if quick else 20)
    rows = []
    for attack, r in res["attacks"].items():
        rows.append({"scheme": wm.scheme, "attack": attack, "tpr": r.get("tpr"),
                     "payload_ok": r.get("payload_ok"), "payload_wrong": r.get("payload_wrong"),
                     "bit_accuracy": r.get("coded_bit_accuracy"), "score_min": r.get("score_min"),
                     })
    unmarked = res["unmarked"]
    summary = {"scheme": wm.scheme, "fpr_target": wm.fpr, "content": "embedded Piper speech",
               "n_clips": len(clips), "fpr_measured": unmarked.get("fpr_measured"),
               "n_unmarked": unmarked.get("n"), "false_positives": unmarked.get("false_positives"),
               "embed_ms_10s": res["timing"].get("embed_ms_median"),
               "detect_ms_10s": res["timing"].get("detect_ms_median"),
               "snr_db": res.get("snr_db"), "targets": res.get("targets")}
    return {"rows": rows, "summary": summary, "schemes": [wm.scheme]}


def run_robustness(cfg: Config, modality: Modality, *, quick: bool = False,
                   progress: bool = True, store: ReportStore | None = None,
                   photo_dir: str | None = None, items: int | None = None) -> Evaluation:
    """Run the lab for ``modality`` and record it as an evaluation (kind ``robustness``).

    ``photo_dir`` adds a folder of photographs to the image content (e.g. the third-party
    C2PA test photos).
    """
    if modality is Modality.IMAGE:
        result = _image(cfg, quick=quick, progress=progress, photo_dir=photo_dir)
    elif modality is Modality.TEXT:
        result = _text(cfg, quick=quick, progress=progress, items=items)
    else:
        result = _audio(cfg, quick=quick, progress=progress)
    ev = Evaluation(
        evaluation_id=uuid.uuid4().hex, kind="robustness", name=f"{modality.value} watermarks",
        created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        config={"modality": modality.value, "quick": quick,
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
