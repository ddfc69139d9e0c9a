"""The chip grid of ``guardrail-audio``: STFT analysis at 16 kHz, chip energies, the
perceptual allocation and the key-independent residuals its detector reads.

Nothing here depends on the key: :mod:`guardrail.watermark.audio` lays its keyed pattern
over these chips (see its module notes for the design).
"""

from __future__ import annotations

import math

import numpy as np

from ..signal import fft_module, resample

__all__ = ["A_MAX", "BAND", "CHIP_BINS", "CHIP_FRAMES", "FS", "HOP", "N_FFT", "N_ROWS", "ROW0",
           "ROW1", "active_columns", "add_change", "add_delta", "allocation", "chip_energy",
           "istft", "log_floor", "residuals", "rows_ok", "scaled", "smooth_logs", "spread",
           "stft", "weighted"]

#: Internal analysis rate (Hz), STFT size and hop (samples at that rate).
FS = 16000
N_FFT = 512
HOP = 256
#: A chip is ``CHIP_FRAMES`` STFT frames by ``CHIP_BINS`` bins (32 ms x 125 Hz).
CHIP_FRAMES = 2
CHIP_BINS = 4
#: Marked band (Hz).
BAND = (500.0, 7000.0)
#: Silence: a column's level relative to the loud part of the clip (dB) below which it is
#: neither marked nor read.
SILENCE_REL_DB = -30.0
#: Allocation exponent on the smoothed chip energy, cap of the relative change, and chips
#: this far below the loudest chip of their column (dB) are neither marked nor read.
ALLOC_EXP = -0.4
A_MAX = 0.5
DYN_RANGE_DB = 60.0
#: Residuals are clipped to this many nats; noise-floor quantile over rows (percent) and
#: exponent of the chip-SNR weight.
R_CLIP = 3.0
FLOOR_ROW_QUANTILE = 20.0
#: Rows whose floor is this far (dB) below the median row's are left out of the quantile.
STOPBAND_DB = 30.0
SNR_WEIGHT_EXP = 3.0
#: Smoothed log energies (a content field's input) are taken above a floor this far (dB)
#: below the 90th percentile of the band's smoothed chip energies.
LOG_FLOOR_DB = -50.0

ROW0 = int(round(BAND[0] / (FS / N_FFT)))
N_ROWS = int(round((BAND[1] - BAND[0]) / (FS / N_FFT))) // CHIP_BINS
ROW1 = ROW0 + N_ROWS * CHIP_BINS  # one past the last marked bin
# chip-energy sum of a column -> mean square of the band signal (sqrt-Hann, Parseval)
_LEVEL_SCALE = 4.0 / (N_FFT * N_FFT * CHIP_FRAMES)
_WINDOW = np.sqrt(np.hanning(N_FFT + 1)[:-1]).astype(np.float32)


def stft(x: np.ndarray) -> np.ndarray:
    n = (x.shape[0] - N_FFT) // HOP + 1
    if n <= 0:
        return np.zeros((0, N_FFT // 2 + 1), dtype=np.complex64)
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP][:n]
    return fft_module().rfft(frames * _WINDOW, axis=1)


def istft(spec: np.ndarray, length: int) -> np.ndarray:
    """Overlap-add synthesis (square-root Hann, 50 % overlap: perfect reconstruction)."""
    frames = fft_module().irfft(spec, N_FFT, axis=1).astype(np.float32) * _WINDOW
    out = np.zeros(length, dtype=np.float32)
    for p in (0, 1):  # even frames do not overlap each other, nor do odd ones
        seg = frames[p::2].ravel()
        start = p * HOP
        m = max(0, min(seg.shape[0], length - start))
        out[start:start + m] += seg[:m]
    return out


def chip_energy(spec: np.ndarray, phase: int) -> np.ndarray:
    """Chip energies (columns x rows) of an STFT, the columns starting at frame ``phase``."""
    band = spec[phase:, ROW0:ROW1]
    power = band.real ** 2 + band.imag ** 2
    ncol = power.shape[0] // CHIP_FRAMES
    power = power[: ncol * CHIP_FRAMES].reshape(ncol, CHIP_FRAMES, N_ROWS, CHIP_BINS)
    return power.sum(axis=(1, 3), dtype=np.float64)


def rows_ok(sr: int) -> np.ndarray:
    """Chip rows that lie below 0.45 x the sample rate (usable at that rate)."""
    top = (ROW0 + (np.arange(N_ROWS) + 1) * CHIP_BINS) * FS / N_FFT
    return top <= 0.45 * sr


def active_columns(energy: np.ndarray, row_ok: np.ndarray, floor_dbfs: float) -> np.ndarray:
    """Columns with signal in the band: above ``floor_dbfs`` and within 30 dB of the loud
    part of the clip."""
    col = energy[:, row_ok].sum(axis=1)
    if col.size == 0:
        return np.zeros(0, dtype=bool)
    ref = float(np.percentile(col, 90))
    loud = col > ref * 10.0 ** (SILENCE_REL_DB / 10.0)
    return loud & (col * _LEVEL_SCALE > 10.0 ** (floor_dbfs / 10.0))


def _smooth3(e: np.ndarray) -> np.ndarray:
    """3 x 3 moving average with edge replication."""
    p = np.pad(e, 1, mode="edge")
    rows = p[:-2] + p[1:-1] + p[2:]
    return (rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]) / 9.0


