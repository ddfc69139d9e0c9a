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

Against a scheme that reads louder chips as a view of their own (version 2,
``wm._loud``), the attacker also aims at them (``ADAPTIVE``): the ``chips`` estimate on the
chips that view reads (``loud``) or the scale search's louder view reads (``scale-loud``),
both copied and subtracted, and a removal of every chip's contrast followed by the louder
chips' of either (``chips+loud``, ``chips+scale-loud``: the pair of views of the unscaled
grid, or of the scale search).

Against a scheme with a coherent payload layer (version 3, ``wm._coh``), whose keyed
phases repeat every period of ``2 * PERIOD`` STFT frames, the attacker also averages an
output's complex band STFT over those periods (``coherent``: the layer's pattern, up to the
column signs that bind it to the content) and copies that, from one output and from ten.

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
itself (31 dB), as the image lab's 38 dB copies are 2.5 dB above the image mark. The removal
is also tried with less energy, at ``REMOVAL_SNRS_DB`` (up to the 38 dB the targets name):
how little an attacker needs tells more than one setting; and at 38 dB followed by a 3 %
speed change (``REMOVAL_THEN``), which sends the detector to its scale search. Each rate
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
from .audio_attacks import speed

__all__ = ["ADAPTIVE", "ATTACK_SNR_DB", "COHERENT_ESTIMATES", "ESTIMATES", "ESTIMATORS",
           "REMOVAL_SNRS_DB", "estimate_coherent", "estimate_pattern", "imprint",
           "imprint_coherent", "keyless_trials", "mono16"]

#: (number of marked outputs, estimator) of the copy and removal attacks.
ESTIMATES: tuple[tuple[int, str], ...] = ((1, "fold"), (1, "chips"), (10, "fold"),
                                          (10, "chips"))
ESTIMATORS = ("fold", "chips")
#: Signal-to-attack ratio (dB) of copies and removals.
ATTACK_SNR_DB = 28.0
#: Further signal-to-attack ratios (dB) of the removal (rows ``removal(...) at N dB``).
REMOVAL_SNRS_DB = (34.0, 38.0)
#: Removals aimed at a scheme's louder views (schemes with ``_loud``: version 2): ``loud``
#: the ``chips`` estimate on the chips its unscaled louder view reads, ``scale-loud`` on
#: those its scale search's louder view reads, ``chips+loud`` the ``chips`` estimate first
#: (at ``QUIET_SHARE_DB`` less energy than the budget: enough to flatten the quiet chips)
#: and then ``loud`` with the rest, ``chips+scale-loud`` the same with ``scale-loud``.
#: ``loud`` and ``scale-loud`` from one output are also copied.
ADAPTIVE = ("loud", "scale-loud", "chips+loud", "chips+scale-loud")
QUIET_SHARE_DB = 4.0
#: Copies aimed at a coherent layer (schemes with ``_coh``: version 3), from 1 and 10 outputs.
COHERENT_ESTIMATES = ((1, "coherent"), (10, "coherent"))
#: The removal at this ratio (dB) followed by a speed change of this factor (row
#: ``removal(...) at 38 dB + speed(1.03)``).
REMOVAL_THEN = (38.0, 1.03)

Clip = tuple[np.ndarray, int]


def mono16(x: np.ndarray, sr: int) -> np.ndarray:
    """``x`` (mono, or ``samples x channels``) mixed to mono at the chip grid's 16 kHz."""
    x = np.asarray(x, dtype=np.float32)
    return resample(mix(x if x.ndim == 2 else x[:, None]), int(sr), chips.FS)


