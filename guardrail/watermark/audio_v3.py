"""guardrail's audio watermark, version 3 (scheme ``guardrail-audio-v3``).

Why a version 3
---------------
Version 2 (:mod:`guardrail.watermark.audio_v2`) writes its payload as changes of the chips'
log energies - in phase with the host - and reads them back from energies. Under white noise
10 dB below the speech most of the 0.5-7 kHz chips are buried, and a buried chip's energy
says nothing about a change that followed the host's phase: its coded bits read right in
58 % at 10 dB (the id needs about 79 % to decode in 90 % of clips), and the id came back in
0 of 120 held-out 5 s windows (docs/WATERMARKS.md). A component with a keyed phase, read by
linear correlation, keeps its evidence under additive noise wherever it lies: white noise
is then plain noise in every coefficient.

Design
------
Version 2's pilot unchanged - content-bound, read on the chip grid and by the scale search,
written at the scale version 2 would give its pilot and payload at this scheme's ratio -
and, instead of version 2's log-energy payload, a **coherent payload layer** with the rest
of the energy; the whole mark is ``BASE_SNR_DB - 20 log10(strength)`` dB (30.1 at strength
1) below the signal.

* *Layer.* Every coefficient of the marked band (0.5-7 kHz at 16 kHz, the chip grid of
  version 1) of a marked chip gets ``a * s * b * c * exp(i phi)``: ``phi`` a keyed phase per
  frame of the period and bin, ``s`` a keyed sign and ``b`` the chip's coded bit (a keyed
  assignment of the chips to the 186 coded bits of the payload code: 32-bit id, CRC-24,
  rate 1/3), ``c`` the content sign of the chip's column (below). The marked chips are
  version 2's payload chips (40 % of a period's): the pilot's chips carry the pilot alone -
  the layer's energy in them, at random phase to the host, moved the chip energies the
  pilot is read from and lowered its scores (docs/WATERMARKS.md). The amplitude ``a`` is
  the same for every coefficient - white noise is then equally strong against every part
  of the layer - capped at ``COH_CAP`` times the host's RMS in the chip and ``COH_COL_CAP``
  times its column's (the quiet columns between words, which nothing masks, get less);
  silent columns and chips 60 dB under their column's loudest are not marked (as in
  version 1).
* *Binding.* ``c = sign(F)``, ``F = k * log(column energy + floor)``: ``k`` a keyed
  ``COL_KERNEL``-tap filter with no response to a constant or a ramp, the floor
  ``COL_FLOOR_DB`` under the clip's loud columns (so that noise 10 dB below the speech does
  not move ``F``), ``F`` in units of its median magnitude. Columns with ``|F|`` under
  ``COL_DEAD_EMBED`` are not marked; the reader weights ``sign(F)`` by a ramp from 0 at
  ``COL_DEAD_LO`` to 1 at ``COL_DEAD_HI``. A layer estimated from one output - its periods
  averaged, where ``c`` changes from column to column - and written into other audio meets
  there column signs unrelated to its own.
* *Reading.* Each coefficient's ``Y conj(exp(i phi))``, weighted by the inverse of its local
  power (``COH_WINDOW``, above a floor ``COH_FLOOR_DB`` under the loud part) and by the
  content weight, is folded over the periods (the layout repeats every period) and summed
  per coded bit, at each of the 64 alignments (chip phase and shift). The id is
  list-decoded at the pilot's best ``PILOT_CANDIDATES`` alignments - the pilot need not
  pass: at 10 dB its best alignments mostly hold the right one when its score is not
  enough - and at the ``ENERGY_CANDIDATES`` whose soft values carry the most energy (where
  the pilot is lost); the list decoder only where that energy is ``COH_GATE`` times its
  median over the alignments, else a plain Viterbi decode, and none where it is under
  ``COH_SKIP`` times it. For a mark whose pilot passes,
  the id is also read at the delay within ``TAU_MAX`` samples whose soft values carry the
  most energy (a crop at any sample: a delay turns bin ``k``'s phase by ``2 pi k tau /
  512``), when that energy is ``COH_GATE_TAU`` times its median over the delays.
  A marked copy is read quickly: chip phase 0 alone (the embedder's), a plain decode at
  that phase's best pilot alignment (if its energy is ``COH_SKIP`` times the phase's
  median); only when that fails is the other phase read and all
  of the above done (an id found quickly is reported with phase 0's best pilot score).
* *Decision.* The layer is bound to the content, so an id that passes its CRC is evidence on
  its own: ``p = p_crc``, the union bound over every decode the reader may make
  (``COH_DECODES`` list decodes of ``list_size`` paths and the quick read's plain
  decode), and ``detected``. Otherwise the
  pilot decides as in version 2 (its p-value plus ``p_crc``), with the scale search when the
  unscaled grid does not pass.

Limits
------
Those of version 2, and:

* **No id after a speed, tempo or pitch change** (nor after a codec that changes phases):
  the layer needs the samples where the embedder put them, to a fraction of a sample at
  7 kHz. The pilot still finds the mark there (its scale search); version 2's log payload
  carried the id as well, which ``guardrail verify`` uses to find the record. Measured
  (docs/WATERMARKS.md): a payload in both forms does not fit in the 30 dB budget - sharing
  the chips, each costs the other.
* The column filter has ``COL_KERNEL`` keyed taps: an attacker who recovered one output's
  relative column signs (correlating its periods, where the layer is coherent and the host
  is not) could try to fit them and sign a copy for any target; not in the lab.
* The layer's amplitude is flat over the band: in the quiet chips of a loud column it is
  larger, relative to the host, than version 2's mark (capped at ``COH_CAP``): on tuning
  windows 4.8 % of the chips carry more mark than host (version 2: none; the 99th
  percentile 1.7 dB over the host, the cap 3.5 dB), and the mark is more audible than
  version 2's: wideband PESQ 4.04 against about 4.55 on held-out windows (docs/WATERMARKS.md). It leaves the pilot's chips alone, but
  its energy in their neighbours still moves the pilot's residuals a little (median scores
  after a removal and a speed change 3 and 14 % under version 2's under two tuning keys).
* Embedding and detection take longer than version 2's: a marked copy's embed + detect is
  under the 50 ms per 10 s target, unmarked audio and a copy whose speed was changed (all 64
  alignments, then the scale search) about 1.2x version 2's slowest case
  (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import math
import threading
from functools import cached_property

import numpy as np

from .._types import Artifact, WatermarkResult
from ..signal import resample
from . import _chips as chips
from ._chips import CHIP_BINS, CHIP_FRAMES, FS, N_ROWS
from .audio import (
    DETECT_FLOOR_DBFS,
    LIST_FPR_SHARE,
    LIST_SIZE,
    MIN_ACTIVE_SECONDS,
    PERIOD,
    SILENCE_DBFS,
    GuardrailAudioWatermark,
    _check,
)
from .audio_v2 import GuardrailAudioWatermarkV2, ramp_free
from .base import CannotWatermark, check_payload, mix, not_performed, payload_hex
from .ecc import decode_id, list_size_for

__all__ = ["BASE_SNR_DB", "COH_CAP", "GuardrailAudioWatermarkV3"]

SCHEME = "guardrail-audio-v3"
VERSION = "3"

#: Signal-to-watermark ratio (dB) of the whole mark at strength 1. The pilot is written at
#: the scale version 2 would give its pilot and payload at this ratio; the rest of the
#: energy is the coherent layer's.
BASE_SNR_DB = 30.1
#: The layer's amplitude at most this times the host's RMS in the chip (1.5: the layer has
#: 40 % of the chips, and at 1 its energy went to the loud chips, where the host masks it
#: from the reader - the id at 10 dB in 21 of 30 tuning windows, at 1.5 in 29).
COH_CAP = 1.5
#: ... and at most this times the RMS of its column (the band's chips of one 32 ms column):
#: the quiet columns between words, where nothing masks it, get less (wideband PESQ about
#: 0.1 higher on tuning windows, the ids and removals as without it).
COH_COL_CAP = 0.5
#: Column content field: keyed filter taps, and the floor (dB under the 90th percentile of
#: the column energies) added before the log.
COL_KERNEL, COL_FLOOR_DB = 7, -10.0
#: Column field's dead zones: columns under ``COL_DEAD_EMBED`` are not marked; the reader's
#: weight rises from 0 at ``COL_DEAD_LO`` to 1 at ``COL_DEAD_HI``.
COL_DEAD_EMBED, COL_DEAD_LO, COL_DEAD_HI = 0.45, 0.5, 0.8
#: The reader's power estimate: window (frames x bins) and floor (dB under the 90th
#: percentile of the local powers).
COH_WINDOW, COH_FLOOR_DB = (5, 9), -30.0
#: Alignments (chip phase, shift) decoded at the chip grid's own sample: the pilot's best
#: ``PILOT_CANDIDATES`` and the best ``ENERGY_CANDIDATES`` of the 64 by the energy of their
#: soft values (at 10 dB the pilot's best alignments mostly hold the right one, but not
#: always: the layer's own energy finds it where the pilot is lost); delays searched
#: (samples: at most ``TAU_MAX``, ``TAU_STEP`` apart) at the pilot's best alignment when the
#: pilot passes; the decodes this may make (the CRC's union bound).
PILOT_CANDIDATES, ENERGY_CANDIDATES = 4, 2
TAU_MAX, TAU_STEP = 160.0, 0.5
COH_DECODES = PILOT_CANDIDATES + ENERGY_CANDIDATES + 1
#: The list decoder runs only where the soft values' energy is ``COH_GATE`` times its
#: median over the 64 alignments (elsewhere a plain Viterbi decode, one CRC check), and the
#: delay search decodes its best delay only where the energy there is ``COH_GATE_TAU`` times
#: its median over the delays: about ``1 + d'^2`` where the layer is read (the id needs
#: ``d'`` of about 0.8), 1.2-1.6 at the best of unmarked audio's.
COH_GATE, COH_GATE_TAU = 1.3, 1.5
#: No decode at all where the soft values' energy is under ``COH_SKIP`` times its median: a
#: decode needs ``d'`` of about 0.7 (energy about 1.5x the median; at 10 dB the alignments
#: that decoded on 24 tuning windows read 1.53-2.41x), unmarked audio's alignments exceed
#: 1.15x in about 8 % - the decodes unmarked audio pays for.
COH_SKIP = 1.15
_FRAMES = CHIP_FRAMES * PERIOD  # frames in one period of the pattern


def _level(caps: np.ndarray, want: float) -> float:
    """The amplitude ``a`` with ``sum(min(a, caps) ** 2) = want`` (the largest cap when even
    that is short of ``want``; 0 without caps)."""
    if caps.size == 0:
        return 0.0
    c = np.sort(caps.astype(np.float64))
    below = np.concatenate([[0.0], np.cumsum(c * c)])[:-1]  # sum of the caps under c[k]
    # at a = c[k]: the k smaller caps in full, the others at a
    at = below + (c.size - np.arange(c.size)) * c * c
    k = int(np.searchsorted(at, want))
    if k >= c.size:
        return float(c[-1])
    return float(math.sqrt(max(want - below[k], 0.0) / (c.size - k)))


def _blocks(period: np.ndarray) -> np.ndarray:
    """One period of band coefficients (``_FRAMES x bins``) as chips: ``N_ROWS x PERIOD x
    CHIP_FRAMES * CHIP_BINS`` (row, column, the chip's coefficients)."""
    return period.reshape(PERIOD, CHIP_FRAMES, N_ROWS, CHIP_BINS).transpose(2, 0, 1, 3).reshape(
        N_ROWS, PERIOD, CHIP_FRAMES * CHIP_BINS)


class GuardrailAudioWatermarkV3(GuardrailAudioWatermarkV2):
    """Version 2's pilot with a coherent, content-bound payload layer (see the module
    notes). Same parameters and results as
    :class:`~guardrail.watermark.audio.GuardrailAudioWatermark`.

    Examples
    --------
    >>> from guardrail import Artifact, GenerationMetadata
    >>> from guardrail.testing import speechlike
    >>> art = Artifact("audio", speechlike(3.0), GenerationMetadata("m"), sample_rate=16000)
    >>> wm = GuardrailAudioWatermarkV3(b"k" * 32)
    >>> res = wm.detect(wm.embed(art, 0xC0FFEE))
    >>> res.detected, res.payload, res.scheme
    (True, '00c0ffee', 'guardrail-audio-v3')
    >>> wm.detect(art).detected
    False
    """

    scheme = SCHEME
    version = VERSION

    def __init__(self, key: bytes, **options: object) -> None:
        super().__init__(key, **options)  # type: ignore[arg-type]
        self.snr_db = BASE_SNR_DB - 20.0 * math.log10(self.strength)
        self.list_size = list_size_for(self._code, self.fpr, COH_DECODES, cap=LIST_SIZE,
                                       share=LIST_FPR_SHARE)
        self._local = threading.local()  # what embed is writing, per thread

    # ------------------------------------------------------------------ keyed layout
    @cached_property
    def _coh(self) -> dict[str, np.ndarray]:
        n = self._code.n_coded
        carrier = np.exp(1j * self._rng("coherent-phase").uniform(
            0.0, 2.0 * np.pi, size=(_FRAMES, N_ROWS * CHIP_BINS))).astype(np.complex64)
        # the layer's chips: version 2's payload chips (-1 elsewhere: the pilot's chips, the
        # edge rows), the coded bits dealt over them in a keyed order
        cells = np.flatnonzero(self._layout["bit_of"].ravel() >= 0)
        bit_of = np.full(PERIOD * N_ROWS, -1, dtype=np.int64)
        bit_of[cells[self._rng("coherent-bits").permutation(cells.size)]] = (
            np.arange(cells.size) % n)
        bit_of = bit_of.reshape(PERIOD, N_ROWS)
        signs = self._rng("coherent-signs").choice([-1.0, 1.0], size=(PERIOD, N_ROWS)) * (
            bit_of >= 0)
        # per frame of the period and bin: the coded bit and the keyed sign of its chip
        frame_bit = np.repeat(np.repeat(bit_of, CHIP_BINS, axis=1), CHIP_FRAMES, axis=0)
        frame_sign = np.repeat(np.repeat(signs, CHIP_BINS, axis=1), CHIP_FRAMES, axis=0)
        key = (np.conj(carrier) * frame_sign).astype(np.complex64)
        # the scan: the key's chips as blocks (rows x coefficients of a chip x columns), and
        # which products of received column c - shift and pattern column c (a chip of row
        # r) each coded bit sums at each shift, the chips grouped by coded bit
        order = np.argsort(bit_of.ravel(), kind="stable")
        order = order[bit_of.ravel()[order] >= 0]
        c, r = np.divmod(order, N_ROWS)
        shifts = np.arange(PERIOD)[:, None]
        gather = r[None, :] * PERIOD * PERIOD + ((c[None, :] - shifts) % PERIOD) * PERIOD + c
        return {"carrier": carrier, "bit_of": bit_of, "signs": signs,
                "kernel": ramp_free(self._rng("coherent-column-kernel").standard_normal(
                    COL_KERNEL)), "frame_bit": frame_bit, "key": key,
                "key_blocks": _blocks(key.astype(np.complex128)).transpose(0, 2, 1).copy(),
                "gather": gather.astype(np.int32),
                "starts": np.searchsorted(bit_of.ravel()[order], np.arange(n))}

    def _column_field(self, energy: np.ndarray, row_ok: np.ndarray) -> np.ndarray:
        """``F`` per chip column, in units of its median magnitude (module notes)."""
        col = energy[:, row_ok].sum(axis=1)
        if col.size < COL_KERNEL:
            return np.zeros(col.shape)
        logs = np.log(col + float(np.percentile(col, 90)) * 10.0 ** (COL_FLOOR_DB / 10.0)
                      + 1e-30)
        half = COL_KERNEL // 2
        field = np.convolve(np.pad(logs, half, mode="symmetric"), self._coh["kernel"][::-1],
                            mode="valid")
        scale = float(np.median(np.abs(field)))
        return field / scale if scale > 0.0 else np.zeros_like(field)

    # ------------------------------------------------------------------ embed
    def embed(self, artifact: Artifact, payload: int) -> Artifact:
        """As version 2 (:meth:`~guardrail.watermark.audio.GuardrailAudioWatermark.embed`),
        the id in the coherent layer; it must decode from the output with a margin."""
        self._local.word = np.asarray(
            self._code.encode(check_payload(payload, self.payload_bits)), dtype=np.uint8)
        return super().embed(artifact, payload)

    def _layer(self, shape: tuple[int, ...], energy: np.ndarray, row_ok: np.ndarray,
               word: np.ndarray, budget: float) -> np.ndarray:
        """The coherent layer's STFT coefficients (``shape``) whose synthesis has energy
        ``budget`` (sum of squared samples): one amplitude for every marked coefficient,
        capped at ``COH_CAP`` x the chip's RMS. A coefficient of unit magnitude synthesises
        ``1 / N_FFT`` of energy: the keyed phases make the coefficients' cross terms cancel
        (measured within 0.3 % on speech windows; the output is scaled exactly afterwards)."""
        ncol = energy.shape[0]
        nfr = ncol * CHIP_FRAMES
        lay = self._coh
        active = chips.active_columns(energy, row_ok, SILENCE_DBFS)
        field = self._column_field(energy, row_ok)
        cols = np.arange(ncol) % PERIOD
        on = (active[:, None] & row_ok[None, :] & (energy >= energy.max(
            axis=1, keepdims=True) * 10.0 ** (-chips.DYN_RANGE_DB / 10.0)))
        values = ((np.sign(field) * (np.abs(field) >= COL_DEAD_EMBED))[:, None]
                  * lay["signs"][cols] * (word.astype(np.float64) * 2.0 - 1.0)[
                      lay["bit_of"][cols]] * on)
        per = CHIP_FRAMES * CHIP_BINS
        cap = np.minimum(COH_CAP * np.sqrt(energy / per), COH_COL_CAP * np.sqrt(
            energy[:, row_ok].mean(axis=1, keepdims=True) / per))
        amp = (np.minimum(_level(cap[values != 0], budget * chips.N_FFT / per), cap)
               * values).astype(np.float32)
        coef = chips.spread(shape, amp, np.complex64)
        coef[:nfr, chips.ROW0:chips.ROW1] *= lay["carrier"][np.arange(nfr) % _FRAMES]
        return coef

    def _render(self, x: np.ndarray, sr: int, x16: np.ndarray, spec: np.ndarray,
                energy: np.ndarray, gain: np.ndarray
                ) -> tuple[np.ndarray, tuple[float, np.ndarray] | str]:
        """Version 2's pilot (its payload chips left out) at the share of ``snr_db``'s energy
        version 2 would give it (from the chip energies), plus the coherent layer with the
        rest; the whole at exactly ``snr_db``."""
        n = x16.shape[0]
        target = float(np.sum(x16.astype(np.float64) ** 2)) * 10.0 ** (-self.snr_db / 10.0)
        pilot_gain = np.where(self._layout["bit_of"][np.arange(gain.shape[0]) % PERIOD] >= 0,
                              0.0, gain)
        d_pilot = chips.istft(spec * chips.spread(spec.shape, pilot_gain), n)
        e_pilot = float(np.sum(d_pilot.astype(np.float64) ** 2))
        silent = CannotWatermark(f"cannot embed: no part of the audio in {chips.BAND[0]:g}-"
                                 f"{chips.BAND[1]:g} Hz can carry a mark")
        e_all = float(np.sum(gain * gain * energy))
        if e_all <= 0.0 or e_pilot <= 0.0:
            raise silent
        share = float(np.sum(pilot_gain * pilot_gain * energy)) / e_all
        delta16 = d_pilot * np.float32(math.sqrt(target * share / e_pilot))
        if share < 1.0:
            delta16 = delta16 + chips.istft(self._layer(
                spec.shape, energy, chips.rows_ok(sr), self._local.word,
                target * (1.0 - share)), n)
        out = chips.add_delta(x, sr, delta16, self.snr_db)
        if out is None:
            raise silent
        y16 = resample(mix(out), sr, FS)
        spec_y = chips.stft(y16)
        grids = self._grids(spec_y, sr, (0,))
        self._local.coherent = (None if 0 not in grids
                                else self._scan(self._folded(spec_y, sr, 0, grids[0]), 1)[0][0])
        return out, self._search_x16(y16, sr, aligned=True, spec=spec_y)

    def _iss_factors(self, energy: np.ndarray, active: np.ndarray, row_ok: np.ndarray,
                     gain: np.ndarray, word: np.ndarray) -> np.ndarray:
        """None: version 2's log payload is not written here."""
        return np.ones_like(gain)

    def _decide(self, z_max: float, aligned: np.ndarray) -> tuple[bool, float, int | None]:
        """The pilot's decision only: the id is in the coherent layer (``_carries``)."""
        return self._decision(z_max, None)

    def _carries(self, soft: np.ndarray, sign: np.ndarray, payload: int) -> bool:
        """Whether the id decodes, with the margin, from the layer of the output just
        rendered (version 2's log payload is not written)."""
        coherent = getattr(self._local, "coherent", None)
        return coherent is not None and super()._carries(coherent, sign, payload)

    # ------------------------------------------------------------------ detect
    @staticmethod
    def _grids(spec: np.ndarray, sr: int, phases: tuple[int, ...] = (0, 1)
               ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Chip energies and active columns at each chip phase with enough signal in the
        band to be read (what the pilot search and the layer's reading share)."""
        row_ok = chips.rows_ok(sr)
        grids = {}
        for phase in phases:
            energy = chips.chip_energy(spec, phase)
            active = chips.active_columns(energy, row_ok, DETECT_FLOOR_DBFS)
            if active.sum() * CHIP_FRAMES * chips.HOP / FS >= MIN_ACTIVE_SECONDS:
                grids[phase] = (energy, active)
        return grids

    def _folded(self, spec: np.ndarray, sr: int, phase: int,
                grid: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """The band's coefficients at chip ``phase`` (its ``grid``: chip energies and active
        columns), weighted by the inverse of their local power and the column content
        weight, folded over the periods (``2 * PERIOD x bins``, complex)."""
        import cv2

        energy, active = grid
        row_ok = chips.rows_ok(sr)
        nfr = energy.shape[0] * CHIP_FRAMES
        band = spec[phase:phase + nfr, chips.ROW0:chips.ROW1]
        power = (band.real ** 2 + band.imag ** 2).astype(np.float32)
        local = cv2.blur(power, (COH_WINDOW[1], COH_WINDOW[0]), borderType=cv2.BORDER_REPLICATE)
        local += np.float32(float(np.percentile(local, 90)) * 10.0 ** (COH_FLOOR_DB / 10.0)
                            + 1e-30)
        field = self._column_field(energy, row_ok)
        cw = np.sign(field) * np.clip((np.abs(field) - COL_DEAD_LO) / (COL_DEAD_HI - COL_DEAD_LO),
                                      0.0, 1.0) * active
        weight = (np.repeat(cw.astype(np.float32), CHIP_FRAMES)[:, None]
                  * np.repeat(row_ok.astype(np.float32), CHIP_BINS)[None, :])
        periods = -(-nfr // _FRAMES)
        folded = np.zeros((periods * _FRAMES, band.shape[1]), dtype=np.complex64)
        folded[:nfr] = band * (weight / local)
        return folded.reshape(periods, _FRAMES, -1).sum(axis=0)

    def _scan(self, folded: np.ndarray, shifts: int = PERIOD) -> tuple[np.ndarray, np.ndarray]:
        """Soft values (``shifts x n_coded``: pattern shifts 0, 1, ...) at the chip grid's own
        sample, and each one's variance without a mark (half the power of the coefficients it
        sums, whose phases against the key are then random; a mark only raises it)."""
        lay = self._coh
        blocks = _blocks(folded.astype(np.complex128))
        # every received chip against every pattern chip of its row: one small product per row
        corr = np.matmul(blocks, lay["key_blocks"]).real.ravel()
        soft = np.add.reduceat(corr[lay["gather"][:shifts]], lay["starts"], axis=1)
        # each received chip's power, laid out as corr (row, received column, any column)
        power = np.repeat((blocks.real ** 2 + blocks.imag ** 2).sum(axis=2).ravel(), PERIOD)
        var = np.add.reduceat(power[lay["gather"][:shifts]], lay["starts"], axis=1)
        return soft, 0.5 * var + 1e-30

    def _per_bin(self, folded: np.ndarray, shift: int) -> np.ndarray:
        """The weighted correlations summed per coded bit and band bin at ``shift``
        (``n_coded x bins``, complex): what the delay search turns."""
        n, n_bins = self._code.n_coded, folded.shape[1]
        prod = np.roll(folded, CHIP_FRAMES * shift, axis=0) * self._coh["key"]
        idx = (np.maximum(self._coh["frame_bit"], 0) * n_bins + np.arange(n_bins)[None, :]).ravel()
        sums = (np.bincount(idx, weights=prod.real.ravel(), minlength=n * n_bins)
                + 1j * np.bincount(idx, weights=prod.imag.ravel(), minlength=n * n_bins))
        return sums.reshape(n, n_bins)

    @staticmethod
    def _delays(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Soft values at every delay of the audio against the chip grid (``TAU_STEP``
        samples apart, at most ``TAU_MAX`` either way), and the delays."""
        n = int(round(chips.N_FFT / TAU_STEP))
        spectrum = np.fft.fft(sums, n=n, axis=1)  # sum_k G[k] exp(-2 pi i k m / n)
        tau = np.fft.fftfreq(n, d=1.0 / chips.N_FFT)  # the delay (samples) of each m
        keep = np.abs(tau) <= TAU_MAX
        turn = np.exp(-2j * np.pi * chips.ROW0 * tau[keep] / chips.N_FFT)
        return (spectrum[:, keep] * turn[None, :]).real, tau[keep]

    @staticmethod
    def _energy(soft: np.ndarray, null_var: np.ndarray) -> np.ndarray:
        """Each hypothesis's (first axis) soft values' energy over the coded bits (last
        axis), each over its variance without a mark: relative to its median over the
        hypotheses about 1 where the layer is not, ``1 + d'^2`` where it is read."""
        return (soft * soft / null_var).sum(axis=-1)

    def _read(self, spec: np.ndarray, sr: int, grids: dict[int, tuple[np.ndarray, np.ndarray]],
              phase: int, cache: dict) -> None:
        """Fold and scan chip ``phase`` into ``cache`` (once per detection): its fold, and
        each alignment's soft values and energy."""
        folds = cache.setdefault("folds", {})
        if phase in folds:
            return
        folds[phase] = self._folded(spec, sr, phase, grids[phase])
        soft, var = self._scan(folds[phase])
        energies, softs = cache.setdefault("energies", {}), cache.setdefault("softs", {})
        for k, e in enumerate(self._energy(soft, var)):
            energies[(phase, k)], softs[(phase, k)] = float(e), soft[k]

    def _worth_reading(self, spec: np.ndarray, sr: int,
                       grids: dict[int, tuple[np.ndarray, np.ndarray]], h: tuple[int, int],
                       cache: dict) -> bool:
        """Read alignment ``h``'s phase; is its energy at least ``COH_SKIP`` times the median
        over that phase's alignments (else no decode there can pass)?"""
        self._read(spec, sr, grids, h[0], cache)
        energies = cache["energies"]
        phase = [e for (p, _k), e in energies.items() if p == h[0]]
        return energies[h] >= COH_SKIP * float(np.median(phase))

    def _plain(self, h: tuple[int, int], cache: dict) -> int | None:
        """The plain Viterbi decode at alignment ``h`` (read into ``cache``), once: the first
        check of any decode there."""
        tried = cache.setdefault("plain", {})
        if h not in tried:
            tried[h] = decode_id(self._code, cache["softs"][h], 1)
        return tried[h]

    def _coherent_id(self, spec: np.ndarray, sr: int,
                     grids: dict[int, tuple[np.ndarray, np.ndarray]],
                     pilot_top: list[tuple[int, int]], pilot_passes: bool,
                     cache: dict | None = None) -> int | None:
        """The layer's id (module notes): at the pilot's best alignments and the
        ``ENERGY_CANDIDATES`` whose soft values carry the most energy, decoded at the chip
        grid's own sample; then, for a mark whose pilot passes, the delay search at the
        pilot's best alignment. ``cache`` holds what the detection has read already."""
        cache = {} if cache is None else cache
        # a marked copy: the plain decode at the pilot's best alignment - the first check
        # of every decode below, so stopping here when it passes changes no result
        first = pilot_top[0] if pilot_top and pilot_top[0][0] in grids else None
        if first is not None and self._worth_reading(spec, sr, grids, first, cache):
            decoded = self._plain(first, cache)
            if decoded is not None:
                return decoded
        for phase in grids:
            self._read(spec, sr, grids, phase, cache)
        energies, softs, folds = (cache.get("energies", {}), cache.get("softs", {}),
                                  cache.get("folds", {}))
        if not energies:
            return None
        median = max(float(np.median(list(energies.values()))), 1e-30)
        ranked = sorted(energies, key=lambda h: -energies[h])[:ENERGY_CANDIDATES]
        for h in dict.fromkeys([*pilot_top[:PILOT_CANDIDATES], *ranked]):
            if h not in softs:
                continue
            # the list decoder (ten times a plain decode's time) only where the energy says
            # the layer may be read: unmarked audio seldom pays for it
            if energies[h] / median < COH_SKIP:
                continue
            size = self.list_size if energies[h] / median >= COH_GATE else 1
            decoded = self._plain(h, cache)
            if decoded is None and size > 1:
                decoded = self._code.decode_list(softs[h], size).value
            if decoded is not None:
                return decoded
        phase, shift = pilot_top[0]
        if pilot_passes and phase in folds:  # a crop at any sample: the delay search
            sums = self._per_bin(folds[phase], shift)
            soft, tau = self._delays(sums)
            energy = self._energy(soft.T, 0.5 * np.sum(np.abs(sums) ** 2, axis=1) + 1e-30)
            best = int(np.argmax(energy))
            if (energy[best] >= COH_GATE_TAU * np.median(energy)
                    and abs(tau[best]) >= TAU_STEP):
                decoded = decode_id(self._code, soft[:, best], self.list_size)
                if decoded is not None:
                    return decoded
        return None

    def _decision(self, z_max: float, decoded: int | None, *,
                  z_scaled: float | None = None) -> tuple[bool, float, int | None]:
        """Version 1's rule: an id that passed its CRC is evidence on its own (``p = p_crc``)
        - here because the layer carrying it is bound to the content - else the pilot's
        p-value plus ``p_crc``."""
        return GuardrailAudioWatermark._decision(self, z_max, decoded, z_scaled=z_scaled)

    def _p_crc(self) -> float:
        """P(unmarked audio passes a CRC): ``COH_DECODES`` list decodes and the quick read's
        plain decode (union bound)."""
        return (COH_DECODES * self.list_size + 1) * self._false_accept()

    def _valid(self, decoded: int | None) -> int | None:
        """``decoded`` if it is an id of ``payload_bits`` bits, else None."""
        return decoded if decoded is not None and decoded < (1 << self.payload_bits) else None

    def _alignments(self, grids: dict[int, tuple[np.ndarray, np.ndarray]], sr: int
                    ) -> list[tuple[float, int, int]]:
        """Pilot z, chip phase and shift of the unscaled grid, best first."""
        row_ok = chips.rows_ok(sr)
        scored = []
        for phase, (energy, active) in grids.items():
            r, w = chips.residuals(energy, active, row_ok)
            z = self._pilot_scores(energy, r, w, np.zeros((PERIOD, N_ROWS)))
            scored += [(float(z[k]), phase, k) for k in range(PERIOD)]
        return sorted(scored, reverse=True)

    def detect(self, artifact: Artifact) -> WatermarkResult:
        """As :meth:`GuardrailAudioWatermark.detect` (``detected=None`` with the reason for
        audio that cannot be checked); the id from the coherent layer (module notes)."""
        try:
            x, sr = _check(artifact, "detect", self.scheme)
        except CannotWatermark as exc:
            return not_performed(self.scheme, self.version, str(exc))
        spec = chips.stft(resample(mix(x), sr, FS))
        grids = self._grids(spec, sr, (0,))
        scored = self._alignments(grids, sr)
        cache: dict = {}
        decoded = None
        if scored and self._worth_reading(spec, sr, grids, scored[0][1:], cache):
            # the quick read (module notes): chip phase 0's best pilot alignment
            decoded = self._valid(self._plain(scored[0][1:], cache))
        if decoded is None:  # the full reading: both chip phases
            more = self._grids(spec, sr, (1,))
            grids.update(more)
            scored = sorted(scored + self._alignments(more, sr), reverse=True)
            if not grids:
                return not_performed(self.scheme, self.version, (
                    f"cannot detect: the audio is silent or nearly silent in "
                    f"{chips.BAND[0]:g}-{chips.BAND[1]:g} Hz (less than "
                    f"{MIN_ACTIVE_SECONDS:g} s of signal)"))
            decoded = self._valid(self._coherent_id(
                spec, sr, grids, [(p, k) for _, p, k in scored],
                self._decision(scored[0][0], None)[0], cache))
        z_max = scored[0][0]
        detected, p, _ = self._decision(z_max, decoded)
        if not detected:  # sped up, stretched or pitch-shifted: the scale search
            scaled = self._scale_search(spec, sr)
            if scaled is not None:
                detected, p, _ = self._decision(z_max, None, z_scaled=scaled[0])
                z_max = max(z_max, scaled[0])
        payload = None
        if detected and decoded is not None:
            payload = payload_hex(decoded, self.payload_bits)
        return WatermarkResult(detected=detected, scheme=self.scheme,
                               scheme_version=self.version, score=z_max, p_value=float(p),
                               fpr=self.fpr, payload=payload)

    def _raw_soft(self, artifact: Artifact) -> np.ndarray | None:
        """Soft values of the coded bits from the layer at the pilot's best alignment (for
        measurements)."""
        x, sr = _check(artifact, "detect", self.scheme)
        spec = chips.stft(resample(mix(x), sr, FS))
        grids = self._grids(spec, sr)
        if not grids:
            return None
        _z, phase, shift = self._alignments(grids, sr)[0]
        return self._scan(self._folded(spec, sr, phase, grids[phase]), shift + 1)[0][-1]