def allocation(energy: np.ndarray, active: np.ndarray, row_ok: np.ndarray) -> np.ndarray:
    """Relative amplitude shape per chip (unscaled): ``env ** ALLOC_EXP``.

    Zero on silent columns, on rows above the usable band and on chips more than
    ``DYN_RANGE_DB`` below the loudest chip of their column.
    """
    a = (_smooth3(energy) + 1e-30) ** ALLOC_EXP
    a *= active[:, None]
    a *= row_ok[None, :]
    a *= energy >= energy.max(axis=1, keepdims=True) * 10.0 ** (-DYN_RANGE_DB / 10.0)
    return a


def log_floor(smoothed: np.ndarray) -> float:
    """The floor added before the log of smoothed chip energies (:data:`LOG_FLOOR_DB`
    below their 90th percentile; relative, so that a gain change shifts every log alike)."""
    if smoothed.size == 0:
        return 1e-30
    return float(np.percentile(smoothed, 90)) * 10.0 ** (LOG_FLOOR_DB / 10.0) + 1e-30


def smooth_logs(energy: np.ndarray, row_ok: np.ndarray) -> np.ndarray:
    """Log of each chip's energy averaged over its 3 x 3 chip neighbourhood, above
    :func:`log_floor` (chips x rows)."""
    s3 = _smooth3(energy)
    return np.log(s3 + log_floor(s3[:, row_ok]))


def flat_floor(per_row: np.ndarray) -> float:
    """A flat noise floor from each usable row's 10th percentile in time: their
    ``FLOOR_ROW_QUANTILE`` % quantile (a sustained tone raises one row, not the quantile),
    leaving out rows ``STOPBAND_DB`` below the median row (a low-pass filter's stopband
    would otherwise set the floor of the whole band below the noise in its passband)."""
    keep = per_row >= np.median(per_row) * 10.0 ** (-STOPBAND_DB / 10.0)
    return float(np.percentile(per_row[keep], FLOOR_ROW_QUANTILE))


def _noise_floor(energy: np.ndarray, row_ok: np.ndarray) -> float:
    """A flat noise floor per chip (:func:`flat_floor` of the usable rows)."""
    if energy.shape[0] < 8 or not row_ok.any():
        return 0.0
    return flat_floor(np.percentile(energy[:, row_ok], 10, axis=0))


