"""What every benchmark and evaluation report writes: the machine line, the time stamp and
named sections of a markdown file."""

from __future__ import annotations

import os
import platform
import re
from datetime import UTC, datetime
from pathlib import Path

from ..media import atomic_write

__all__ = ["BENCHMARKS_PREAMBLE", "machine_line", "now", "write_section"]

#: the head of ``docs/BENCHMARKS.md`` when the file is created
BENCHMARKS_PREAMBLE = (
    "# Benchmarks\n\nWritten by `guardrail benchmark` and the other benchmark commands; "
    "each section says how it was measured. Absolute times on a shared 2-core machine "
    "move from run to run; the ratios, measured side by side in one run, are the numbers "
    "to compare.\n")


def machine_line() -> str:
    """The machine a measurement ran on: architecture, cores, Python, operating system."""
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def now() -> str:
    """The current UTC time, to the second, in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_section(path: Path, name: str, markdown: str, *,
                  preamble: str = BENCHMARKS_PREAMBLE) -> None:
    """Replace (or append) the section ``name`` of a markdown file.

    A section lies between ``<!-- section:NAME:start -->`` and ``<!-- section:NAME:end -->``;
    the other sections of the file are kept. A missing file is created with ``preamble``.
    """
    start, end = f"<!-- section:{name}:start -->", f"<!-- section:{name}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else preamble
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else (
        text.rstrip() + "\n\n" + block + "\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode("utf-8"))
