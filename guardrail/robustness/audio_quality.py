"""Perceptual quality of marked audio: wideband PESQ (ITU-T P.862.2) of the marked clip
against the clip it was made from.

The signal-to-watermark ratio says how much energy a mark has, not how audible it is: two
marks at the same 30 dB can differ a great deal in where that energy lies - shaped under the
speech's own spectrum, or spread flat into its quiet chips. PESQ scores what a listener
would (MOS-LQO, about 1 to 4.64 in its wideband mode; 4.64 for identical signals), and is
what audio watermarking papers report beside the SNR.

PESQ comes from the ``pesq`` package (a wrapper of the ITU-T reference code, built from
source: ``pip install 'guardrail[quality]'`` needs a C compiler). Without it the lab reports
the quality as not measured and says why; nothing else changes. Both signals are mixed to
mono and resampled to 16 kHz, the rate wideband PESQ is defined at.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ..watermark import _chips as chips
from .audio_keyless import mono16

__all__ = ["PESQ_RATE", "Tally", "pesq_available", "pesq_wb", "pooled"]

#: The rate wideband PESQ is defined at (the chip grid's, which :func:`.audio_keyless.mono16`
#: resamples to).
PESQ_RATE = chips.FS


def pesq_available() -> str | None:
    """None when PESQ can be computed, else why not."""
    try:
        import pesq  # noqa: F401
    except ImportError as exc:
        return (f"PESQ not measured: the pesq package is not installed ({exc}; pip install "
                "'guardrail[quality]', which builds it with a C compiler)")
    return None


def pesq_wb(reference: np.ndarray, degraded: np.ndarray, sr: int) -> float:
    """Wideband PESQ (MOS-LQO) of ``degraded`` against ``reference`` (same rate ``sr``,
    mono or ``samples x channels``).

    Raises
    ------
    ValueError
        The signals differ in length, or PESQ cannot score them (no speech it can find, or
        too short); the message says which.
    ImportError
        The ``pesq`` package is not installed (:func:`pesq_available`).
    """
    import pesq

    ref, deg = mono16(reference, sr), mono16(degraded, sr)
    if ref.shape != deg.shape:
        raise ValueError(f"PESQ needs signals of one length, got {ref.shape[0]} and "
                         f"{deg.shape[0]} samples at {PESQ_RATE} Hz")
    if not (np.any(ref) and np.any(deg)):
        raise ValueError("PESQ cannot score a silent clip")
    try:
        return float(pesq.pesq(PESQ_RATE, ref, deg, "wb"))
    except pesq.PesqError as exc:  # no utterances found, buffer too short
        raise ValueError(f"PESQ cannot score this clip: {type(exc).__name__}: {exc}") from exc


class Tally:
    """Wideband PESQ of the marked clips of one lab run, one pair at a time (nothing kept
    but the scores): :meth:`add` each ``(reference, marked, rate)``, then :meth:`result`."""

    def __init__(self) -> None:
        self.why = pesq_available()
        self.scores: list[float] = []
        self.not_scored = 0

    def add(self, reference: np.ndarray, marked: np.ndarray, sr: int) -> None:
        if self.why is not None:
            return
        try:
            self.scores.append(pesq_wb(reference, marked, sr))
        except ValueError:
            self.not_scored += 1

    def result(self) -> dict[str, Any]:
        """``{"pesq_wb": {"mean", "min", "n", "not_scored"} | None, "reason": str | None}``:
        None, with the reason, when PESQ is not installed or scored no clip."""
        if self.why is not None:
            return {"pesq_wb": None, "reason": self.why}
        if not self.scores:
            return {"pesq_wb": None, "reason": f"PESQ scored none of {self.not_scored} clips"}
        return {"pesq_wb": {"mean": float(np.mean(self.scores)),
                            "min": float(np.min(self.scores)), "n": len(self.scores),
                            "not_scored": self.not_scored}, "reason": None}


def pooled(results: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """:meth:`Tally.result` of several runs (keys) as one: the mean weighted by the clips
    scored, the lowest minimum; not measured when no run was."""
    results = list(results)
    measured = [r["pesq_wb"] for r in results if r and r.get("pesq_wb")]
    if not measured:
        reasons = [r.get("reason") for r in results if r and r.get("reason")]
        return {"pesq_wb": None, "reason": reasons[0] if reasons else "PESQ not measured"}
    n = sum(m["n"] for m in measured)
    return {"pesq_wb": {"mean": sum(m["mean"] * m["n"] for m in measured) / n,
                        "min": min(m["min"] for m in measured), "n": n,
                        "not_scored": sum(m["not_scored"] for m in measured)}, "reason": None}
