"""``guardrail generate``: one guarded generation, recorded."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from .. import progress
from .._types import Modality
from ..errors import GuardrailError
from ..store import ReportStore
from ._common import (
    EXIT_BLOCKED,
    EXIT_OK,
    add_parser,
    emit_json,
    load_config,
    parse_params,
    report_text,
)

__all__ = ["register"]


class _Unloaded:
    """Stands in for a generator when the request is rejected before loading one."""

    def __init__(self, modality: Modality, model: str | None) -> None:
        from .._generator import ModelInfo

        self.modality = modality
        self.info = ModelInfo(model_id=model or f"(default {modality.value} model, not loaded)")

    def generate(self, prompts: Sequence[str], **_: Any) -> list[Any]:  # pragma: no cover
        raise GuardrailError("generator not loaded")


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate one output through the guard built from the configuration.

    Everything that can be checked without the model is checked (and a failure recorded)
    before it is loaded: the modality, the output path (a file is created and removed
    there), the prompt, and the key files of the enabled protective stages; the generation
    parameters are checked right after loading, before generating.
    """
    from ..factory import key_problem
    from ..guard import Guard, guard_from_config, record_failure

    cfg = load_config(args)
    params = parse_params(args.param)
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
        early = Guard(_Unloaded(modality, args.model), store=store, config=cfg,
                      stages=()).preflight(args.prompt, output=args.output)
        problem = key_problem(cfg) if early is None else None
        if problem is not None:
            slot, exc = problem
            record_failure(store, cfg, error=exc, stage=slot, prompt=args.prompt,
                           modality=modality, model_id=args.model or default_model,
                           passed=("input_policy",))
            raise exc
        if early is not None:
            result = early
        else:
            try:
                guard = guard_from_config(cfg, modality, model=args.model, device=args.device,
                                          store=store, progress=progress.library_bars())
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
        emit_json(report.to_dict())
    else:
        print(report_text(report))
        if result.artifact is not None and modality is Modality.TEXT:
            print("\n" + str(result.artifact.content))
        if report.status == "flagged":
            print("\nthe output was released but FLAGGED; see the stages above")
        if report.status == "blocked":
            print("\nthe output was BLOCKED; nothing was written")
    return EXIT_BLOCKED if report.status == "blocked" else EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``guardrail generate``."""
    g = add_parser(subparsers, "generate", help="generate one guarded output")
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
