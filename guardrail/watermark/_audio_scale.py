"""Time-scale and frequency-scale search for ``guardrail-audio`` (key-independent part).

A speed change (resampling: time and frequency both scaled), a tempo change (time only)
or a pitch shift (frequency only) moves the chips of :mod:`guardrail.watermark._chips` off
their grid, and the fold over pattern periods then adds chips of different pattern
positions: the mark is lost. The detector therefore also reads the audio through a small
set of *scale hypotheses* ``(time scale, frequency scale)``: for each, the attacked audio's
chips are mapped back onto the original grid and folded.

To keep that cheap, the chip residuals are computed once on a *fine grid*: a chip anchored
at every STFT frame and every FFT bin (the chips of the embedder's grid are the anchors at
even frames and every fourth bin). A hypothesis then costs a linear interpolation of the
fine residuals at its rows (frequency scale, once per scale for all hypotheses) and a fold
of its frames with linear splitting at their back-mapped positions (time scale: all
hypotheses in one sparse matrix product) - no STFT, log or percentile per hypothesis.

Everything here is computed from the audio alone. A fold of it correlated with the key's
pilot values gives, for every hypothesis, a score that is exactly standard normal when the
audio carries no mark of that key; the detector counts the hypotheses in its p-value.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scipy import sparse

from ._chips import (
    ALLOC_EXP,
    CHIP_BINS,
    CHIP_FRAMES,
    DYN_RANGE_DB,
    FS,
    N_FFT,
    N_ROWS,
    R_CLIP,
    ROW0,
    SILENCE_REL_DB,
    SNR_WEIGHT_EXP,
    flat_floor,
    log_floor,
)

__all__ = ["FineGrid", "fine_grid", "hypotheses"]

# chip-energy sum of a column -> mean square of the band signal (as in _chips)
_LEVEL_SCALE = 4.0 / (N_FFT * N_FFT * CHIP_FRAMES)


def hypotheses(max_rel: float, time_step: float, freq_step: float) -> list[tuple[float, float]]:
    """The scale hypotheses ``(time_scale, freq_scale)`` other than ``(1, 1)``.

    Three families, for changes up to ``max_rel`` (e.g. 0.06 = +-6 %): *speed* (playback
    ``s`` times faster by resampling: time scale ``1 / s``, frequency scale ``s``), *tempo*
    (time scale ``1 / s``, frequency kept) in steps of ``time_step``, and *pitch*
    (frequency scale ``s``, time kept) in steps of ``freq_step``.
    """
    def grid(step: float) -> np.ndarray:
        k = int(np.floor(max_rel / step + 1e-9))
        g = 1.0 + step * np.arange(-k, k + 1)
        return g[np.abs(g - 1.0) > 1e-9]

    # speed: the frequency scale rounded to the pitch grid (well within its tolerance)
    out = [(1.0 / s, round(round((s - 1.0) / freq_step) * freq_step + 1.0, 9))
           for s in grid(time_step)]
    out += [(1.0 / s, 1.0) for s in grid(time_step)]
    out += [(1.0, s) for s in grid(freq_step)]
    # a speed step that rounds to frequency scale 1 is a tempo hypothesis already
    return list(dict.fromkeys((float(t), float(f)) for t, f in out))


@lru_cache(maxsize=16)
def _fold_stack(n_frames: int, scales: tuple[tuple[float, float], ...], n_half: int
                ) -> sparse.csr_matrix:
    """The time read and fold of every hypothesis as one sparse matrix (``len(scales) *
    n_half x n_freq * n_frames``, float32; ``n_freq`` the distinct frequency scales,
    sorted): under time scale ``t`` the original anchor at half-column position ``q`` is
    the attacked anchor at ``q * t``, read by linear splitting between its two neighbours
    (in the rows of the hypothesis's frequency scale) and added to the fold's position
    ``q mod n_half``. Each frame adds to only two positions of a fold: a dense product
    would spend nearly all its time on zeros."""
    from scipy import sparse

    freq = sorted({f for _, f in scales})
    index = {f: i for i, f in enumerate(freq)}
    rows, cols, vals = [], [], []
    for i, (ts, fs) in enumerate(scales):
        n_q = int((n_frames - 1) / ts)
        f = np.arange(n_q) * ts
        k = f.astype(np.int64)
        b = f - k
        j = i * n_half + np.arange(n_q) % n_half
        base = index[fs] * n_frames
        inside = k + 1 < n_frames  # column n_frames (past the end) is dropped, as there
        rows += [j, j[inside]]
        cols += [base + k, base + k[inside] + 1]
        vals += [1.0 - b, b[inside]]
    m = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                          shape=(len(scales) * n_half, len(freq) * n_frames))
    m.sum_duplicates()
    return m.astype(np.float32)


@dataclass(frozen=True)
class FineGrid:
    """Weighted chip residuals anchored at every frame and bin of a window.

    Attributes
    ----------
    v : ndarray, frames x bins
        Weighted residuals (zero on silent frames), each bin's mean over the active frames
        removed.
    active : ndarray of bool, frames
        Frames with signal in the band.
    sr : int
        The input's original sample rate (rows above 0.45 x it are not read).
    b0 : int
        The FFT bin of column 0 of ``v``.
    u : tuple of ndarray, frames x bins
        One grid per *view*, when weights were given (else empty): the weighted residuals
        of the anchors the view reads, centred over those (as ``v``), times a weight per
        anchor (a keyed content field's).
    """

    v: np.ndarray
    active: np.ndarray
    sr: int
    b0: int = 0
    u: tuple[np.ndarray, ...] = ()

    def _rows(self, grid: np.ndarray, freq_scales: np.ndarray) -> np.ndarray:
        """``grid`` read at the embedder's chip rows under each frequency scale
        (``len(freq_scales) x frames x N_ROWS``; each frame's mean over the rows removed,
        silent frames, which are zero in every grid, stay zero)."""
        n_bins = grid.shape[1]
        fs = np.asarray(freq_scales, dtype=np.float64)[:, None]
        # the embedder's chip row r starts at bin ROW0 + 4 r; scaled, at that x freq_scale
        pos = (ROW0 + CHIP_BINS * np.arange(N_ROWS))[None, :] * fs
        lo = np.floor(pos).astype(np.int64)
        ok = (pos + CHIP_BINS * fs) * FS / N_FFT <= 0.45 * self.sr
        lo -= self.b0
        a = pos - self.b0 - lo
        ok &= (lo >= 0) & (lo + 1 < n_bins)
        lo = np.clip(lo, 0, n_bins - 2).ravel()
        a = np.where(ok, a, 0.0).ravel().astype(grid.dtype)
        rows = grid[:, lo] * (ok.ravel().astype(grid.dtype) - a) + grid[:, lo + 1] * a
        rows = rows.reshape(grid.shape[0], fs.shape[0], N_ROWS)
        rows -= rows.mean(axis=2, keepdims=True)
        return np.ascontiguousarray(rows.transpose(1, 0, 2))

    def folds(self, scales: list[tuple[float, float]], period: int, view: int | None = None
              ) -> np.ndarray:
        """Folds ``(len(scales), 2, period, N_ROWS)`` - chip phases 0 and 1 - of this grid
        (the weighted grid ``u[view]``, or ``v`` when ``view`` is None) read under each
        hypothesis ``(time_scale, freq_scale)``: the audio was scaled by ``time_scale`` in
        time and ``freq_scale`` in frequency. All hypotheses are one sparse matrix product
        (:func:`_fold_stack`) with the grid read at each frequency scale's rows."""
        grid = self.v if view is None else self.u[view]
        n_frames = grid.shape[0]
        n_half = CHIP_FRAMES * period
        key = tuple((float(t), float(f)) for t, f in scales)
        rows = self._rows(grid, np.array(sorted({f for _, f in key})))
        out = (_fold_stack(n_frames, key, n_half) @ rows.reshape(-1, N_ROWS)).astype(
            grid.dtype, copy=False).reshape(len(key), n_half, N_ROWS)
        return np.stack([out[:, 0::2], out[:, 1::2]], axis=1)


def _smooth_chips(a: np.ndarray) -> np.ndarray:
    """Each anchor's mean over its 3 x 3 chip neighbourhood (anchors ``CHIP_FRAMES`` frames
    and ``CHIP_BINS`` bins apart; edges replicated), as ``_chips._smooth3`` on the chip grid."""
    d, g = CHIP_FRAMES, CHIP_BINS
    p = np.pad(a, ((d, d), (g, g)), mode="edge")
    p = p[:-2 * d] + p[d:-d] + p[2 * d:]
    return (p[:, :-2 * g] + p[:, g:-g] + p[:, 2 * g:]) / 9.0


def _frame_chips(power: np.ndarray) -> np.ndarray:
    """Chip energies anchored at every frame and bin: frames f, f+1 x bins b..b+3."""
    e = power[:, 0:-3] + power[:, 1:-2] + power[:, 2:-1] + power[:, 3:]
    return e[:-1] + e[1:]


def fine_grid(spec: np.ndarray, sr: int, *, floor_dbfs: float, max_scale: float = 0.07,
              weights: Callable[[np.ndarray], Sequence[tuple[np.ndarray, np.ndarray | None]]]
              | None = None) -> FineGrid | None:
    """The :class:`FineGrid` of an STFT (16 kHz analysis of :mod:`._chips`) for frequency
    scales up to ``1 +- max_scale``; ``None`` when the window is too short. ``weights``,
    given, maps the log chip energies averaged over each anchor's 3 x 3 chip neighbourhood
    (frames x bins; see :func:`._chips.smooth_logs`) to one ``(weight, keep)`` per view:
    a weight per anchor and the anchors the view reads (1) or drops (0; ``None``: all);
    ``u`` holds the residuals of each view's anchors, centred, times its weight."""
    d, g = CHIP_FRAMES, CHIP_BINS
    if spec.shape[0] < 4 * d:
        return None
    # the bins that the rows of every hypothesis, and their neighbours, can read
    b0 = max(0, int(ROW0 * (1.0 - max_scale)) - 2 * g)
    b1 = min(spec.shape[1], int((ROW0 + (N_ROWS + 1) * g) * (1.0 + max_scale)) + 3 * g)
    band_spec = spec[:, b0:b1]
    power = (band_spec.real ** 2 + band_spec.imag ** 2).astype(np.float32)
    e = _frame_chips(power) + np.float32(1e-30)
    n_f, n_b = e.shape
    band = np.arange(ROW0, ROW0 + N_ROWS * g, g)
    band = band[(band + g) * FS / N_FFT <= 0.45 * sr] - b0
    if band.size == 0:
        return None
    # active frames, as _chips.active_columns on the embedder's rows
    col = e[:, band].sum(axis=1, dtype=np.float64)
    ref = float(np.percentile(col, 90))
    active = (col > ref * 10.0 ** (SILENCE_REL_DB / 10.0)) & (
        col * _LEVEL_SCALE > 10.0 ** (floor_dbfs / 10.0))
    logs = np.log(e)
    rf = np.zeros_like(logs)
    rf[:, g:-g] = logs[:, g:-g] - 0.5 * (logs[:, :-2 * g] + logs[:, 2 * g:])
    rt = np.empty_like(logs)
    rt[d:-d] = logs[d:-d] - 0.5 * (logs[:-2 * d] + logs[2 * d:])
    rt[:d] = logs[:d] - logs[d:2 * d]
    rt[-d:] = logs[-d:] - logs[-2 * d:-d]
    np.clip(rf, -R_CLIP, R_CLIP, out=rf)
    np.clip(rt, -R_CLIP, R_CLIP, out=rt)
    use_time = (rt[active] ** 2).sum(axis=0) < (rf[active] ** 2).sum(axis=0)
    r = np.where(use_time[None, :], rt, rf)
    # noise floor and weights, as _chips.residuals
    floor = np.float32(flat_floor(np.percentile(e[:, band], 10, axis=0)) if n_f >= 8 * d
                       else 0.0)
    sig = np.maximum(e - floor, 0.0)
    w = np.exp(ALLOC_EXP * np.log(_smooth_chips(sig) + np.float32(1e-30)))
    w *= active[:, None]
    w *= sig >= sig[:, band].max(axis=1, keepdims=True) * 10.0 ** (-DYN_RANGE_DB / 10.0)
    frac = sig / e
    w *= frac * frac * frac if SNR_WEIGHT_EXP == 3.0 else frac ** SNR_WEIGHT_EXP
    pos = w[:, band][w[:, band] > 0]
    if pos.size:
        w = np.minimum(w / np.median(pos), 4.0)
    def centred(x: np.ndarray) -> np.ndarray:  # zero on silent frames, each bin's mean removed
        x = x.astype(np.float32)
        x[~active] = 0.0
        if active.any():
            x[active] -= x[active].mean(axis=0, keepdims=True)
        return x

    rw = r * w
    v = centred(rw)
    u: tuple[np.ndarray, ...] = ()
    if weights is not None:
        s3 = _smooth_chips(e)
        every_row = np.arange(ROW0, ROW0 + N_ROWS * g, g) - b0  # as the chip grid's floor
        logs_s = np.log(s3 + np.float32(log_floor(s3[:, every_row])))
        # a view's chips are chosen before the means are removed, as on the chip grid
        # (chips.weighted): centred over every chip, a view of the louder ones also read
        # the quiet chips' mean - after a removal aimed at that view, half its score
        u = tuple((v * cw if keep is None else centred(rw * keep) * cw).astype(np.float32)
                  for cw, keep in weights(logs_s))
    return FineGrid(v=v, active=active, sr=int(sr), b0=b0, u=u)
