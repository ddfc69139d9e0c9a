"""What the verbs of the ``guardrail`` command share: the common options, the exit codes,
the configuration built from the options, JSON output and the text of a report."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._types import Report
from ..config import Config
from ..errors import InputError

__all__ = [
    "EXIT_BLOCKED",
    "EXIT_BROKEN_PIPE",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNVERIFIED",
    "add_parser",
    "common_options",
    "emit_json",
    "load_config",
    "parse_params",
    "positive_int",
    "report_text",
]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BLOCKED = 3
#: ``guardrail verify``: the file could not be checked (the exit code of a bad request)
EXIT_UNVERIFIED = 4
EXIT_INTERRUPTED = 130
#: standard output was closed by its reader (128 + SIGPIPE, as for a command SIGPIPE stops)
EXIT_BROKEN_PIPE = 141


def common_options(*, verb: bool = False) -> argparse.ArgumentParser:
    """A parent parser with the options every verb takes.

    They are accepted before the verb (``guardrail --store URL reports list``) and after it
    (``guardrail reports list --store URL``). The top-level parser (``verb=False``) sets
    their defaults; a verb's parser (``verb=True``) leaves an option out of the result
    unless it is given (``argparse.SUPPRESS``), so a value after the verb overrides one
    before it and an absent one keeps it. ``-v`` counts within one place: given in both,
    the count after the verb wins.
    """
    unset = {"default": argparse.SUPPRESS} if verb else {}
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="config file (TOML)", **unset)
    common.add_argument("--store", metavar="URL", help="record store URL (overrides config)",
                        **unset)
    common.add_argument("--data-dir", metavar="DIR", help="data folder (overrides config)",
                        **unset)
    common.add_argument("-v", "--verbose", action="count",
                        help="more logging; also shows the libraries' own progress bars",
                        **(unset or {"default": 0}))
    common.add_argument("--progress", choices=("auto", "always", "never"),
                        help="guardrail's progress bars on stderr: auto (default: when stderr "
                             "is a terminal and without --json), always, never",
                        **(unset or {"default": "auto"}))
    return common


def add_parser(subparsers: Any, name: str, *, help: str, **kwargs: Any) -> argparse.ArgumentParser:
    """Add the verb (or sub-verb) ``name`` to ``subparsers``, with the common options
    (:func:`common_options`: given after the verb, they override the same ones before it).

    Parameters
    ----------
    subparsers
        What ``ArgumentParser.add_subparsers`` returned.
    name
        The word typed on the command line.
    help
        One line for ``--help``.
    **kwargs
        Passed on to ``add_parser`` (``description``, ``epilog``, ...).

    Returns
    -------
    argparse.ArgumentParser
        The new parser; set its handler with ``set_defaults(func=handler)``, where
        ``handler(args)`` returns the exit code.
    """
    return subparsers.add_parser(name, parents=[common_options(verb=True)], help=help, **kwargs)


def load_config(args: argparse.Namespace) -> Config:
    """The configuration named by ``--config``, with ``--store``, ``--store-prompts`` and
    ``--data-dir`` applied on top."""
    overrides: dict[str, Any] = {}
    if getattr(args, "store", None):
        overrides.setdefault("store", {})["url"] = args.store
    if getattr(args, "store_prompts", False):
        overrides.setdefault("store", {})["store_prompts"] = True
    if getattr(args, "data_dir", None):
        overrides.setdefault("paths", {})["data_dir"] = str(Path(args.data_dir).absolute())
    return Config.load(args.config, overrides=overrides)


def emit_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON (the ``--json`` output)."""
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def existing_dir(text: str) -> str:
    """An argparse ``type``: a folder that exists (``--photos``), so that a mistyped path is
    a usage error before any work starts, not a lab run on fewer photos."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"not an existing folder: {text!r}")
    return text


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number of at least 1 (``--workers``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_params(items: Sequence[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` options as a dict; a value is read as JSON when it parses as JSON."""
    params: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise InputError(f"--param {item!r}: expected KEY=VALUE")
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


def report_text(report: Report) -> str:
    """A report as the lines ``guardrail reports show`` prints."""
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
