"""Keyless copy and removal attacks on guardrail's audio watermark (part of the audio lab).

The attacker holds marked outputs of one key and no key; the algorithm is public
(Kerckhoffs): the 16 kHz STFT grid, the chips (32 ms x 125 Hz) in 500-7000 Hz, the
detector's key-independent chip residuals (:func:`guardrail.watermark._chips.residuals`)
and the pattern's period of ``PERIOD`` chip columns (1.024 s). Estimators
(:func:`estimate_pattern`):

* ``fold``: each output's weighted chip residuals averaged over the positions of the public
  period - the estimate a pattern that repeats within a clip invites;
* ``chips``: the same residuals column by column from the start of the output, without the
  period - what an attacker gets from a pattern that does not repeat within a clip but is
  the same in every output of a key.

From ``n`` outputs the estimates are averaged (every output starts at the pattern's first
column). :func:`imprint` writes an estimate into other audio the way the embedder writes its
pattern - each chip's magnitude times ``1 + g``, ``g`` the estimate tiled over the clip's
columns and shaped by the perceptual allocation of *that* audio, synthesised as an additive
signal - scaled to an exact signal-to-watermark ratio. :func:`keyless_trials` measures:

* **copy**: the estimate added to unrelated, unmarked audio (other speech, recorded human
  speech where installed) - how much of it detects (an image copy's target is at most 1 in
  100), how many copies carry a victim's id, and how many ``guardrail verify`` would call
  AI-generated (a victim's id whose record's content fingerprint - the envelope of the
  victim's marked output, as the guard records it - also binds the copy; target: none);
* **removal**: the estimate from the marked clip itself (plus ``n - 1`` other outputs)
  subtracted - how many marked clips are still detected (target >= 95 %).

Both at ``ATTACK_SNR_DB`` = 28 dB signal-to-attack ratio: 3 dB more energy than the mark
itself (31 dB), as the image lab's 38 dB copies are 2.5 dB above the image mark. Each rate
comes with its 95 % Clopper-Pearson interval and ``n``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._types import Artifact, GenerationMetadata, Modality
from ..signal import resample
from ..stats import clopper_pearson
from ..watermark import _chips as chips
from ..watermark.audio import PERIOD, SILENCE_DBFS
from ..watermark.base import mix

__all__ = ["ATTACK_SNR_DB", "ESTIMATES", "ESTIMATORS", "estimate_pattern", "imprint",
           "keyless_trials"]

#: (number of marked outputs, estimator) of the copy and removal attacks.
ESTIMATES: tuple[tuple[int, str], ...] = ((1, "fold"), (1, "chips"), (10, "fold"),
                                          (10, "chips"))
ESTIMATORS = ("fold", "chips")
#: Signal-to-attack ratio (dB) of copies and removals.
ATTACK_SNR_DB = 28.0

Clip = tuple[np.ndarray, int]


def _mono16(x: np.ndarray, sr: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return resample(mix(x if x.ndim == 2 else x[:, None]), int(sr), chips.FS)


def _grid(x16: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    spec = chips.stft(x16)
    energy = chips.chip_energy(spec, 0)
    row_ok = chips.rows_ok(sr)
    return spec, energy, row_ok, chips.active_columns(energy, row_ok, SILENCE_DBFS)


def _one_estimate(x: np.ndarray, sr: int, estimator: str) -> np.ndarray:
    """The estimate from one marked output (see :func:`estimate_pattern`)."""
    _spec, energy, row_ok, active = _grid(_mono16(x, sr), sr)
    v = chips.weighted(*chips.residuals(energy, active, row_ok))
    if estimator == "chips":
        return v
    cols = np.arange(v.shape[0]) % PERIOD
    acc = np.zeros((PERIOD, v.shape[1]))
    n = np.zeros((PERIOD, 1))
    np.add.at(acc, cols, v)
    np.add.at(n, cols, active[:, None].astype(np.float64))
    return acc / np.maximum(n, 1.0)


def _combined(ests: Sequence[np.ndarray]) -> np.ndarray:
    """The mean of per-output estimates, over the columns they all have."""
    m = min(e.shape[0] for e in ests)
    return np.mean([e[:m] for e in ests], axis=0)


def _check_estimator(estimator: str) -> None:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(map(repr, ESTIMATORS))}, "
                         f"got {estimator!r}")


def estimate_pattern(outputs: Sequence[Clip], estimator: str = "fold") -> np.ndarray:
    """Keyless estimate of the chip pattern (columns x chip rows, float64) from marked
    outputs ``(samples, sample_rate)`` of one key (see the module notes)."""
    _check_estimator(estimator)
    if not outputs:
        raise ValueError("estimating a mark needs at least one marked output")
    return _combined([_one_estimate(x, sr, estimator) for x, sr in outputs])


def imprint(x: np.ndarray, sr: int, pattern: np.ndarray, snr_db: float = ATTACK_SNR_DB, *,
            sign: float = 1.0) -> np.ndarray:
    """``x`` (``N`` or ``N x C`` samples at ``sr``) with ``sign * pattern`` written into its
    chips (tiled over its columns, shaped by its own allocation) at exactly ``snr_db`` dB
    signal-to-change ratio; the same shape, ``float32`` in ``[-1, 1]``. Audio with no chip
    that can carry it (silent in the band) is returned unchanged."""
    x = np.asarray(x, dtype=np.float32)
    x16 = _mono16(x, sr)
    spec, energy, row_ok, active = _grid(x16, sr)
    p = np.asarray(pattern, dtype=np.float64)
    p = p / (float(np.std(p)) + 1e-12)
    gain = chips.allocation(energy, active, row_ok) * p[np.arange(energy.shape[0]) % len(p)]
    want = float(np.sum(x16.astype(np.float64) ** 2)) * 10.0 ** (-snr_db / 10.0)
    gain = sign * chips.scaled(gain, energy, want)
    # written the way the embedder writes its pattern (the same synthesis)
    out = chips.add_change(x if x.ndim == 2 else x[:, None], int(sr), x16, spec, gain, snr_db)
    if out is None:
        return x.copy()
    return out if x.ndim == 2 else out[:, 0]


def _art(x: np.ndarray, sr: int) -> Artifact:
    return Artifact(modality=Modality.AUDIO, content=np.asarray(x, dtype=np.float32),
                    metadata=GenerationMetadata(model_id="eval"), sample_rate=int(sr))


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = clopper_pearson(k, n)
    return {"n": n, "positives": k, "rate": k / n if n else None, "ci_low": lo, "ci_high": hi}


def _binds(recorded: str, x: np.ndarray, sr: int) -> bool:
    """Whether ``guardrail verify`` binds this audio to a record that keeps ``recorded``
    (the content-binding rule of :func:`guardrail.verify.record_match`)."""
    from ..errors import UnsupportedMediaError
    from ..fingerprint import observe
    from ..fingerprint_region import bind

    art = _art(x, sr)
    try:
        return bool(bind(observe(art), recorded, None, art, None)[0])
    except UnsupportedMediaError:
        return False


def keyless_trials(wm: Any, donors: Sequence[tuple[np.ndarray, int, int]],
                   targets: Sequence[Clip], marked: Sequence[tuple[np.ndarray, int, int]], *,
                   estimates: Sequence[tuple[int, str]] = ESTIMATES,
                   snr_db: float = ATTACK_SNR_DB,
                   say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Copy and removal attacks against one audio scheme instance (key and ``fpr``).

    Parameters
    ----------
    wm : Watermarker
        The scheme under test; ``detect`` decides at its ``fpr``.
    donors : list of (marked samples, sample rate, payload)
        Marked outputs of the key the attacker collected (at least the largest ``n``).
    targets : list of (samples, sample rate)
        Unrelated, unmarked audio the copies go onto.
    marked : list of (marked samples, sample rate, payload)
        Marked clips the removal is tried on (each uses itself plus ``n - 1`` donors).

    Returns
    -------
    dict
        ``{"copy": {label: rate}, "removal": {label: rate}, "snr_db": snr_db}`` with labels
        such as ``copy((10, 'fold'))``; each rate has ``n``, ``positives``, ``rate``,
        ``ci_low`` and ``ci_high``; copy rates also ``victim_ids`` (copies that decoded a
        donor's id) and ``ai_verdicts`` (of those, the ones the victim's recorded content
        fingerprint binds: ``verify`` would call the copy AI-generated).
    """
    from ..fingerprint import fingerprint

    note = say or (lambda _m: None)
    outs = [(x, sr) for x, sr, _p in donors]
    recorded = {f"{p:08x}": fingerprint(_art(x, sr)) for x, sr, p in donors}
    per_output: dict[str, list[np.ndarray]] = {}  # each donor's estimate, made once
    out: dict[str, Any] = {"copy": {}, "removal": {}, "snr_db": snr_db}
    for n, est in estimates:
        if n > len(outs):
            note(f"{wm.scheme}: copy and removal from {n} outputs not run: {len(outs)} marked "
                 "outputs held")
            continue
        _check_estimator(est)
        if est not in per_output:
            per_output[est] = [_one_estimate(x, sr, est) for x, sr in outs]
        ests = per_output[est]
        label = f"({n}, {est!r})"
        hits = victims = ai = 0
        for j, (x, sr) in enumerate(targets):
            pattern = _combined([ests[(j + i) % len(ests)] for i in range(n)])
            forged = imprint(x, sr, pattern, snr_db)
            res = wm.detect(_art(forged, sr))
            hits += bool(res.detected)
            if res.detected and res.payload in recorded:
                victims += 1
                ai += _binds(recorded[res.payload], forged, sr)
        out["copy"][f"copy{label}"] = {**_rate(hits, len(targets)), "victim_ids": victims,
                                       "ai_verdicts": ai}
        kept = 0
        for j, (x, sr, _p) in enumerate(marked):
            own = [_one_estimate(x, sr, est)] + [ests[(j + i) % len(ests)] for i in range(n - 1)]
            cleaned = imprint(x, sr, _combined(own), snr_db, sign=-1.0)
            kept += bool(wm.detect(_art(cleaned, sr)).detected)
        out["removal"][f"removal{label}"] = _rate(kept, len(marked))
        note(f"{wm.scheme}: copy{label}: {hits}/{len(targets)} copies detected ({victims} "
             f"with a victim's id, {ai} matching its record); removal: {kept}/{len(marked)} "
             "still detected")
    return out
