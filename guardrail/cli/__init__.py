"""The ``guardrail`` command.

Every verb is an entry point of the ``guardrail.cli`` group (:mod:`guardrail.plugins`) naming
a ``register(subparsers)`` function, which adds the verb's parser with :func:`add_parser` and
sets its handler (``func``: the parsed arguments -> the exit code). guardrail's own verbs are
the modules of this package; the bias audits (``audit``) and the dashboard (``dashboard``)
register theirs the same way, and so does any installed package::

    [project.entry-points."guardrail.cli"]
    my-verb = "my_package.cli:register"

:func:`main` turns every error into its exit code, in one place.

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
9   the record store failed (or the report id was not found, or its prefix is ambiguous)
10  a stage failed and its policy is ``block``
11  an optional dependency is missing (the message names the extra to install)
12  a key file is missing, malformed or readable by others
130 interrupted
141 the reader of standard output went away (``guardrail config show | head``); no message
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from .. import plugins, progress
from ..errors import GuardrailError
from ._common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    add_parser,
    common_options,
    emit_json,
    load_config,
    positive_int,
)

__all__ = ["ORDER", "add_parser", "build_parser", "emit_json", "load_config", "main",
           "positive_int"]

log = logging.getLogger("guardrail")

#: the order of the verbs in ``guardrail --help``; verbs not listed follow, by name
ORDER = ("generate", "reports", "demo", "config", "keys", "watermark", "verify", "robustness",
         "detectors", "dashboard", "audit", "benchmark")


def verb_names() -> list[str]:
    """The registered verbs, in :data:`ORDER`, then by name."""
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(plugins.names(plugins.CLI), key=lambda name: (rank.get(name, len(ORDER)), name))


def build_parser() -> argparse.ArgumentParser:
    """The parser of every registered verb.

    A verb whose module cannot be imported (a plug-in missing one of its dependencies) is
    left out with a warning on stderr, so that it does not take the other verbs down.
    """
    parser = argparse.ArgumentParser(
        prog="guardrail",
        description="Safety and provenance layer for generative AI.",
        epilog="exit codes: 0 ok, 2 usage, 3 blocked, 4 bad request, 5 model load, "
               "6 generation, 7 output, 8 config, 9 store, 10 stage, 11 missing extra, "
               "12 key file, 1 internal",
        parents=[common_options()],
    )
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in verb_names():
        try:
            register = plugins.load(plugins.CLI, name)
        except ImportError as exc:
            print(f"guardrail: warning: the verb {name!r} is not available: {exc}",
                  file=sys.stderr)
            continue
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``guardrail`` command; returns its exit code."""
    args = build_parser().parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    # -v and -vv apply to the project's own loggers only: other libraries stay at WARNING,
    # since their debug output can hold the raw prompt (Piper logs the text it speaks)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    for name in ("guardrail", "generators", "audits", "dashboard"):
        logging.getLogger(name).setLevel(level)
    # guardrail's own bars (counts, ETA) on stderr; the libraries' bars only with -v
    progress.configure(args.progress, json_output=bool(getattr(args, "json", False)),
                       verbose=args.verbose)
    try:
        return _run(args)
    except BrokenPipeError:
        return _reader_gone()


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.func(args))
    except BrokenPipeError:
        raise
    except GuardrailError as exc:
        if getattr(args, "json", False):
            emit_json({"error": str(exc), "error_type": type(exc).__name__,
                       "exit_code": exc.exit_code, "report_id": exc.report_id})
        print(f"guardrail: error: {exc}", file=sys.stderr)
        if exc.report_id:
            print(f"guardrail: the failed request was recorded as report {exc.report_id}",
                  file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("guardrail: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        log.debug("internal error", exc_info=True)
        print(f"guardrail: internal error: {type(exc).__name__}: {exc} "
              "(run with -vv for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def _reader_gone() -> int:
    """The reader of standard output went away (``guardrail config show | head``): stop
    quietly with :data:`EXIT_BROKEN_PIPE`, as a command stopped by SIGPIPE does, and point
    standard output at ``/dev/null`` so that the final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout replaced by an object without a file descriptor
        pass
    return EXIT_BROKEN_PIPE
