"""guardrail's own audio watermark (scheme ``guardrail-audio``, version 1).

Design
------
*Working domain.* The mix of all channels is resampled to 16 kHz (scipy's polyphase
filter) and cut into STFT frames of 512 samples (32 ms, square-root Hann window, hop 256).
Two frames by four bins (32 ms x 125 Hz) form a *chip*; the marked band is 500-7000 Hz
(52 chip rows). Everything is measured at 16 kHz, so a copy resampled to 16 kHz (or to any
rate above 14 kHz) carries the same chips; at lower rates the rows that survive still do.

*Mark.* Each chip's magnitude is multiplied by ``1 + g``, ``g = a * v``: ``v`` is the chip's
keyed pattern value and ``a`` a perceptual allocation that follows the smoothed chip energy
as ``env ** -0.4`` - the quiet parts of the spectrum get a larger *relative* change than
loud formants, so the mark is flatter than the host and hides in its high band - capped at
``|g| <= A_MAX = 0.5``. Silent columns (band level below -60 dBFS, or 30 dB below the loud part of
the clip) and chips 60 dB below the loudest chip of their column get nothing: *silence
cannot carry a mark and is left untouched*. The change is synthesised as an additive signal
(inverse STFT of the changed bins; the host itself is never re-synthesised), resampled to the
input's rate, scaled so that the signal-to-watermark ratio is exactly ``31 - 20 log10
(strength)`` dB, and added to every channel (so the mix - the mid channel - carries the
mark; the side channel is untouched). The result is clipped to ``[-1, 1]``.

*Pattern.* It repeats every ``PERIOD = 32`` chip columns (1.024 s). In each period a keyed
60 % of the chips carry i.i.d. standard normal *pilot* values; the others carry the 186
coded bits of the payload (:class:`guardrail.watermark.ecc.PayloadCode`: 32-bit id, CRC-24,
rate-1/3 convolutional code), each bit spread over about 3.4 chips per period with keyed
signs, XORed with a keyed scrambling sequence. Before a coded bit is written the host's own
projection on it is measured and cancelled (informed embedding: the bit's chips are scaled
by ``1 - host / mark``, within ``ISS_RANGE``), which removes most of the host's interference
with the payload.

*Detection.* The chips of the (mixed, 16 kHz) input are turned into key-independent
residuals: the log energy of each chip minus the mean of its two neighbours in frequency or
in time (per row, whichever varies less over the clip: speech prefers frequency, sustained
music time), clipped to 3 nats, weighted by the allocation the embedder would have used
and by the cubed fraction of the chip's energy above a flat noise floor, with each row's
and each column's mean removed. The columns are folded modulo the period. For each of the
``PERIOD`` circular shifts and both chip phases (a crop can start anywhere) the normalised
pilot correlation ``z = sum(g * F) / sqrt(sum(F ** 2))`` is computed (one matrix product
with the pilot at every shift).

*Scale search.* A speed change (resampling: time and frequency scaled together), a tempo
change (time-stretch keeping the pitch) or a pitch shift (frequency only) moves the chips off
the grid, and the fold then mixes pattern positions. When the unscaled grid yields no id,
the detector reads the audio (at most its middle ``SCALE_WINDOW_S`` = 6.4 s, which bounds
the cost of the search for any length) under each of ``len(SCALES)`` = 63 scale
hypotheses: speed and tempo changes up to +-6.5 % in 0.5 % steps (a 0.25 % error drifts at
most 0.25 of a chip over the 3.2 s either side of the centre) and pitch shifts up to +-6 %
(one semitone is 5.9 %) in 1 % steps (half a step is 1.1 FFT bins at 7 kHz, 0.3 of a chip
row). Chip residuals are computed once on a fine grid (a chip anchored at every STFT frame
and bin, :mod:`._audio_scale`); a hypothesis interpolates that grid at its scaled rows,
reads it at the scaled frame of each half-column of the original and folds: no STFT, log
or percentile per hypothesis. Each of the ``2 * PERIOD`` (phase, shift)
scores of every hypothesis is again exactly N(0, 1) without this key's mark.

*Decision.* When the audio does not carry this key's mark, each ``z`` is *exactly*
standard normal whatever the audio is: the pilot values are i.i.d. N(0, 1) drawn from the
key and everything else is computed from the audio alone. The false-positive budget is
split by a weighted Bonferroni bound: half (``UNSCALED_WEIGHT``) for the ``N_TESTS = 2 *
PERIOD`` tests of the unscaled grid, half for the ``N_SCALE_TESTS = 63 * 64`` tests of the
scale search, so the pilot p-value is ``min(1, N_TESTS Q(z) / 0.5, N_SCALE_TESTS Q(z') /
0.5)`` (``z'``: the best scaled score, when the search ran) - the score needed on the
unscaled grid rises from 4.66 to 4.80 sigma, the scaled one is 5.57. The payload is
decoded at the best unscaled shift - at most twice, first for chip phase 0 alone, which is
all that is needed when it already passes the CRC - and, when neither passes, at the best
scaled hypothesis (when its ``z' >= 3``). When the best path fails the CRC and the pilot
score is at least 3, a *list Viterbi* decode checks the ``list_size`` best paths (16 at
``fpr = 1e-4``; fewer at stricter rates, so that the CRC checks use at most 10 % of ``fpr``)
in order; the first that passes is the id. Each check accepts a wrong message with
probability ``2 ** -24``, so with ``p_crc = 3 * list_size * 2 ** -24`` (2.9e-6 at
``fpr = 1e-4``) the reported p-value is ``min(1, p_pilot + p_crc)``, or ``p_crc`` when a
payload passed its CRC (a valid p-value for "pilot or CRC", union bound), and ``detected`` is
``p_value <= fpr``. The payload is reported only then.

``embed`` checks its own output: audio in which the mark would not be detected even
without any attack (pure tones, a DC offset, content outside 500-7000 Hz) raises
:class:`CannotWatermark` instead of being returned with a mark nobody could find. The id
must decode too, with a margin (``ID_MARGIN``): in a clip of one or two seconds each coded
bit has only a few chips, and the host can outweigh a bit even after informed embedding.
The weakest bits are then strengthened, for up to ``RESCUE_ROUNDS`` rounds; a clip that
still cannot carry the id raises :class:`CannotWatermark` with ``payload_dependent`` set
(another id may fit; the guard's watermark stage then draws one). A mark found without its
id is never returned.

The key (any bytes) seeds every keyed choice through HMAC-SHA256; it is never logged, shown
or put into results.

Limits
------
* Clips shorter than ``MIN_SECONDS`` (1 s), clips with less than ``MIN_ACTIVE_SECONDS`` of
  signal in the band, non-finite samples, sample rates outside 8-96 kHz and shapes other
  than ``N`` / ``N x C`` raise :class:`CannotWatermark` from ``embed`` and give
  ``detected=None`` (with the reason) from ``detect``.
* Clipped input is accepted; re-clipping removes a little of the mark at full-scale peaks.
* Below 16 kHz only the rows under 0.45 x the sample rate are used (500-3600 Hz at 8 kHz).
* Speed and tempo changes beyond +-6.5 % and pitch shifts beyond about one semitone are not
  searched; combinations of a tempo change with a pitch shift (both axes scaled by
  different factors) are searched only along the speed diagonal. Unmarked audio, and
  attacked audio whose id is not found on the unscaled grid, pays for the scale search in
  detection time (see docs/BENCHMARKS.md).
* Noise 20 dB below the signal leaves the mark detectable but not always the payload; at
  10 dB the id is not recovered (docs/ROBUSTNESS.md: a format change, not a detector's).
* Purely tonal, noiseless signals (synthetic tones) carry the mark weakly.
* **Keyless copy and removal.** The pattern repeats every period and is the same in every
  output of a key: one output gives it away (docs/ROBUSTNESS.md). Version 2
  (:mod:`guardrail.watermark.audio_v2`) binds it to the content.
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

from .._types import Artifact, Modality, WatermarkResult
from ..signal import resample
from . import _audio_scale as scale
from . import _chips as chips
from ._chips import BAND, CHIP_FRAMES, FS, HOP, N_ROWS
from .base import (
    CannotWatermark,
    KeyedScheme,
    check_audio,
    check_payload,
    mix,
    not_performed,
    payload_hex,
    upper_tail,
)
from .ecc import PayloadCode, decode_id, list_size_for

__all__ = ["GuardrailAudioWatermark", "MIN_SECONDS", "N_TESTS", "SAMPLE_RATES"]

SCHEME = "guardrail-audio"
VERSION = "1"

#: Columns per repetition of the pattern (32 chip columns = 1.024 s).
PERIOD = 32
#: Fraction of the chips of a period that carry the pilot (the rest carry the payload).
PILOT_FRACTION = 0.6
#: Accepted sample rates (inclusive), shortest clip and least in-band signal (seconds).
SAMPLE_RATES = (8000, 96000)
MIN_SECONDS = 1.0
MIN_ACTIVE_SECONDS = 0.5
#: Band level (dBFS) below which a column is not marked / the detector ignores it.
SILENCE_DBFS = -60.0
DETECT_FLOOR_DBFS = -90.0
#: Signal-to-watermark ratio (dB) at strength 1.
BASE_SNR_DB = 31.0
#: Informed embedding: per-bit factor bounds; share of a chip's log change re-read (0.7).
ISS_RANGE = (0.25, 3.0)
RETENTION = 0.7
N_TESTS = CHIP_FRAMES * PERIOD  #: (chip phase, shift) hypotheses tested on the unscaled grid
#: Scale search (speed, tempo, pitch): changes up to +-``SCALE_MAX`` in steps of
#: ``SCALE_TIME_STEP`` (speed, tempo) and ``SCALE_FREQ_STEP`` (pitch), read on at most
#: ``SCALE_WINDOW_S`` seconds (the middle of a longer clip).
SCALE_MAX = 0.065
SCALE_TIME_STEP = 0.005
SCALE_FREQ_STEP = 0.01
SCALE_WINDOW_S = 6.4
#: The scale hypotheses and the number of (hypothesis, chip phase, shift) tests they add.
SCALES = tuple(scale.hypotheses(SCALE_MAX, SCALE_TIME_STEP, SCALE_FREQ_STEP))
N_SCALE_TESTS = len(SCALES) * N_TESTS
#: The scale search's best fold is decoded only from this score up (saves futile decodes).
SCALE_DECODE_MIN_Z = 3.0
#: Share of the false-positive rate spent on the unscaled grid (the rest on the scale
#: search): weighted Bonferroni, ``p = min(N_TESTS Q(z) / W, N_SCALE_TESTS Q(z') / (1 - W))``.
UNSCALED_WEIGHT = 0.5
#: Most payload decodes per detection (in the p-value): two unscaled, one scaled.
N_DECODES = 3
#: A decode whose best path fails the CRC checks the ``LIST_SIZE`` best (list Viterbi) when
#: the pilot score is at least ``LIST_MIN_Z``; every check counts in the p-value, and the
#: list is shortened so that they use at most ``LIST_FPR_SHARE`` of ``fpr`` (``fpr=1e-4``: 16
#: paths, ``p_crc = 3 * 16 * 2**-24 = 2.9e-6``; ``fpr <= 1.8e-6``: one path, plain Viterbi).
LIST_SIZE, LIST_FPR_SHARE, LIST_MIN_Z = 16, 0.1, 3.0
#: ``embed`` checks that the id decodes from its output with every coded bit's soft value
#: moved ``ID_MARGIN`` x their median magnitude towards the wrong value.
ID_MARGIN = 0.05
#: When it does not, the weakest coded bits (read below ``RESCUE_WEAK`` x the median) are
#: strengthened (x2 a round, at most ``RESCUE_MAX_BOOST``) for up to ``RESCUE_ROUNDS`` rounds.
RESCUE_ROUNDS = 3
RESCUE_WEAK = 0.25
RESCUE_MAX_BOOST = 8.0


def _check(artifact: Artifact, verb: str, scheme: str = SCHEME) -> tuple[np.ndarray, int]:
    return check_audio(artifact, verb, scheme=scheme, min_seconds=MIN_SECONDS,
                       sample_rates=SAMPLE_RATES)


def _fold(v: np.ndarray) -> np.ndarray:
    """Sum columns modulo ``PERIOD``."""
    out = np.zeros((PERIOD, v.shape[1]), dtype=np.float64)
    np.add.at(out, np.arange(v.shape[0]) % PERIOD, v)
    return out


class GuardrailAudioWatermark(KeyedScheme):
    """guardrail's default audio watermark.

    Parameters
    ----------
    key : bytes
        Secret key (at least 16 bytes recommended). All patterns derive from it.
    fpr : float
        False-positive rate at which ``detect`` decides ``detected``.
    payload_bits : int
        Size of the payload id (1..32 bits; the code always carries 32).
    strength : float
        Amplitude of the mark relative to the default: the signal-to-watermark ratio is
        ``31 - 20 log10(strength)`` dB (31 dB at 1.0). Between 0.1 and 4.
    code : PayloadCode, optional
        The payload's error-correcting code (default: 32-bit id, CRC-24, rate 1/3). Any
        object with ``n_coded``, ``false_accept_probability``, ``encode(int) -> bits``
        and ``decode(soft) -> result with .value`` (``None`` when rejected) fits; marks
        made with one code are read only with the same code.

    Examples
    --------
    >>> import numpy as np
    >>> from guardrail import Artifact, GenerationMetadata
    >>> rng = np.random.default_rng(0)  # 3 s of brown noise with a syllable-like envelope
    >>> brown = np.cumsum(rng.standard_normal(48000))
    >>> brown -= np.convolve(brown, np.ones(400) / 400, "same")
    >>> x = brown / np.abs(brown).max() * np.repeat(rng.uniform(0.1, 0.9, 30), 1600)
    >>> art = Artifact("audio", x.astype(np.float32), GenerationMetadata("m"),
    ...                sample_rate=16000)
    >>> wm = GuardrailAudioWatermark(b"k" * 32)
    >>> wm.detect(art).detected
    False
    >>> res = wm.detect(wm.embed(art, 0xC0FFEE))
    >>> res.detected, res.payload
    (True, '00c0ffee')
    """

    scheme = SCHEME
    version = VERSION
    modality = Modality.AUDIO

    def __init__(self, key: bytes, *, fpr: float = 1e-4, payload_bits: int = 32,
                 strength: float = 1.0, code: PayloadCode | None = None) -> None:
        self._set_key(key, fpr, payload_bits)
        if not 0.1 <= float(strength) <= 4.0:
            raise ValueError(f"strength must be in [0.1, 4], got {strength}")
        self.strength = float(strength)
        #: Signal-to-watermark ratio (dB) that ``embed`` produces.
        self.snr_db = BASE_SNR_DB - 20.0 * math.log10(self.strength)
        self._code = code if code is not None else PayloadCode(info_bits=32, crc_bits=24)
        if self.payload_bits > int(getattr(self._code, "info_bits", 32)):
            raise ValueError(f"payload_bits={self.payload_bits} exceeds the code's "
                             f"{self._code.info_bits} information bits")
        #: Paths checked per payload decode (1: plain Viterbi, also without ``decode_list``).
        self.list_size = list_size_for(self._code, self.fpr, N_DECODES, cap=LIST_SIZE,
                                       share=LIST_FPR_SHARE)

    # ------------------------------------------------------------------ keyed layout
    @cached_property
    def _layout(self) -> dict[str, np.ndarray]:
        # the two edge rows only serve as frequency neighbours
        cells = np.array([(c, r) for c in range(PERIOD) for r in range(1, N_ROWS - 1)])
        perm = self._rng("cells").permutation(len(cells))
        n_pilot = int(round(len(cells) * PILOT_FRACTION))
        pc, yc = cells[perm[:n_pilot]], cells[perm[n_pilot:]]
        pilot = np.zeros((PERIOD, N_ROWS))
        pilot[pc[:, 0], pc[:, 1]] = self._rng("pilot").standard_normal(n_pilot)
        pmask = np.zeros((PERIOD, N_ROWS))
        pmask[pc[:, 0], pc[:, 1]] = 1.0
        bit_of = np.full((PERIOD, N_ROWS), -1, dtype=np.int64)
        bit_of[yc[:, 0], yc[:, 1]] = np.arange(len(yc)) % self._code.n_coded
        signs = np.zeros((PERIOD, N_ROWS))
        signs[yc[:, 0], yc[:, 1]] = self._rng("signs").choice([-1.0, 1.0], size=len(yc))
        scramble = self._rng("scramble").integers(0, 2, size=self._code.n_coded)
        return {"pilot": pilot, "bit_of": bit_of, "signs": signs,
                "scramble": scramble.astype(np.uint8),
                "pilot_fft": np.fft.rfft(pilot, axis=0), "pmask_fft": np.fft.rfft(pmask, axis=0)}

    def _pattern(self, word: np.ndarray) -> np.ndarray:
        """Pattern values of one period: pilot values and +-1 payload chips."""
        lay = self._layout
        bits = (word ^ lay["scramble"]).astype(np.float64) * 2.0 - 1.0
        pay = np.where(lay["bit_of"] >= 0, bits[np.maximum(lay["bit_of"], 0)], 0.0)
        return lay["pilot"] + lay["signs"] * pay

    # ------------------------------------------------------------------ embed
    def embed(self, artifact: Artifact, payload: int) -> Artifact:
        """Return a new artifact whose audio carries ``payload``.

        The result has the same sample rate, shape and channel count (``float32`` in
        ``[-1, 1]``); its signal-to-watermark ratio is ``snr_db`` (or higher where the
        output had to be clipped).

        Raises
        ------
        CannotWatermark
            The input cannot carry a detectable mark: too short, silent or nearly silent in
            the band, unsupported rate or shape, non-finite samples, or so sparse (pure
            tones) that the mark would not be found; or the mark is detectable but this id
            does not decode from it with a margin (``payload_dependent`` is then ``True``:
            another id may fit). The message says which.
        """
        payload = check_payload(payload, self.payload_bits)
        x, sr = _check(artifact, "embed", self.scheme)
        x16 = resample(mix(x), sr, FS)
        spec = chips.stft(x16)
        energy = chips.chip_energy(spec, 0)
        row_ok = chips.rows_ok(sr)
        active = chips.active_columns(energy, row_ok, SILENCE_DBFS)
        if active.sum() * CHIP_FRAMES * HOP / FS < MIN_ACTIVE_SECONDS:
            raise CannotWatermark(
                f"cannot embed: the audio is silent or nearly silent in {BAND[0]:g}-"
                f"{BAND[1]:g} Hz (less than {MIN_ACTIVE_SECONDS:g} s above "
                f"{SILENCE_DBFS:g} dBFS); silence cannot carry a mark")
        word = np.asarray(self._code.encode(payload), dtype=np.uint8)
        gain = chips.allocation(energy, active, row_ok) * self._pattern(word)[
            np.arange(energy.shape[0]) % PERIOD] * self._content_sign(energy)
        # scale to the target energy (estimated on the chips; made exact on the output)
        want = float(np.sum(x16.astype(np.float64) ** 2)) * 10.0 ** (-self.snr_db / 10.0)
        gain = chips.scaled(gain, energy, want)
        gain = gain * self._iss_factors(energy, active, row_ok, gain, word)
        sign = word.astype(np.float64) * 2.0 - 1.0
        boost = np.ones(self._code.n_coded)
        for attempt in range(RESCUE_ROUNDS + 1):
            out, found = self._render(x, sr, x16, spec, energy, chips.scaled(
                gain * self._per_chip(boost, energy.shape[0]), energy, want))
            # self-check on the output itself, at the known alignment (the detector searches
            # all of them, so it scores at least this): would the mark and its id be found
            # without an attack?
            if isinstance(found, str) or not self._decide(*found)[0]:
                if attempt == 0:
                    z = found[0] if not isinstance(found, str) else float("nan")
                    raise CannotWatermark(
                        f"cannot embed: the mark would not be detectable in this audio at "
                        f"strength {self.strength:g} (score {z:.1f}, at least "
                        f"{self._z_threshold():.1f} needed): too little of it lies in "
                        f"{BAND[0]:g}-{BAND[1]:g} Hz, its spectrum is too sparse (pure tones, "
                        f"a DC offset) or too flat and short (steady noise)")
                break
            soft = self._soft(found[1])
            if self._carries(soft, sign, payload):
                if artifact.content.ndim == 1:
                    out = out[:, 0]
                return artifact.evolve(content=out, data=None, media_type=None)
            # strengthen the coded bits that read weakly or wrongly, and try again
            margins = soft * sign
            weak = margins < RESCUE_WEAK * np.median(np.abs(margins))
            boost[weak] = np.minimum(boost[weak] * 2.0, RESCUE_MAX_BOOST)
        raise CannotWatermark(
            f"cannot embed: this {x.shape[0] / sr:.2f} s clip cannot carry watermark id "
            f"{payload_hex(payload, self.payload_bits)} reliably: the mark is detectable but "
            f"the id does not decode from it with a margin at strength {self.strength:g} (in "
            f"a clip this short some ids fit and others do not)", payload_dependent=True)

    #: Version 2's pilot weights per anchor of the scale search's grid, one per view (none here).
    _fine_weights = None

    def _content_sign(self, energy: np.ndarray) -> np.ndarray | float:
        return 1.0

    _n_tests, _n_scale_tests = N_TESTS, N_SCALE_TESTS  #: pilot tests (v2: two views each)

    def _pilot_scores(self, energy: np.ndarray, r: np.ndarray, w: np.ndarray, P: np.ndarray
                      ) -> np.ndarray:
        """Pilot z at each shift of the unscaled grid (here: of the payload's fold ``P``)."""
        return self._pilot_z(P)

    def _per_chip(self, boost: np.ndarray, n_cols: int) -> np.ndarray:
        """Per-coded-bit factors spread over the bit's chips (1 on pilot chips)."""
        bit_of = self._layout["bit_of"][np.arange(n_cols) % PERIOD]
        return np.where(bit_of >= 0, boost[np.maximum(bit_of, 0)], 1.0)

    def _render(self, x: np.ndarray, sr: int, x16: np.ndarray, spec: np.ndarray,
                energy: np.ndarray, gain: np.ndarray
                ) -> tuple[np.ndarray, tuple[float, np.ndarray] | str]:
        """The marked ``samples x channels`` output for chip gains ``gain`` (``energy``: the
        chip energies of ``spec``) at exactly ``snr_db``, and the aligned search on it."""
        out = chips.add_change(x, sr, x16, spec, gain, self.snr_db)
        if out is None:
            raise CannotWatermark(f"cannot embed: no part of the audio in {BAND[0]:g}-"
                                  f"{BAND[1]:g} Hz can carry a mark")
        return out, self._search_x16(resample(mix(out), sr, FS), sr, aligned=True)

    def _carries(self, soft: np.ndarray, sign: np.ndarray, payload: int) -> bool:
        """Whether ``payload`` decodes from the coded bits' ``soft`` values (``sign``: +-1,
        the coded word) even when every one is moved ``ID_MARGIN`` x their median magnitude
        towards the wrong value - a margin for what encoding (16-bit samples, resampling)
        changes. The decoder is maximum likelihood, so a decode that survives the shift also
        succeeds without it."""
        shifted = soft - ID_MARGIN * float(np.median(np.abs(soft))) * sign
        return self._code.decode(shifted).value == payload

    def _iss_factors(self, energy: np.ndarray, active: np.ndarray, row_ok: np.ndarray,
                     gain: np.ndarray, word: np.ndarray) -> np.ndarray:
        """Per-chip factors that cancel the host's projection on each coded bit.

        For coded bit ``b`` the detector's soft value is about ``m_b + h_b``: ``m_b`` from
        the mark (``2 * RETENTION * |gain| * weight`` summed over the bit's chips) and
        ``h_b`` from the host. Scaling the bit's chips by ``1 - h_b / m_b`` (clipped to
        ``ISS_RANGE``) makes the soft value about ``m_b`` whatever the host is.
        """
        lay = self._layout
        cols = np.arange(energy.shape[0]) % PERIOD
        bit_of = lay["bit_of"][cols]
        is_pay = bit_of >= 0
        idx = bit_of[is_pay]
        r, w = chips.residuals(energy, active, row_ok)
        v = chips.weighted(r, w)
        n = self._code.n_coded
        bitsign = (word ^ lay["scramble"]).astype(np.float64) * 2.0 - 1.0
        direction = lay["signs"][cols] * np.where(is_pay, bitsign[np.maximum(bit_of, 0)], 0.0)
        host = np.bincount(idx, weights=(v * direction)[is_pay], minlength=n)
        mark = np.bincount(idx, weights=(2.0 * RETENTION * np.abs(gain) * w)[is_pay],
                           minlength=n)
        factors = np.ones(n)
        ok = mark > 0
        factors[ok] = np.clip(1.0 - host[ok] / mark[ok], *ISS_RANGE)
        out = np.ones_like(gain)
        out[is_pay] = factors[idx]
        return out

    # ------------------------------------------------------------------ detect
    def detect(self, artifact: Artifact) -> WatermarkResult:
        """Look for this key's mark; ``detected`` is decided at ``fpr``.

        Returns a result with ``detected=None`` (and the reason) when the audio cannot be
        checked (not audio, too short, silent, unsupported rate or shape, non-finite).
        """
        try:
            x, sr = _check(artifact, "detect", self.scheme)
        except CannotWatermark as exc:
            return not_performed(self.scheme, self.version, str(exc))
        x16 = resample(mix(x), sr, FS)
        spec = chips.stft(x16)
        # chip phase 0 first; when its payload already passes the CRC the p-value cannot
        # get lower, so phase 1 is skipped (the bound counts both phases either way)
        found = self._search_x16(x16, sr, phases=(0,), spec=spec)
        decision = None if isinstance(found, str) else self._decide(*found)
        if decision is None or decision[2] is None:
            other = self._search_x16(x16, sr, phases=(1,), spec=spec)
            if isinstance(found, str) or (not isinstance(other, str) and other[0] > found[0]):
                found = other
                if isinstance(found, str):
                    return not_performed(self.scheme, self.version, found)
                decision = self._decide(*found)
        z_max = found[0]
        if decision[2] is None:
            # no id on the unscaled grid: the audio may have been sped up, stretched or
            # pitch-shifted - read it under every scale hypothesis
            scaled = self._scale_search(spec, sr)
            if scaled is not None:
                z_s, aligned_s = scaled
                decoded = (self._decode(self._soft(aligned_s), z_s) if z_s >= SCALE_DECODE_MIN_Z
                           and self._worth_decoding(found[0], z_s) else None)
                decision = self._decision(found[0], decoded, z_scaled=z_s)
                z_max = max(z_max, z_s)
        detected, p, decoded = decision
        payload = None
        if detected and decoded is not None and decoded < (1 << self.payload_bits):
            payload = payload_hex(decoded, self.payload_bits)
        return WatermarkResult(detected=detected, scheme=self.scheme,
                               scheme_version=self.version, score=z_max, p_value=float(p),
                               fpr=self.fpr, payload=payload)

    def _decide(self, z_max: float, aligned: np.ndarray) -> tuple[bool, float, int | None]:
        """``(detected, p_value, decoded id or None)``: best unscaled score, its fold."""
        decoded = self._decode(self._soft(aligned), z_max) if self._worth_decoding(z_max) else None
        return self._decision(z_max, decoded)

    def _worth_decoding(self, z_max: float, z_scaled: float | None = None) -> bool:
        """Whether a decode can change the result (here always: a CRC-valid id is evidence)."""
        return True

    def _decode(self, soft: np.ndarray, z: float) -> int | None:
        """The id passing the CRC among the best paths (``list_size`` from LIST_MIN_Z), or None."""
        return decode_id(self._code, soft, self.list_size if z >= LIST_MIN_Z else 1)

    def _decision(self, z_max: float, decoded: int | None, *,
                  z_scaled: float | None = None) -> tuple[bool, float, int | None]:
        """``(detected, p_value, decoded)`` from the unscaled grid's best score, the scale
        search's (when it ran) and the payload that passed its CRC (or ``None``)."""
        p_pilot = min(1.0, self._n_tests * upper_tail(z_max) / UNSCALED_WEIGHT)
        if z_scaled is not None:
            p_scaled = self._n_scale_tests * upper_tail(z_scaled) / (1 - UNSCALED_WEIGHT)
            p_pilot = min(p_pilot, p_scaled)
        p_crc = self._p_crc()
        # valid for the union "pilot or CRC": P(p <= a) <= P(p_pilot <= a - p_crc) + p_crc
        p = p_crc if decoded is not None else min(1.0, p_pilot + p_crc)
        return p <= self.fpr, float(p), decoded

    def _scale_search(self, spec: np.ndarray, sr: int) -> tuple[float, np.ndarray] | None:
        """Best pilot z over every scale hypothesis, chip phase, shift (and view), and the
        payload's fold aligned to it; ``None`` when the audio is too short or silent."""
        n_win = int(SCALE_WINDOW_S * FS / HOP)
        start = max(0, (spec.shape[0] - n_win) // 2)  # the middle of a longer clip
        grid = scale.fine_grid(spec[start:start + n_win], sr, floor_dbfs=DETECT_FLOOR_DBFS,
                               max_scale=SCALE_MAX, weights=self._fine_weights)
        if grid is None or grid.active.sum() * HOP / FS < MIN_ACTIVE_SECONDS:
            return None
        best = (-np.inf, 0, 0)
        for view in range(len(grid.u)) if grid.u else (None,):
            z = self._pilot_z(grid.folds(list(SCALES), PERIOD, view).reshape(-1, PERIOD, N_ROWS))
            best = max(best, (float(z.max()), *map(int, np.unravel_index(z.argmax(), z.shape))))
        z_best, h, k = best
        pay = grid.folds([SCALES[h // CHIP_FRAMES]], PERIOD)[0, h % CHIP_FRAMES]  # unweighted
        return z_best, np.roll(pay, k, axis=0)

    @cached_property
    def _circulant(self) -> tuple[np.ndarray, np.ndarray]:
        """The pilot values and the pilot mask at every circular shift ``k`` of a period,
        flattened: row ``k`` holds ``pilot[(j + k) % PERIOD, r]`` over ``(j, r)``."""
        lay = self._layout
        pmask = (lay["pilot"] != 0).astype(np.float64)
        pilot = np.stack([np.roll(lay["pilot"], -k, axis=0).ravel() for k in range(PERIOD)])
        mask = np.stack([np.roll(pmask, -k, axis=0).ravel() for k in range(PERIOD)])
        return pilot, mask

    def _pilot_z(self, F: np.ndarray) -> np.ndarray:
        """Normalised pilot correlation of a fold (``PERIOD x N_ROWS``, or a stack of them)
        at each of the ``PERIOD`` circular shifts:
        ``z[k] = sum_j pilot[j + k] F[j] / sqrt(sum_j mask[j + k] F[j]^2)``."""
        pilot, mask = self._circulant
        flat = np.asarray(F, dtype=np.float64).reshape(*F.shape[:-2], -1)
        num = flat @ pilot.T
        den = (flat * flat) @ mask.T
        return np.where(den > 1e-24, num / np.sqrt(np.maximum(den, 1e-24)), 0.0)

    def _false_accept(self) -> float:
        """Chance that one CRC check accepts a wrong message (``2 ** -24`` for CRC-24)."""
        return float(getattr(self._code, "false_accept_probability", 2.0 ** -24))

    def _p_crc(self) -> float:
        """P(unmarked audio passes a CRC): union bound over ``N_DECODES * list_size`` checks."""
        return N_DECODES * self.list_size * self._false_accept()

    def _z_threshold(self) -> float:
        """The pilot score above which ``detect`` reports a mark (without a payload)."""
        target = (self.fpr - self._p_crc()) * UNSCALED_WEIGHT / self._n_tests
        lo, hi = 0.0, 40.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if upper_tail(mid) > target else (lo, mid)
        return hi

    def _search(self, artifact: Artifact) -> tuple[float, np.ndarray] | str:
        """Best pilot z over every shift and chip phase, and the fold aligned to it; or the
        reason (a string) why the audio cannot be checked."""
        try:
            x, sr = _check(artifact, "detect", self.scheme)
        except CannotWatermark as exc:
            return str(exc)
        return self._search_x16(resample(mix(x), sr, FS), sr)

    def _search_x16(self, x16: np.ndarray, sr: int, *, phases: tuple[int, ...] = (0, 1),
                    aligned: bool = False,
                    spec: np.ndarray | None = None) -> tuple[float, np.ndarray] | str:
        """:meth:`_search` on the 16 kHz mix of audio whose original rate was ``sr``, over
        the given chip ``phases`` (``aligned``: only shift 0 of phase 0, the embedder's
        own alignment, for its self-check); ``spec`` is the mix's STFT if already known."""
        if spec is None:
            spec = chips.stft(x16)
        row_ok = chips.rows_ok(sr)
        best: tuple[float, int, np.ndarray] | None = None
        for phase in (0,) if aligned else phases:
            energy = chips.chip_energy(spec, phase)
            active = chips.active_columns(energy, row_ok, DETECT_FLOOR_DBFS)
            if active.sum() * CHIP_FRAMES * HOP / FS < MIN_ACTIVE_SECONDS:
                continue
            r, w = chips.residuals(energy, active, row_ok)
            P = _fold(chips.weighted(r, w))  # the payload's fold; the pilot's: _pilot_scores
            z = self._pilot_scores(energy, r, w, P)
            k = 0 if aligned else int(np.argmax(z))
            if best is None or z[k] > best[0]:
                best = (float(z[k]), k, P)
        if best is None:
            return (f"cannot detect: the audio is silent or nearly silent in {BAND[0]:g}-"
                    f"{BAND[1]:g} Hz (less than {MIN_ACTIVE_SECONDS:g} s of signal)")
        z_max, shift, F = best
        return z_max, np.roll(F, shift, axis=0)

    def _soft(self, F: np.ndarray) -> np.ndarray:
        """Soft values of the coded bits from an aligned fold (> 0 means 1)."""
        lay = self._layout
        m = lay["bit_of"] >= 0
        soft = np.bincount(lay["bit_of"][m], weights=(F * lay["signs"])[m],
                           minlength=self._code.n_coded)
        return np.where(lay["scramble"] == 1, -soft, soft)

    def _raw_soft(self, artifact: Artifact) -> np.ndarray | None:
        """Soft values of the coded payload bits at the best shift - of the scale search
        when the unscaled grid's score is below the threshold and the search scores higher
        (for measurements)."""
        found = self._search(artifact)
        if isinstance(found, str):
            return None
        if found[0] < self._z_threshold():
            x, sr = _check(artifact, "detect", self.scheme)
            scaled = self._scale_search(chips.stft(resample(mix(x), sr, FS)), sr)
            if scaled is not None and scaled[0] > found[0]:
                found = scaled
        return self._soft(found[1])
