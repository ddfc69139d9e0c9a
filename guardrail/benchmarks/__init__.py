"""Speed benchmarks and evaluation reports.

Every suite measures side by side in one run and returns its numbers with a ``markdown``
section; :func:`write_section` puts a section into a markdown file, keeping the others.

===================  ===============================================================
``overhead``         :mod:`~guardrail.benchmarks.overhead`: the guard's overhead per modality
``provenance``       :mod:`~guardrail.benchmarks.provenance`: C2PA sign and verify
``image-watermark``  :mod:`~guardrail.benchmarks.watermark`: image schemes at 1024x1024
``audio-watermark``  :mod:`~guardrail.benchmarks.watermark`: 10 s of speech
``text-watermark``   :mod:`~guardrail.benchmarks.watermark`: tokens/s with and without
``verify``           :mod:`~guardrail.benchmarks.verify`: ``guardrail verify`` on a JPEG
``dashboard``        :mod:`~guardrail.benchmarks.dashboard`: pages in a real browser, 100k reports
``scan``             :mod:`~guardrail.benchmarks.scan`: ``guardrail scan``, local and Ray engines
``serve``            :mod:`~guardrail.benchmarks.serve`: ``guardrail serve`` over HTTP
===================  ===============================================================

:mod:`~guardrail.benchmarks.detectors` writes ``docs/DETECTORS.md``
(``guardrail detectors report``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._types import Modality
from ..config import Config
from ._report import machine_line, now, write_section

__all__ = ["SUITES", "machine_line", "now", "run_suite", "section_name", "write_section"]

SUITES = ("overhead", "provenance", "image-watermark", "audio-watermark", "text-watermark",
          "verify", "dashboard", "scan", "serve")


def section_name(suite: str) -> str:
    """The name of the section ``suite`` writes in ``docs/BENCHMARKS.md``."""
    return "guard-overhead" if suite == "overhead" else suite


def run_suite(cfg: Config, suite: str, *, runs: int = 5,
              modalities: Sequence[Modality] = tuple(Modality),
              progress: bool = True) -> dict[str, Any]:
    """Run one suite of :data:`SUITES`.

    Parameters
    ----------
    cfg
        The configuration (models, keys, detectors, record store).
    suite
        The suite's name.
    runs
        Timed runs per arm; the provenance, watermark-speed and verify suites take at
        least 10.
    modalities
        The modalities of the ``overhead`` suite.
    progress
        Show progress bars.

    Returns
    -------
    dict
        The suite's numbers and its ``markdown`` section.
    """
    if suite == "overhead":
        from .overhead import run_overhead

        return run_overhead(cfg, modalities=modalities, runs=runs, progress=progress)
    if suite == "provenance":
        from .provenance import render_markdown, run_provenance_benchmark

        res = run_provenance_benchmark(iterations=max(runs, 10))
        res["markdown"] = render_markdown(res)
        return res
    if suite == "text-watermark":
        from .watermark import text_speed

        return text_speed(cfg, runs=runs, progress=progress)
    if suite == "verify":
        from .verify import run_verify_benchmark

        return run_verify_benchmark(cfg, runs=max(runs, 10))
    if suite == "serve":
        from .serve import run_serve_benchmark

        return run_serve_benchmark(cfg)
    if suite == "scan":
        from .scan import run_scan_benchmark

        return run_scan_benchmark(cfg)
    if suite == "dashboard":
        from .dashboard import run_dashboard_benchmark

        return run_dashboard_benchmark(progress=progress)
    if suite in ("image-watermark", "audio-watermark"):
        from .watermark import audio_speed, image_speed

        fn = image_speed if suite == "image-watermark" else audio_speed
        return fn(cfg, runs=max(runs, 10))
    raise ValueError(f"unknown benchmark suite {suite!r}; known: {', '.join(SUITES)}")