def residuals(energy: np.ndarray, active: np.ndarray,
               row_ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Key-independent chip residuals and detection weights.

    The residual is a chip's log energy minus the mean of its two neighbours in frequency
    or in time - per row, whichever varies less over the clip - clipped to ``R_CLIP``. The
    weight is the allocation the embedder would have used times the cubed fraction of the
    chip's energy above the noise floor, normalised by its median and capped at 4.
    """
    logs = np.log(energy + 1e-30)
    rf = np.zeros_like(logs)
    rf[:, 1:-1] = logs[:, 1:-1] - 0.5 * (logs[:, :-2] + logs[:, 2:])
    rt = np.zeros_like(logs)
    if logs.shape[0] >= 3:
        rt[1:-1] = logs[1:-1] - 0.5 * (logs[:-2] + logs[2:])
        rt[0] = logs[0] - logs[1]
        rt[-1] = logs[-1] - logs[-2]
    np.clip(rf, -R_CLIP, R_CLIP, out=rf)
    np.clip(rt, -R_CLIP, R_CLIP, out=rt)
    on = active[:, None]
    use_time = (np.where(on, rt * rt, 0.0).sum(axis=0)
                < np.where(on, rf * rf, 0.0).sum(axis=0)) & (logs.shape[0] >= 3)
    r = np.where(use_time[None, :], rt, rf)
    sig = np.maximum(energy - _noise_floor(energy, row_ok), 0.0)
    w = allocation(sig, active, row_ok) * (sig / (energy + 1e-30)) ** SNR_WEIGHT_EXP
    pos = w[w > 0]
    if pos.size:
        w = np.minimum(w / np.median(pos), 4.0)
    return r, w


def weighted(r: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted residuals with each row's mean over time and each column's mean over the
    rows removed (key-independent). Removing the common modes (a row that is always
    louder than its neighbours, a column that is louder than the ones around it) leaves
    no shape shared by most audio for a fixed key's pattern to line up with."""
    v = r * w
    on = w.sum(axis=1) > 0
    v[~on] = 0.0
    if on.any():
        v[on] -= v[on].mean(axis=0, keepdims=True)
        v[on] -= v[on].mean(axis=1, keepdims=True)
    return v


def add_change(x: np.ndarray, sr: int, x16: np.ndarray, spec: np.ndarray, gain: np.ndarray,
               snr_db: float) -> np.ndarray | None:
    """``x`` (``samples x channels`` at ``sr``) plus the change that multiplies each chip's
    magnitude by ``1 + gain`` (chip columns x rows; ``spec`` is the STFT of ``x16``, the
    16 kHz mix), synthesised as an additive signal (the host is never re-synthesised),
    resampled to ``sr``, added to every channel at exactly ``snr_db`` dB signal-to-change
    ratio and clipped to ``[-1, 1]`` (``float32``); ``None`` when the change is silent."""
    return add_delta(x, sr, istft(spec * spread(spec.shape, gain), x16.shape[0]), snr_db)


def spread(shape: tuple[int, ...], values: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """Per-chip ``values`` (chip columns x rows) spread over the frames and bins of an STFT
    of ``shape``; zero outside the marked band and after the last whole chip."""
    full = np.zeros(shape, dtype=dtype)
    full[: values.shape[0] * CHIP_FRAMES, ROW0:ROW1] = np.repeat(
        np.repeat(values, CHIP_BINS, axis=1), CHIP_FRAMES, axis=0)
    return full


def add_delta(x: np.ndarray, sr: int, delta16: np.ndarray, snr_db: float) -> np.ndarray | None:
    """``x`` (``samples x channels`` at ``sr``) plus a change made at 16 kHz (``delta16``),
    resampled to ``sr``, fitted to ``x``'s length and added to every channel at exactly
    ``snr_db`` dB signal-to-change ratio (:func:`add_at_snr`)."""
    delta = resample(np.asarray(delta16, dtype=np.float32), FS, sr)
    delta = np.pad(delta, (0, max(0, x.shape[0] - delta.shape[0])))[: x.shape[0]]
    return add_at_snr(x, delta[:, None], snr_db)


def add_at_snr(x: np.ndarray, delta: np.ndarray, snr_db: float) -> np.ndarray | None:
    """``x`` plus ``delta`` (broadcast to ``x``'s shape) scaled to exactly ``snr_db`` dB
    signal-to-change ratio, clipped to ``[-1, 1]`` (``float32``); ``None`` when ``delta``
    is silent."""
    e_x = float(np.sum(np.asarray(x, dtype=np.float64) ** 2))
    d = np.broadcast_to(delta, np.shape(x))
    e_d = float(np.sum(d.astype(np.float64) ** 2))
    if e_d <= 0.0:
        return None
    scale = math.sqrt(e_x * 10.0 ** (-snr_db / 10.0) / e_d)
    return np.clip(x + scale * d, -1.0, 1.0).astype(np.float32)


def scaled(gain: np.ndarray, energy: np.ndarray, want: float) -> np.ndarray:
    """Scale chip gains so that the mark's estimated energy is ``want``; cap them."""
    cur = float(np.sum(gain * gain * energy)) / (N_FFT / 2)
    out = gain * (math.sqrt(want / cur) if cur > 0 else 0.0)
    return np.clip(out, -A_MAX, A_MAX)
