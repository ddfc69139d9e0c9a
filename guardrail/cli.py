"""The ``guardrail`` command.

Exit codes
----------
0   success (the output was produced; a ``flagged`` output also exits 0 and says so)
1   unexpected internal error
2   usage error (unknown verb, missing or invalid argument)
3   the output was blocked by a policy (nothing was written; the report says why)
4   the request was rejected: empty or over-long prompt, unknown modality, bad file type
5   a model could not be loaded
6   the generator failed or returned nothing
7   the output file could not be written
8   the configuration is invalid
9   the record store failed (or the report id was not found)
10  a stage failed and its policy is ``block``
11  an optional dependency is missing (the message names the extra to install)
12  a key file is missing, malformed or readable by others
130 interrupted
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._types import Modality, Report
from .config import Config
from .errors import ConfigError, GuardrailError
from .store import ReportStore

__all__ = ["main"]

log = logging.getLogger("guardrail")

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_BLOCKED = 0, 1, 2, 3


# -- helpers ------------------------------------------------------------------------------
def _emit_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _load_config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    if getattr(args, "store", None):
        overrides.setdefault("store", {})["url"] = args.store
    if getattr(args, "store_prompts", False):
        overrides.setdefault("store", {})["store_prompts"] = True
    if getattr(args, "data_dir", None):
        overrides.setdefault("paths", {})["data_dir"] = str(Path(args.data_dir).absolute())
    return Config.load(args.config, overrides=overrides)


def _parse_params(items: Sequence[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--param {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


def _stage_table(report: Report) -> str:
    lines = []
    for s in report.stages:
        reason = f"  {s.reason}" if s.reason else ""
        lines.append(f"  {s.stage:<14} {s.status.value:<8} {s.duration_ms:>9.1f} ms{reason}")
    return "\n".join(lines)


def _report_text(report: Report) -> str:
    md = report.metadata
    head = [
        f"report   {report.report_id}",
        f"status   {report.status}",
        f"created  {report.created_at}",
        f"modality {report.modality.value if report.modality else 'unknown'}",
        f"model    {md.model_id}" + (f" @ {md.model_revision}" if md.model_revision else ""),
        f"device   {md.device}",
        f"output   {report.output or '-'}",
    ]
    if report.content_hash:
        head.append(f"content  {report.content_hash}")
    if report.error:
        head.append(f"error    {report.error}")
    return "\n".join(head) + "\nstages\n" + _stage_table(report)


# -- verbs --------------------------------------------------------------------------------
def cmd_generate(args: argparse.Namespace) -> int:
    from .factory import guard_from_config
    from .pipeline import Guard, record_failure

    cfg = _load_config(args)
    params = _parse_params(args.param)
    store = ReportStore(cfg.store_url)
    try:
        default_model = f"(default {args.modality} model, not loaded)"
        try:
            modality = Modality.parse(args.modality)
        except GuardrailError as exc:
            record_failure(store, cfg, error=exc, stage="input_policy", prompt=args.prompt,
                           modality=None, model_id=args.model or default_model,
                           requested_modality=args.modality)
            raise
        # reject a bad request (and record it) before spending seconds on loading a model
        early = Guard(_Unloaded(modality, args.model), store=store, config=cfg).preflight(
            args.prompt, output=args.output)
        if early is not None:
            result = early
        else:
            try:
                guard = guard_from_config(cfg, modality, model=args.model, device=args.device,
                                          store=store, progress=not args.json)
            except GuardrailError as exc:
                record_failure(store, cfg, error=exc, stage="generate", prompt=args.prompt,
                               modality=modality, model_id=args.model or default_model,
                               passed=("input_policy",))
                raise
            result = guard.generate(args.prompt, output=args.output, seed=args.seed,
                                    params=params)
    finally:
        store.close()
    report = result.report
    if args.json:
        _emit_json(report.to_dict())
    else:
        print(_report_text(report))
        if result.artifact is not None and modality is Modality.TEXT:
            print("\n" + str(result.artifact.content))
        if report.status == "flagged":
            print("\nthe output was released but FLAGGED; see the stages above")
        if report.status == "blocked":
            print("\nthe output was BLOCKED; nothing was written")
    return EXIT_BLOCKED if report.status == "blocked" else EXIT_OK


class _Unloaded:
    """Stands in for a generator when the request is rejected before loading one."""

    def __init__(self, modality: Modality, model: str | None) -> None:
        from ._generator import ModelInfo

        self.modality = modality
        self.info = ModelInfo(model_id=model or f"(default {modality.value} model, not loaded)")

    def generate(self, prompts: Sequence[str], **_: Any) -> list[Any]:  # pragma: no cover
        raise GuardrailError("generator not loaded")


def cmd_reports_list(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    with ReportStore(cfg.store_url) as store:
        reports = store.list(limit=args.limit, offset=args.offset, modality=args.modality,
                             status=args.status, search=args.search)
        total = store.count(modality=args.modality, status=args.status, search=args.search)
    if args.json:
        _emit_json([r.to_dict() for r in reports])
        return EXIT_OK
    if not reports:
        print("no reports" + (" match" if (args.modality or args.status or args.search) else
                              " yet: run `guardrail demo` or `guardrail generate`"))
        return EXIT_OK
    print(f"{'report':<12}  {'created (UTC)':<19}  {'modality':<8}  {'status':<8}  model / output")
    for r in reports:
        print(f"{r.report_id[:12]}  {r.created_at[:19].replace('T', ' ')}  {(r.modality.value if r.modality else '?'):<8}  "
              f"{r.status:<8}  {r.metadata.model_id}  {r.output or '-'}")
    shown_to = args.offset + len(reports)
    print(f"\n{args.offset + 1}-{shown_to} of {total}" +
          ("  (use --offset to see more)" if shown_to < total else ""))
    return EXIT_OK


def cmd_reports_show(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    with ReportStore(cfg.store_url) as store:
        report = store.get(args.report_id)
    if args.json:
        _emit_json(report.to_dict())
    else:
        print(_report_text(report))
    return EXIT_OK


def _demo_evaluations(args: argparse.Namespace, out_dir: Path) -> list[dict[str, Any]]:
    """The evaluations behind the dashboard's audit and robustness/detector pages, run
    through the same CLI verbs a user would type (small sizes)."""
    import contextlib
    import io

    common: list[str] = []
    for name, flag in (("config", "--config"), ("store", "--store"), ("data_dir", "--data-dir")):
        if getattr(args, name):
            common += [flag, str(getattr(args, name))]
    human, generated = out_dir / "eval-texts" / "real", out_dir / "eval-texts" / "synthetic"
    steps = [
        ("text bias audit (24 prompts)", ["audit", "run", "text-demographics", "--samples",
                                          "1", "--limit", "24", "--json"]),
        ("text corpus for the detector evaluation", ["detectors", "corpus",
                                                     str(out_dir / "eval-texts"), "--samples",
                                                     "12", "--length", "64", "--prefix", "16",
                                                     "--json"]),
        ("text detector evaluation", ["detectors", "eval", "fast-detectgpt", str(human),
                                      str(generated), "--bootstrap", "200", "--json"]),
    ]
    if (out_dir / "eval-texts").exists():
        import shutil

        shutil.rmtree(out_dir / "eval-texts")
    done: list[dict[str, Any]] = []
    for label, argv in steps:
        if not args.json:
            print(f"[evaluation] {label} ...", flush=True)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = main([*argv, *common])
        done.append({"step": label, "exit_code": code})
        if code != EXIT_OK and not args.json:
            print(f"[evaluation] {label}: exit code {code}", flush=True)
    return done


def cmd_demo(args: argparse.Namespace) -> int:
    from .factory import guard_from_config

    cfg = _load_config(args)
    out_dir = Path(args.out).absolute() if args.out else cfg.demo_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    # the text job writes 128 tokens: a text watermark is a statistical test that needs
    # length (docs/ROBUSTNESS.md, pass rate by length); a shorter sampled answer would more
    # often be released flagged as too weak to verify ([policy] unverifiable_text)
    jobs: list[tuple[Modality, str, str, dict[str, Any]]] = [
        (Modality.TEXT, "Write a short paragraph about why rivers matter to cities.",
         "demo-text.txt", {"min_new_tokens": 128, "max_new_tokens": 128}),
        (Modality.IMAGE, "a handwritten digit seven", "demo-image.png", {}),
        (Modality.AUDIO, "This audio was generated by a machine and carries a guardrail record.",
         "demo-audio.wav", {}),
    ]
    from .keys import init_keys

    created = [k for k in init_keys(cfg) if k["created"]]
    if created and not args.json:
        for k in created:
            print(f"created key file {k['file']} ({k['purpose']}; mode 0600)")
    reports: list[Report] = []
    with ReportStore(cfg.store_url) as store:
        for modality, prompt, name, params in jobs:
            if not args.json:
                print(f"[{modality.value}] loading the embedded default and generating ...",
                      flush=True)
            with guard_from_config(cfg, modality, store=store, progress=not args.json) as guard:
                result = guard.generate(prompt, output=out_dir / name, seed=args.seed,
                                        params=params)
            reports.append(result.report)
            if not args.json:
                print(f"[{modality.value}] {result.status}: {result.output or 'nothing written'}"
                      f"  (report {result.report_id})")
    evaluations = _demo_evaluations(args, out_dir) if args.evaluations else []
    if args.json:
        _emit_json([r.to_dict() for r in reports] if not args.evaluations else
                   {"reports": [r.to_dict() for r in reports], "evaluations": evaluations})
    else:
        print(f"\noutputs: {out_dir}\nreports: {ReportStore.describe(cfg.store_url)}\n"
              "see them with: guardrail reports list; guardrail dashboard")
    blocked = any(r.status == "blocked" for r in reports)
    return EXIT_BLOCKED if blocked else EXIT_OK


def cmd_config_show(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    effective = {
        "config_file": cfg.source,
        "data_dir": str(cfg.data_dir),
        "keys_dir": str(cfg.keys_dir),
        "cache_dir": str(cfg.cache_dir),
        "store_url": ReportStore.describe(cfg.store_url),
        "settings": cfg.data,
    }
    if args.json:
        _emit_json(effective)
    else:
        for key, value in effective.items():
            if key != "settings":
                print(f"{key:<12} {value}")
        print("settings     " + json.dumps(cfg.data, indent=2).replace("\n", "\n             "))
    return EXIT_OK


def cmd_keys_init(args: argparse.Namespace) -> int:
    from .keys import init_keys

    cfg = _load_config(args)
    result = {"keys_dir": str(cfg.keys_dir), "keys": init_keys(cfg)}
    if args.json:
        _emit_json(result)
    else:
        for k in result["keys"]:
            state = "created" if k["created"] else "exists "
            print(f"{state}  {k['file']}  ({k['purpose']}; key id {k['key_id']}, mode 0600)")
    return EXIT_OK


def _watermarker_for(cfg: Config, modality: Modality, scheme: str | None,
                     progress: bool) -> Any:
    from .factory import generator_from_config, watermarker_from_config

    generator = None
    if modality is Modality.TEXT:
        # text marks are tied to the generating model's tokenizer and vocabulary
        generator = generator_from_config(cfg, modality, progress=progress)
    return watermarker_from_config(cfg, modality, generator=generator, scheme=scheme)


def cmd_watermark_embed(args: argparse.Namespace) -> int:
    import secrets as _secrets

    from .media import atomic_write, check_output_path, encode, media_type_for_path
    from .watermark.base import CannotWatermark

    cfg = _load_config(args)
    from .media import read_file

    art = read_file(args.file)
    out = check_output_path(args.output)
    media_type = media_type_for_path(out, art.modality)
    if art.modality is Modality.TEXT:
        raise CannotWatermark(
            "cannot embed: text is watermarked while it is generated (guardrail generate "
            "--modality text); an existing text cannot be marked afterwards")
    wm = _watermarker_for(cfg, art.modality, args.scheme, progress=not args.json)
    payload = int(args.payload, 16) if args.payload else _secrets.randbits(wm.payload_bits)
    if payload >= 1 << wm.payload_bits:
        raise CannotWatermark(f"cannot embed: payload {args.payload} does not fit in "
                              f"{wm.payload_bits} bits")
    marked = wm.embed(art, payload)
    atomic_write(out, encode(marked, media_type))
    result = {"file": str(out), "scheme": wm.scheme, "version": wm.version,
              "payload": f"{payload:0{max(1, (wm.payload_bits + 3) // 4)}x}",
              "media_type": media_type}
    if args.json:
        _emit_json(result)
    else:
        print(f"marked {args.file} -> {out} with {wm.scheme} v{wm.version}, id {result['payload']}")
    return EXIT_OK


def cmd_watermark_detect(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    from .media import read_file

    art = read_file(args.file)
    wm = _watermarker_for(cfg, art.modality, args.scheme, progress=not args.json)
    res = wm.detect(art)
    result = {"file": args.file, "modality": art.modality.value, "detected": res.detected,
              "scheme": res.scheme, "version": res.scheme_version, "p_value": res.p_value,
              "fpr": res.fpr, "payload": res.payload, "score": res.score, "reason": res.reason}
    if args.json:
        _emit_json(result)
    else:
        if res.detected is None:
            print(f"not performed: {res.reason}")
        else:
            verdict = "DETECTED" if res.detected else "not detected"
            print(f"{verdict}: {res.scheme} v{res.scheme_version}, p-value {res.p_value:.3g} "
                  f"(decided at false-positive rate {res.fpr:g})"
                  + (f", id {res.payload}" if res.payload else ""))
    return EXIT_OK


def cmd_robustness(args: argparse.Namespace) -> int:
    from .robustness.lab import format_table, run_robustness, to_markdown

    cfg = _load_config(args)
    modality = Modality.parse(args.modality)
    ev = run_robustness(cfg, modality, quick=args.quick, progress=not args.json,
                        photo_dir=args.photos, items=args.items)
    if args.json:
        _emit_json(ev.to_dict())
    else:
        print(format_table(list(ev.rows)))
        print("\nsummary")
        for key, value in ev.summary.items():
            if not isinstance(value, (dict, list)):
                print(f"  {key:<28} {value}")
        print(f"\nstored as evaluation {ev.evaluation_id}")
    if args.out:
        from .bench import write_section

        write_section(Path(args.out), f"robustness-{modality.value}", to_markdown(ev))
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    from .verify import verify_file

    cfg = _load_config(args)
    res = verify_file(args.file, cfg)
    out = res.to_dict()
    if args.json:
        _emit_json(out)
    else:
        print(out["verdict"]["summary"])
        for line in out["verdict"]["evidence"]:
            print(f"  - {line}")
        for line in out["verdict"]["not_checked"]:
            print(f"  ! not checked: {line}")
        if res.recovered:
            print(f"  recovered record: guardrail reports show {res.recovered['report_id']}")
    return {"Tampered": EXIT_BLOCKED, "Could not be verified": 4}.get(res.label, EXIT_OK)


def cmd_detectors(args: argparse.Namespace) -> int:
    from .detectors import cli as dc

    cfg = _load_config(args)
    if args.detectors_verb == "list":
        result = dc.cmd_list(cfg)
    elif args.detectors_verb == "train":
        result = dc.cmd_train(cfg, args.kind, args.real, args.synthetic, args.name,
                              target_fpr=args.target_fpr, test_size=args.test_size,
                              seed=args.seed, limit=args.limit)
    elif args.detectors_verb == "corpus":
        result = dc.cmd_corpus(cfg, args.out, samples=args.samples, length=args.length,
                               prefix=args.prefix, skip=args.skip, seed=args.seed,
                               progress=not args.json)
    elif args.detectors_verb == "report":
        result = dc.cmd_report(cfg, modalities=args.modality or ["image", "text", "audio"],
                               text_corpus=args.text_corpus, human_speech=args.human_speech,
                               c2pa_peer=args.c2pa_peer, opencv_doc=args.opencv_doc,
                               out=None if args.no_write else args.out,
                               write_calibration=args.write_calibration,
                               progress=not args.json)
    else:
        result = dc.cmd_eval(cfg, args.detector, args.real, args.synthetic, limit=args.limit,
                             n_bootstrap=args.bootstrap)
    if args.json:
        _emit_json(result)
    elif args.detectors_verb in ("eval", "train") and result.get("metrics"):
        print(dc.metrics_table(result))
    elif args.detectors_verb == "report":
        print(result["markdown"])
    else:
        print(json.dumps({k: v for k, v in result.items() if k not in ("roc", "rows")},
                         indent=2, default=str))
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace) -> int:
    import importlib  # guardrail/ never imports dashboard/ statically (dependency direction)

    run = importlib.import_module("dashboard.cli").cmd_dashboard
    return int(run(_load_config(args), store_url=args.store, port=args.port))


def cmd_audit(args: argparse.Namespace) -> int:
    import importlib  # guardrail/ never imports audits/ statically (dependency direction)

    run = importlib.import_module("audits.cli").cmd_audit
    return int(run(_load_config(args), args))


BENCH_SUITES = ("overhead", "provenance", "image-watermark", "audio-watermark", "text-watermark",
                "verify")


def cmd_benchmark(args: argparse.Namespace) -> int:
    from . import bench

    cfg = _load_config(args)
    suites = args.suite or list(BENCH_SUITES)
    out = Path(args.out) if args.out else None
    results: dict[str, Any] = {}
    for suite in suites:
        if suite == "overhead":
            modalities = [Modality.parse(m) for m in (args.modality or ["text", "image", "audio"])]
            res = bench.run_benchmark(cfg, modalities=modalities, runs=args.runs, out=out,
                                      progress=not args.json)
        elif suite == "provenance":
            from .provenance.bench import render_markdown, run_provenance_benchmark

            res = run_provenance_benchmark(iterations=max(args.runs, 10))
            res["markdown"] = render_markdown(res)
        elif suite == "text-watermark":
            res = bench.run_text_watermark_speed(cfg, runs=args.runs, progress=not args.json)
        elif suite == "verify":
            res = bench.run_verify_benchmark(cfg, runs=max(args.runs, 10))
        else:
            from .watermark import speed

            fn = speed.image_speed if suite == "image-watermark" else speed.audio_speed
            res = fn(cfg, runs=max(args.runs, 10))
        if out is not None and suite != "overhead":
            bench.write_section(out, suite, res["markdown"])
        results[suite] = res
        if not args.json:
            print(res["markdown"])
    if args.json:
        _emit_json(results)
    elif out is not None:
        print(f"written to {out}")
    return EXIT_OK


# -- parser -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="config file (TOML)")
    common.add_argument("--store", metavar="URL", help="record store URL (overrides config)")
    common.add_argument("--data-dir", metavar="DIR", help="data folder (overrides config)")
    common.add_argument("-v", "--verbose", action="count", default=0, help="more logging")

    parser = argparse.ArgumentParser(
        prog="guardrail",
        description="Safety and provenance layer for generative AI.",
        epilog="exit codes: 0 ok, 2 usage, 3 blocked, 4 bad request, 5 model load, "
               "6 generation, 7 output, 8 config, 9 store, 10 stage, 11 missing extra, "
               "12 key file, 1 internal",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    g = sub.add_parser("generate", parents=[common], help="generate one guarded output")
    g.add_argument("--modality", required=True, help="text, image or audio")
    g.add_argument("--prompt", required=True)
    g.add_argument("--model", metavar="ID_OR_PATH", help="hub id or local path (default: embedded)")
    g.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="output file (.txt; .png/.jpg/.webp; .wav/.flac/.mp3)")
    g.add_argument("--seed", type=int)
    g.add_argument("--device", help="cpu, cuda, cuda:N (default: auto)")
    g.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="generation parameter, e.g. --param max_new_tokens=64 (repeatable)")
    g.add_argument("--store-prompts", action="store_true",
                   help="store the raw prompt in the report (off by default)")
    g.add_argument("--json", action="store_true", help="print the report as JSON")
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("reports", parents=[common], help="read the record store")
    rsub = r.add_subparsers(dest="reports_verb", metavar="VERB", required=True)
    rl = rsub.add_parser("list", parents=[common], help="list reports, newest first")
    rl.add_argument("--limit", type=int, default=20)
    rl.add_argument("--offset", type=int, default=0)
    rl.add_argument("--modality")
    rl.add_argument("--status", choices=["ok", "flagged", "blocked", "error"])
    rl.add_argument("--search", help="substring of report id, model, output or content hash")
    rl.add_argument("--json", action="store_true")
    rl.set_defaults(func=cmd_reports_list)
    rs = rsub.add_parser("show", parents=[common], help="show one report (id or unique prefix)")
    rs.add_argument("report_id")
    rs.add_argument("--json", action="store_true")
    rs.set_defaults(func=cmd_reports_show)

    d = sub.add_parser("demo", parents=[common],
                       help="one guarded generation per modality on the embedded defaults")
    d.add_argument("--out", metavar="DIR", help="output folder (default: <data_dir>/demo)")
    d.add_argument("--seed", type=int, default=7)
    d.add_argument("--evaluations", action="store_true",
                   help="also record a short text bias audit and a text detector "
                        "evaluation, so the dashboard's audit and detector pages have data "
                        "(a few more minutes; robustness runs: guardrail robustness)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("config", parents=[common], help="configuration")
    csub = c.add_subparsers(dest="config_verb", metavar="VERB", required=True)
    cs = csub.add_parser("show", parents=[common], help="print the effective configuration")
    cs.add_argument("--json", action="store_true")
    cs.set_defaults(func=cmd_config_show)

    k = sub.add_parser("keys", parents=[common], help="key files")
    ksub = k.add_subparsers(dest="keys_verb", metavar="VERB", required=True)
    ki = ksub.add_parser("init", parents=[common], help="create missing key files (mode 0600)")
    ki.add_argument("--json", action="store_true")
    ki.set_defaults(func=cmd_keys_init)

    w = sub.add_parser("watermark", parents=[common], help="embed or detect watermarks in files")
    wsub = w.add_subparsers(dest="watermark_verb", metavar="VERB", required=True)
    we = wsub.add_parser("embed", parents=[common], help="watermark an image or audio file")
    we.add_argument("file")
    we.add_argument("-o", "--output", required=True, metavar="OUT")
    we.add_argument("--scheme", help="watermark scheme (default: from config)")
    we.add_argument("--payload", metavar="HEX", help="watermark id in hex (default: random)")
    we.add_argument("--json", action="store_true")
    we.set_defaults(func=cmd_watermark_embed)
    wd = wsub.add_parser("detect", parents=[common],
                         help="look for guardrail's watermark in a file")
    wd.add_argument("file")
    wd.add_argument("--scheme", help="watermark scheme (default: from config)")
    wd.add_argument("--json", action="store_true")
    wd.set_defaults(func=cmd_watermark_detect)

    v = sub.add_parser("verify", parents=[common],
                       help="credentials, watermark, recovered record, detectors: one verdict")
    v.add_argument("file")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_verify)

    rb = sub.add_parser("robustness", parents=[common],
                        help="watermark robustness lab: attacks, TPR at the FPR, quality")
    rb.add_argument("--modality", required=True, help="image, audio or text")
    rb.add_argument("--quick", action="store_true", help="fewer items (a smoke run)")
    rb.add_argument("--out", metavar="FILE", help="also write a markdown section to FILE")
    rb.add_argument("--items", type=int, metavar="N",
                    help="text lab: number of generated texts (default 48; --quick 8)")
    rb.add_argument("--photos", metavar="DIR",
                    help="image lab: add the photographs in DIR (e.g. shared C2PA fixtures)")
    rb.add_argument("--json", action="store_true")
    rb.set_defaults(func=cmd_robustness)

    dt = sub.add_parser("detectors", parents=[common], help="synthetic-media detectors")
    dsub = dt.add_subparsers(dest="detectors_verb", metavar="VERB", required=True)
    dl = dsub.add_parser("list", parents=[common], help="registry, trained models, config")
    dl.add_argument("--json", action="store_true")
    dl.set_defaults(func=cmd_detectors)
    dtr = dsub.add_parser("train", parents=[common],
                          help="fit and calibrate a trainable detector on labelled folders")
    dtr.add_argument("kind", help="spectral (images), lfcc (audio), fast-detectgpt, binoculars")
    dtr.add_argument("real", metavar="REAL_DIR")
    dtr.add_argument("synthetic", metavar="SYNTHETIC_DIR")
    dtr.add_argument("--name", required=True)
    dtr.add_argument("--target-fpr", type=float)
    dtr.add_argument("--test-size", type=float, default=0.3)
    dtr.add_argument("--seed", type=int, default=0)
    dtr.add_argument("--limit", type=int)
    dtr.add_argument("--json", action="store_true")
    dtr.set_defaults(func=cmd_detectors)
    dev = dsub.add_parser("eval", parents=[common],
                          help="AUROC, EER, TPR at 1%% and 5%% FPR with bootstrap intervals")
    dev.add_argument("detector", help="registry name or trained:NAME")
    dev.add_argument("real", metavar="REAL_DIR")
    dev.add_argument("synthetic", metavar="SYNTHETIC_DIR")
    dev.add_argument("--limit", type=int)
    dev.add_argument("--bootstrap", type=int, default=1000)
    dev.add_argument("--json", action="store_true")
    dev.set_defaults(func=cmd_detectors)
    dco = dsub.add_parser("corpus", parents=[common],
                          help="write human vs generated texts of equal length (REAL/SYNTHETIC "
                               "folders) from text that ships offline")
    dco.add_argument("out", metavar="OUT_DIR")
    dco.add_argument("--samples", type=int, default=250)
    dco.add_argument("--length", type=int, default=128, help="tokens per text")
    dco.add_argument("--prefix", type=int, default=30, help="human tokens that prompt the model")
    dco.add_argument("--skip", type=int, default=0, help="skip the first N human passages")
    dco.add_argument("--seed", type=int, default=0)
    dco.add_argument("--json", action="store_true")
    dco.set_defaults(func=cmd_detectors)
    drp = dsub.add_parser("report", parents=[common],
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
    drp.set_defaults(func=cmd_detectors)

    db = sub.add_parser("dashboard", parents=[common],
                        help="open the read-only dashboard (Streamlit) on the record store")
    db.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    db.set_defaults(func=cmd_dashboard)

    au = sub.add_parser("audit", parents=[common],
                        help="bias audits of a generator and of the safety layer")
    ausub = au.add_subparsers(dest="audit_verb", metavar="VERB", required=True)
    ar = ausub.add_parser("run", parents=[common],
                          help="run a prompt suite through the guard; store the audit")
    ar.add_argument("suite", metavar="SUITE", help="shipped suite name (text-demographics) or "
                                                   "a suite file")
    for flags, options in (
            (("--generator",), {"metavar": "ID_OR_PATH", "help": "model (default: from config)"}),
            (("--samples",), {"type": int, "metavar": "N", "help": "generations per prompt"}),
            (("--seed",), {"type": int}),
            (("--device",), {"help": "cpu, cuda, cuda:N (default: auto)"}),
            (("--limit",), {"type": int, "metavar": "N", "help": "only the first N prompts"}),
            (("--name",), {"help": "name of the stored audit"}),
            (("--out",), {"metavar": "DIR", "help": "also export CSV, JSON and HTML into DIR"}),
            (("--no-resume",), {"action": "store_true",
                                "help": "start afresh instead of continuing an interrupted run"}),
            (("--store-prompts",), {"action": "store_true",
                                    "help": "store the raw prompts in the reports (off by default)"}),
            (("--json",), {"action": "store_true"})):
        ar.add_argument(*flags, **options)
    ar.set_defaults(func=cmd_audit)
    al = ausub.add_parser("list", parents=[common], help="stored audits, newest first")
    al.add_argument("--limit", type=int, default=50)
    al.add_argument("--json", action="store_true")
    al.set_defaults(func=cmd_audit)
    ash = ausub.add_parser("show", parents=[common], help="one audit: flags and disparities")
    ash.add_argument("audit_id", metavar="ID", help="audit id or unique prefix")
    ash.add_argument("--json", action="store_true")
    ash.set_defaults(func=cmd_audit)
    ae = ausub.add_parser("export", parents=[common], help="write an audit as CSV, JSON or HTML")
    ae.add_argument("audit_id", metavar="ID", help="audit id or unique prefix")
    ae.add_argument("--format", choices=["csv", "json", "html"],
                    help="default: from the file suffix")
    ae.add_argument("--out", required=True, metavar="FILE")
    ae.add_argument("--json", action="store_true")
    ae.set_defaults(func=cmd_audit)
    abn = ausub.add_parser("benchmark", parents=[common],
                           help="time a full text audit of the default generator")
    abn.add_argument("--samples", type=int, metavar="N", help="generations per prompt")
    abn.add_argument("--limit", type=int, metavar="N", help="only the first N prompts")
    abn.add_argument("--out", metavar="FILE", help="markdown file to update (a section)")
    abn.add_argument("--json", action="store_true")
    abn.set_defaults(func=cmd_audit)

    b = sub.add_parser("benchmark", parents=[common],
                       help="measure the guard's overhead per modality; writes docs/BENCHMARKS.md")
    b.add_argument("--suite", action="append", choices=BENCH_SUITES,
                   help="repeatable; default: every suite")
    b.add_argument("--modality", action="append",
                   help="overhead suite: repeatable; default: all three")
    b.add_argument("--runs", type=int, default=5, help="timed runs per arm (default 5)")
    b.add_argument("--out", metavar="FILE", help="markdown file to write (default: none)")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_benchmark)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    json_mode = bool(getattr(args, "json", False))
    try:
        return int(args.func(args))
    except GuardrailError as exc:
        if json_mode:
            _emit_json({"error": str(exc), "error_type": type(exc).__name__,
                        "exit_code": exc.exit_code, "report_id": exc.report_id})
        print(f"guardrail: error: {exc}", file=sys.stderr)
        if exc.report_id:
            print(f"guardrail: the failed request was recorded as report {exc.report_id}",
                  file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("guardrail: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        log.debug("internal error", exc_info=True)
        print(f"guardrail: internal error: {type(exc).__name__}: {exc} "
              "(run with -vv for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