def _grid(x16: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    spec = chips.stft(x16)
    energy = chips.chip_energy(spec, 0)
    row_ok = chips.rows_ok(sr)
    return spec, energy, row_ok, chips.active_columns(energy, row_ok, SILENCE_DBFS)


def _one_estimate(x: np.ndarray, sr: int, estimator: str,
                  keep: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """The estimate from one marked output (see :func:`estimate_pattern`); ``keep``, given,
    maps the output's smoothed chip logs to the chips the estimate keeps (1) or drops (0)."""
    _spec, energy, row_ok, active = _grid(mono16(x, sr), sr)
    r, w = chips.residuals(energy, active, row_ok)
    if keep is not None:
        w = w * keep(chips.smooth_logs(energy, chips.rows_ok(chips.FS)))
    v = chips.weighted(r, w)
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
    x16 = mono16(x, sr)
    spec, energy, row_ok, active = _grid(x16, sr)
    p = np.asarray(pattern, dtype=np.float64)
    p = p / (float(np.std(p)) + 1e-12)
    gain = chips.allocation(energy, active, row_ok) * p[np.arange(energy.shape[0]) % len(p)]
    want = float(np.sum(x16.astype(np.float64) ** 2)) * 10.0 ** (-snr_db / 10.0)
    gain = sign * chips.scaled(gain, energy, want)
    # written the way the embedder writes its pattern (the same synthesis)
    return _per_channel(x, lambda xc: chips.add_change(xc, int(sr), x16, spec, gain, snr_db))


def _per_channel(x: np.ndarray, write: Callable[[np.ndarray], np.ndarray | None]
                 ) -> np.ndarray:
    """``write`` applied to ``x`` as ``samples x channels``, returned in ``x``'s shape; ``x``
    unchanged where ``write`` has nothing to add (None)."""
    out = write(x if x.ndim == 2 else x[:, None])
    if out is None:
        return x.copy()
    return out if x.ndim == 2 else out[:, 0]


def estimate_coherent(x: np.ndarray, sr: int) -> np.ndarray:
    """Keyless estimate of a coherent layer from one marked output: its complex STFT in the
    marked band averaged over the periods of ``2 * PERIOD`` frames (``2 * PERIOD x bins``)."""
    spec = chips.stft(mono16(x, sr))[:, chips.ROW0:chips.ROW1]
    period = chips.CHIP_FRAMES * PERIOD
    n = spec.shape[0] // period
    if n == 0:
        raise ValueError("a coherent estimate needs at least one period of audio")
    return spec[: n * period].reshape(n, period, -1).mean(axis=0)


def imprint_coherent(x: np.ndarray, sr: int, pattern: np.ndarray,
                     snr_db: float = ATTACK_SNR_DB) -> np.ndarray:
    """``x`` with a coherent estimate (:func:`estimate_coherent`) tiled over its frames and
    added at exactly ``snr_db`` dB signal-to-change ratio (same shape, ``float32``)."""
    x = np.asarray(x, dtype=np.float32)
    x16 = mono16(x, sr)
    spec = chips.stft(x16)
    full = np.zeros(spec.shape, dtype=np.complex64)
    full[:, chips.ROW0:chips.ROW1] = pattern[np.arange(spec.shape[0]) % len(pattern)]
    delta16 = chips.istft(full, x16.shape[0])
    return _per_channel(x, lambda xc: chips.add_delta(xc, int(sr), delta16, snr_db))


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
                   removal_snrs: Sequence[float] = REMOVAL_SNRS_DB,
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
    removal_snrs : sequence of float
        Further signal-to-attack ratios of the removal (besides ``snr_db``).

    Returns
    -------
    dict
        ``{"copy": {label: rate}, "removal": {label: rate}, "removal_sweep": {label: rate},
        "snr_db": snr_db}`` with labels such as ``copy(10, 'fold')`` and (the sweep)
        ``removal(1, 'chips') at 38 dB``; each rate has ``n``, ``positives``, ``rate``,
        ``ci_low`` and ``ci_high``; copy rates also ``victim_ids`` (copies that decoded a
        donor's id) and ``ai_verdicts`` (of those, the ones the victim's recorded content
        fingerprint binds: ``verify`` would call the copy AI-generated).
    """
    from ..fingerprint import fingerprint

    note = say or (lambda _m: None)
    outs = [(x, sr) for x, sr, _p in donors]
    recorded = {f"{p:08x}": fingerprint(_art(x, sr)) for x, sr, p in donors}
    per_output: dict[str, list[np.ndarray]] = {}  # each donor's estimate, made once
    out: dict[str, Any] = {"copy": {}, "removal": {}, "removal_sweep": {}, "snr_db": snr_db}
    sweep = [float(s) for s in removal_snrs if float(s) != float(snr_db)]
    then = speed(REMOVAL_THEN[1]) if REMOVAL_THEN[0] in sweep else None
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
        cp = _copies(wm, targets, ests, n, label, recorded, snr_db, out)
        rm = _removal(wm, marked, _subtract(est, ests, n), label, snr_db, sweep, then, out)
        note(f"{wm.scheme}: copy{label}: {cp}; removal: {rm}")
    if hasattr(wm, "_loud"):  # copies and removals aimed at the scheme's louder views
        for est in ADAPTIVE:
            if not est.startswith("chips+"):  # the splits have nothing of their own to copy
                ests = [_aimed(wm, x, sr, est) for x, sr in outs]
                cp = _copies(wm, targets, ests, 1, f"(1, {est!r})", recorded, snr_db, out)
                note(f"{wm.scheme}: copy(1, {est!r}): {cp}")
            rm = _removal(wm, marked, lambda _j, x, sr, s, e=est: _adaptive(wm, x, sr, e, s),
                          f"(1, {est!r})", snr_db, sweep, then, out)
            note(f"{wm.scheme}: removal(1, {est!r}): {rm}")
    if hasattr(wm, "_coh"):  # copies aimed at the coherent layer
        ests = [estimate_coherent(x, sr) for x, sr in outs]
        for n, est in COHERENT_ESTIMATES:
            if n <= len(ests):
                cp = _copies(wm, targets, ests, n, f"({n}, {est!r})", recorded, snr_db, out,
                             write=imprint_coherent)
                note(f"{wm.scheme}: copy({n}, {est!r}): {cp}")
    return out


def _copies(wm: Any, targets: Sequence[Clip], ests: Sequence[np.ndarray], n: int,
            label: str, recorded: dict[str, Any], snr_db: float, out: dict[str, Any], *,
            write: Callable[..., np.ndarray] = imprint) -> str:
    """The copy row of one estimate: the mean of ``n`` donors' estimates (in turn) written
    into each target at ``snr_db`` (by ``write``); a summary for the notes."""
    hits = victims = ai = 0
    for j, (x, sr) in enumerate(targets):
        pattern = _combined([ests[(j + i) % len(ests)] for i in range(n)])
        forged = write(x, sr, pattern, snr_db)
        res = wm.detect(_art(forged, sr))
        hits += bool(res.detected)
        if res.detected and res.payload in recorded:
            victims += 1
            ai += _binds(recorded[res.payload], forged, sr)
    out["copy"][f"copy{label}"] = {**_rate(hits, len(targets)), "victim_ids": victims,
                                   "ai_verdicts": ai}
    return (f"{hits}/{len(targets)} copies detected ({victims} with a victim's id, {ai} "
            "matching its record)")


def _subtract(est: str, ests: Sequence[np.ndarray], n: int
              ) -> Callable[[int, np.ndarray, int, float], np.ndarray]:
    """The removal of the ``j``-th marked clip's own estimate averaged with ``n - 1`` donors'
    (made once per clip), at a given ratio."""
    own: dict[int, np.ndarray] = {}

    def clean(j: int, x: np.ndarray, sr: int, snr_db: float) -> np.ndarray:
        if j not in own:
            own[j] = _combined([_one_estimate(x, sr, est)]
                               + [ests[(j + i) % len(ests)] for i in range(n - 1)])
        return imprint(x, sr, own[j], snr_db, sign=-1.0)

    return clean


def _removal(wm: Any, marked: Sequence[tuple[np.ndarray, int, int]],
             clean: Callable[[int, np.ndarray, int, float], np.ndarray], label: str,
             snr_db: float, sweep: Sequence[float], then: Any, out: dict[str, Any]) -> str:
    """The removal rows of one estimate (``clean(j, x, sr, snr_db)`` removes it from the
    ``j``-th marked clip): at ``snr_db``, at each ratio of ``sweep`` and, when ``then`` is
    given, at ``REMOVAL_THEN[0]`` followed by it; a summary for the notes."""
    kept, kept_at, kept_then = 0, dict.fromkeys(sweep, 0), 0
    for j, (x, sr, _p) in enumerate(marked):
        kept += bool(wm.detect(_art(clean(j, x, sr, snr_db), sr)).detected)
        for s in sweep:
            cleaned = _art(clean(j, x, sr, s), sr)
            kept_at[s] += bool(wm.detect(cleaned).detected)
            if then is not None and s == REMOVAL_THEN[0]:
                kept_then += bool(wm.detect(then(cleaned)).detected)
    out["removal"][f"removal{label}"] = _rate(kept, len(marked))
    for s in sweep:
        out["removal_sweep"][f"removal{label} at {s:g} dB"] = _rate(kept_at[s], len(marked))
    if then is not None:
        out["removal_sweep"][f"removal{label} at {REMOVAL_THEN[0]:g} dB + "
                             f"{then.label}"] = _rate(kept_then, len(marked))
    return (f"{kept}/{len(marked)} still detected"
            + "".join(f", at {s:g} dB {kept_at[s]}" for s in sweep)
            + (f", at {REMOVAL_THEN[0]:g} dB + {then.label} {kept_then}" if then else ""))


def _loud_estimate(wm: Any, x: np.ndarray, sr: int, below_db: float | None) -> np.ndarray:
    """The ``chips`` estimate of one output restricted to the chips ``wm``'s louder view
    reads (``below_db``: its loudness rule's margin; ``None``: the unscaled view's)."""
    return _one_estimate(x, sr, "chips", keep=lambda logs: wm._loud(logs, below_db=below_db))


def _aimed(wm: Any, x: np.ndarray, sr: int, view: str) -> np.ndarray:
    """The ``chips`` estimate of ``x`` on the chips ``wm``'s louder ``view`` reads
    (``loud``: the unscaled grid's; ``scale-loud``: the scale search's, every chip when it
    has no louder view)."""
    if view == "loud":
        return _loud_estimate(wm, x, sr, None)
    below = getattr(wm, "scale_loud_db", None)
    return _one_estimate(x, sr, "chips") if below is None else _loud_estimate(wm, x, sr, below)


def _adaptive(wm: Any, x: np.ndarray, sr: int, estimator: str, snr_db: float) -> np.ndarray:
    """``x`` after the adaptive removal ``estimator`` (:data:`ADAPTIVE`) at ``snr_db``."""
    if not estimator.startswith("chips+"):
        return imprint(x, sr, _aimed(wm, x, sr, estimator), snr_db, sign=-1.0)
    # chips+<view>: the quiet chips first, with QUIET_SHARE_DB less energy than the whole
    # budget, then the view's louder ones with the rest; the two changes overlap, so their
    # sum is scaled to the budget exactly
    quiet = snr_db + QUIET_SHARE_DB
    rest = -10.0 * np.log10(10.0 ** (-snr_db / 10.0) - 10.0 ** (-quiet / 10.0))
    y = imprint(x, sr, _one_estimate(x, sr, "chips"), quiet, sign=-1.0)
    y = imprint(y, sr, _aimed(wm, y, sr, estimator[len("chips+"):]), float(rest), sign=-1.0)
    out = chips.add_at_snr(x, y.astype(np.float64) - x, snr_db)
    return y if out is None else out
