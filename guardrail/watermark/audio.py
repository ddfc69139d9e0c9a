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
pilot correlation ``z = sum(g * F) / sqrt(sum(F ** 2))`` is computed by FFT.

*Decision.* When the audio does not carry this key's mark, each ``z`` is *exactly*
standard normal whatever the audio is: the pilot values are i.i.d. N(0, 1) drawn from the
key and everything else is computed from the audio alone. ``N_TESTS = 2 * PERIOD`` shifts are
tested, so the pilot p-value is the Bonferroni bound ``min(1, N_TESTS * Q(z_max))``. The
payload is decoded at the best shift (soft Viterbi) - at most twice, first for chip phase
0 alone, which is all that is needed when it already passes the CRC - and a wrong decode
passes the CRC with probability ``2 ** -24``. With ``p_crc = 2 * 2 ** -24`` the reported
p-value is ``min(1, p_pilot + p_crc)``, or ``p_crc`` when a payload passed its CRC (a valid
p-value for "pilot or CRC"), and ``detected`` is ``p_value <= fpr``. The payload is
reported only then.

``embed`` checks its own output: audio in which the mark would not be detected even
without any attack (pure tones, a DC offset, content outside 500-7000 Hz) raises
:class:`CannotWatermark` instead of being returned with a mark nobody could find.

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
* Speed changes (resampling without telling, pitch shifts) move the chips; they are not
  survived. Noise 20 dB below the signal leaves the mark detectable but usually not the
  payload.
* Purely tonal, noiseless signals (synthetic tones) carry the mark weakly.
"""

from __future__ import annotations

import functools
import math
from functools import cached_property

import numpy as np

from .._types import Artifact, Modality, WatermarkResult
from .base import CannotWatermark, check_payload, keyed_rng, not_performed
from .ecc import PayloadCode

__all__ = ["GuardrailAudioWatermark", "MIN_SECONDS", "SAMPLE_RATES", "resample"]

SCHEME = "guardrail-audio"
VERSION = "1"

#: Internal analysis rate (Hz), STFT size and hop (samples at that rate).
FS = 16000
N_FFT = 512
HOP = 256
#: A chip is ``CHIP_FRAMES`` STFT frames by ``CHIP_BINS`` bins (32 ms x 125 Hz).
CHIP_FRAMES = 2
CHIP_BINS = 4
#: Marked band (Hz).
BAND = (500.0, 7000.0)
#: Columns per repetition of the pattern (32 chip columns = 1.024 s).
PERIOD = 32
#: Fraction of the chips of a period that carry the pilot (the rest carry the payload).
PILOT_FRACTION = 0.6
#: Accepted sample rates (inclusive), shortest clip and least in-band signal (seconds).
SAMPLE_RATES = (8000, 96000)
MIN_SECONDS = 1.0
MIN_ACTIVE_SECONDS = 0.5
#: Silence: band level (dBFS) below which a column is not marked, its level relative to the
#: loud part of the clip (dB), and the floor below which the detector ignores a column.
SILENCE_DBFS = -60.0
SILENCE_REL_DB = -30.0
DETECT_FLOOR_DBFS = -90.0
#: Allocation exponent on the smoothed chip energy, cap of the relative change, and chips
#: this far below the loudest chip of their column (dB) are neither marked nor read.
ALLOC_EXP = -0.4
A_MAX = 0.5
DYN_RANGE_DB = 60.0
#: Signal-to-watermark ratio (dB) at strength 1.
BASE_SNR_DB = 31.0
#: Residuals are clipped to this many nats; noise-floor quantile over rows (percent) and
#: exponent of the chip-SNR weight.
R_CLIP = 3.0
FLOOR_ROW_QUANTILE = 20.0
SNR_WEIGHT_EXP = 3.0
#: Informed embedding: bounds of the per-bit amplitude factor, and the part of a chip's
#: log-energy change that survives re-analysis (measured, about 0.7).
ISS_RANGE = (0.25, 3.0)
RETENTION = 0.7
#: Number of (chip phase, shift) hypotheses the detector tests.
N_TESTS = CHIP_FRAMES * PERIOD  # the phases are 0 and 1 (frames)
#: Most payload decodes one detection makes (counted in the p-value).
N_DECODES = 2

_ROW0 = int(round(BAND[0] / (FS / N_FFT)))
_N_ROWS = int(round((BAND[1] - BAND[0]) / (FS / N_FFT))) // CHIP_BINS
_ROW1 = _ROW0 + _N_ROWS * CHIP_BINS  # one past the last marked bin
# chip-energy sum of a column -> mean square of the band signal (sqrt-Hann, Parseval)
_LEVEL_SCALE = 4.0 / (N_FFT * N_FFT * CHIP_FRAMES)


def _q(z: float) -> float:
    """Upper tail of the standard normal distribution."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


# ---------------------------------------------------------------------- signal helpers
def _fft_module():
    """``scipy.fft`` when installed (about three times faster here), else ``numpy.fft``."""
    try:
        import scipy.fft as fft
    except ImportError:  # pragma: no cover - scipy comes with the image and audio extras
        fft = np.fft
    return fft


@functools.lru_cache(maxsize=16)
def _poly_filter(up: int, down: int) -> np.ndarray:
    """scipy's default ``resample_poly`` filter (Kaiser, beta 5), designed once per ratio."""
    from scipy.signal import firwin

    rate = max(up, down)
    return firwin(20 * rate + 1, 1.0 / rate, window=("kaiser", 5.0)).astype(np.float32)


def resample(x: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Resample a 1-D signal; the output has ``ceil(len(x) * sr_to / sr_from)`` samples.

    Uses scipy's polyphase filter when the reduced ratio is small (all common rates), else
    band-limited FFT resampling with zero padding against wrap-around. ``float32``.
    """
    x = np.asarray(x, dtype=np.float32)
    if sr_from == sr_to:
        return x.copy()
    g = math.gcd(int(sr_from), int(sr_to))
    ua, ub = int(sr_from) // g, int(sr_to) // g
    n = x.shape[0]
    m = -(-n * ub // ua)
    if max(ua, ub) <= 1000:
        try:
            from scipy.signal import resample_poly
        except ImportError:  # pragma: no cover
            pass
        else:
            y = resample_poly(x, ub, ua, window=_poly_filter(ub, ua).copy())[:m]
            if y.shape[0] < m:
                y = np.pad(y, (0, m - y.shape[0]))
            return y.astype(np.float32, copy=False)
    fft = _fft_module()
    q = -(-(n + 256 + n // 64) // ua)  # pad to ua * q samples: the output has ub * q
    n_pad, m_pad = ua * q, ub * q
    spec = fft.rfft(x, n_pad)
    k = m_pad // 2 + 1
    if k <= spec.shape[0]:
        out_spec = spec[:k].copy()
        if m_pad % 2 == 0:
            out_spec[-1] = out_spec[-1].real  # the new Nyquist bin
    else:
        out_spec = np.zeros(k, dtype=spec.dtype)
        out_spec[: spec.shape[0]] = spec
        if n_pad % 2 == 0:
            out_spec[spec.shape[0] - 1] *= 0.5
    y = fft.irfft(out_spec, m_pad)[:m] * (m_pad / n_pad)
    return y.astype(np.float32, copy=False)


_WINDOW = np.sqrt(np.hanning(N_FFT + 1)[:-1]).astype(np.float32)


def _stft(x: np.ndarray) -> np.ndarray:
    n = (x.shape[0] - N_FFT) // HOP + 1
    if n <= 0:
        return np.zeros((0, N_FFT // 2 + 1), dtype=np.complex64)
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT)[::HOP][:n]
    return _fft_module().rfft(frames * _WINDOW, axis=1)


def _istft(spec: np.ndarray, length: int) -> np.ndarray:
    """Overlap-add synthesis (square-root Hann, 50 % overlap: perfect reconstruction)."""
    frames = _fft_module().irfft(spec, N_FFT, axis=1).astype(np.float32) * _WINDOW
    out = np.zeros(length, dtype=np.float32)
    for p in (0, 1):  # even frames do not overlap each other, nor do odd ones
        seg = frames[p::2].ravel()
        start = p * HOP
        m = max(0, min(seg.shape[0], length - start))
        out[start:start + m] += seg[:m]
    return out


def _chip_energy(spec: np.ndarray, phase: int) -> np.ndarray:
    """Chip energies (columns x rows) of an STFT, the columns starting at frame ``phase``."""
    band = spec[phase:, _ROW0:_ROW1]
    power = band.real ** 2 + band.imag ** 2
    ncol = power.shape[0] // CHIP_FRAMES
    power = power[: ncol * CHIP_FRAMES].reshape(ncol, CHIP_FRAMES, _N_ROWS, CHIP_BINS)
    return power.sum(axis=(1, 3), dtype=np.float64)


def _rows_ok(sr: int) -> np.ndarray:
    """Chip rows that lie below 0.45 x the sample rate (usable at that rate)."""
    top = (_ROW0 + (np.arange(_N_ROWS) + 1) * CHIP_BINS) * FS / N_FFT
    return top <= 0.45 * sr


def _active_columns(energy: np.ndarray, row_ok: np.ndarray, floor_dbfs: float) -> np.ndarray:
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


def _allocation(energy: np.ndarray, active: np.ndarray, row_ok: np.ndarray) -> np.ndarray:
    """Relative amplitude shape per chip (unscaled): ``env ** ALLOC_EXP``.

    Zero on silent columns, on rows above the usable band and on chips more than
    ``DYN_RANGE_DB`` below the loudest chip of their column.
    """
    a = (_smooth3(energy) + 1e-30) ** ALLOC_EXP
    a *= active[:, None]
    a *= row_ok[None, :]
    a *= energy >= energy.max(axis=1, keepdims=True) * 10.0 ** (-DYN_RANGE_DB / 10.0)
    return a


def _noise_floor(energy: np.ndarray, row_ok: np.ndarray) -> float:
    """A flat noise floor per chip: a low quantile over the usable rows of each row's 10th
    percentile in time (a sustained tone raises one row, not the quantile)."""
    if energy.shape[0] < 8 or not row_ok.any():
        return 0.0
    per_row = np.percentile(energy[:, row_ok], 10, axis=0)
    return float(np.percentile(per_row, FLOOR_ROW_QUANTILE))


def _residuals(energy: np.ndarray, active: np.ndarray,
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
    w = _allocation(sig, active, row_ok) * (sig / (energy + 1e-30)) ** SNR_WEIGHT_EXP
    pos = w[w > 0]
    if pos.size:
        w = np.minimum(w / np.median(pos), 4.0)
    return r, w


def _weighted(r: np.ndarray, w: np.ndarray) -> np.ndarray:
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


def _fold(v: np.ndarray) -> np.ndarray:
    """Sum columns modulo ``PERIOD``."""
    out = np.zeros((PERIOD, v.shape[1]), dtype=np.float64)
    np.add.at(out, np.arange(v.shape[0]) % PERIOD, v)
    return out


def _scaled(gain: np.ndarray, energy: np.ndarray, want: float) -> np.ndarray:
    """Scale chip gains so that the mark's estimated energy is ``want``; cap them."""
    cur = float(np.sum(gain * gain * energy)) / (N_FFT / 2)
    out = gain * (math.sqrt(want / cur) if cur > 0 else 0.0)
    return np.clip(out, -A_MAX, A_MAX)


def _check_audio(artifact: Artifact, verb: str, *,
                 min_seconds: float = MIN_SECONDS) -> tuple[np.ndarray, int]:
    """Validate audio; return ``(samples x channels float32, sample_rate)``."""
    if artifact.modality != Modality.AUDIO:
        raise CannotWatermark(f"cannot {verb}: {SCHEME} works on audio, not "
                              f"{artifact.modality.value}")
    sr = artifact.sample_rate
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)) or sr <= 0:
        raise CannotWatermark(f"cannot {verb}: audio needs a positive integer sample rate, "
                              f"got {sr!r}")
    sr = int(sr)
    if not SAMPLE_RATES[0] <= sr <= SAMPLE_RATES[1]:
        raise CannotWatermark(f"cannot {verb}: sample rate {sr} Hz is outside the supported "
                              f"{SAMPLE_RATES[0]}-{SAMPLE_RATES[1]} Hz")
    content = artifact.content
    if not isinstance(content, np.ndarray):
        raise CannotWatermark(f"cannot {verb}: audio content must be a numpy array, got "
                              f"{type(content).__name__}")
    if content.ndim == 1:
        x = content[:, None]
    elif content.ndim == 2 and 1 <= content.shape[1] <= 64:
        x = content
    else:
        raise CannotWatermark(f"cannot {verb}: audio must be 1-D (mono) or N x C (channels "
                              f"last, at most 64), got shape {content.shape}")
    if np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32, copy=False)
    elif np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / float(np.iinfo(x.dtype).max)
    else:
        raise CannotWatermark(f"cannot {verb}: audio samples must be float (or integer PCM), "
                              f"got {x.dtype}")
    if x.shape[0] < min_seconds * sr or x.shape[0] == 0:
        raise CannotWatermark(f"cannot {verb}: the clip is {x.shape[0] / sr:.2f} s long; "
                              f"at least {min_seconds:g} s are needed")
    if not np.isfinite(x).all():
        raise CannotWatermark(f"cannot {verb}: the audio contains NaN or infinite samples")
    return x, sr


def _mix(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]


class GuardrailAudioWatermark:
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
        if not isinstance(key, (bytes, bytearray)) or len(key) == 0:
            raise ValueError("key must be non-empty bytes")
        if not 0.0 < float(fpr) < 1.0:
            raise ValueError(f"fpr must be in (0, 1), got {fpr}")
        if not 1 <= int(payload_bits) <= 32:
            raise ValueError(f"payload_bits must be in 1..32, got {payload_bits}")
        if not 0.1 <= float(strength) <= 4.0:
            raise ValueError(f"strength must be in [0.1, 4], got {strength}")
        self._key = bytes(key)
        self.fpr = float(fpr)
        self.payload_bits = int(payload_bits)
        self.strength = float(strength)
        #: Signal-to-watermark ratio (dB) that ``embed`` produces.
        self.snr_db = BASE_SNR_DB - 20.0 * math.log10(self.strength)
        self._code = code if code is not None else PayloadCode(info_bits=32, crc_bits=24)
        if self.payload_bits > int(getattr(self._code, "info_bits", 32)):
            raise ValueError(f"payload_bits={self.payload_bits} exceeds the code's "
                             f"{self._code.info_bits} information bits")

    def __repr__(self) -> str:  # never show the key
        return (f"GuardrailAudioWatermark(fpr={self.fpr}, payload_bits={self.payload_bits}, "
                f"strength={self.strength})")

    # ------------------------------------------------------------------ keyed layout
    def _rng(self, purpose: str) -> np.random.Generator:
        return keyed_rng(self._key, f"{SCHEME}/v{VERSION}/{purpose}")

    @cached_property
    def _layout(self) -> dict[str, np.ndarray]:
        # the two edge rows only serve as frequency neighbours
        cells = np.array([(c, r) for c in range(PERIOD) for r in range(1, _N_ROWS - 1)])
        perm = self._rng("cells").permutation(len(cells))
        n_pilot = int(round(len(cells) * PILOT_FRACTION))
        pc, yc = cells[perm[:n_pilot]], cells[perm[n_pilot:]]
        pilot = np.zeros((PERIOD, _N_ROWS))
        pilot[pc[:, 0], pc[:, 1]] = self._rng("pilot").standard_normal(n_pilot)
        pmask = np.zeros((PERIOD, _N_ROWS))
        pmask[pc[:, 0], pc[:, 1]] = 1.0
        bit_of = np.full((PERIOD, _N_ROWS), -1, dtype=np.int64)
        bit_of[yc[:, 0], yc[:, 1]] = np.arange(len(yc)) % self._code.n_coded
        signs = np.zeros((PERIOD, _N_ROWS))
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
            tones) that the mark would not be found; the message says which.
        """
        payload = check_payload(payload, self.payload_bits)
        x, sr = _check_audio(artifact, "embed")
        x16 = resample(_mix(x), sr, FS)
        spec = _stft(x16)
        energy = _chip_energy(spec, 0)
        row_ok = _rows_ok(sr)
        active = _active_columns(energy, row_ok, SILENCE_DBFS)
        if active.sum() * CHIP_FRAMES * HOP / FS < MIN_ACTIVE_SECONDS:
            raise CannotWatermark(
                f"cannot embed: the audio is silent or nearly silent in {BAND[0]:g}-"
                f"{BAND[1]:g} Hz (less than {MIN_ACTIVE_SECONDS:g} s above "
                f"{SILENCE_DBFS:g} dBFS); silence cannot carry a mark")
        word = np.asarray(self._code.encode(payload), dtype=np.uint8)
        gain = _allocation(energy, active, row_ok) * self._pattern(word)[
            np.arange(energy.shape[0]) % PERIOD]
        # scale to the target energy (estimated on the chips; made exact on the output)
        want = float(np.sum(x16.astype(np.float64) ** 2)) * 10.0 ** (-self.snr_db / 10.0)
        gain = _scaled(gain, energy, want)
        gain = _scaled(gain * self._iss_factors(energy, active, row_ok, gain, word),
                       energy, want)
        full = np.zeros(spec.shape, dtype=np.float32)
        full[: gain.shape[0] * CHIP_FRAMES, _ROW0:_ROW1] = np.repeat(
            np.repeat(gain, CHIP_BINS, axis=1), CHIP_FRAMES, axis=0)
        delta16 = _istft(spec * full, x16.shape[0])
        delta = resample(delta16, FS, sr)
        delta = np.pad(delta, (0, max(0, x.shape[0] - delta.shape[0])))[: x.shape[0]]
        e_x = float(np.sum(x.astype(np.float64) ** 2))
        e_d = float(np.sum(delta.astype(np.float64) ** 2)) * x.shape[1]
        if e_d <= 0.0:
            raise CannotWatermark(f"cannot embed: no part of the audio in {BAND[0]:g}-"
                                  f"{BAND[1]:g} Hz can carry a mark")
        scale = math.sqrt(e_x * 10.0 ** (-self.snr_db / 10.0) / e_d)
        # self-check on the 16 kHz mix, at the known alignment (the detector searches all
        # of them, so it scores at least this): would this mark be found without an attack?
        found = self._search_x16(x16 + scale * delta16, sr, aligned=True)
        if isinstance(found, str) or not self._decide(*found)[0]:
            z = found[0] if not isinstance(found, str) else float("nan")
            raise CannotWatermark(
                f"cannot embed: the mark would not be detectable in this audio at strength "
                f"{self.strength:g} (score {z:.1f}, at least {self._z_threshold():.1f} needed): "
                f"too little of it lies in {BAND[0]:g}-{BAND[1]:g} Hz, its spectrum is too "
                f"sparse (pure tones, a DC offset) or too flat and short (steady noise)")
        out = np.clip(x + (scale * delta)[:, None], -1.0, 1.0).astype(np.float32)
        if artifact.content.ndim == 1:
            out = out[:, 0]
        return artifact.evolve(content=out, data=None, media_type=None)

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
        r, w = _residuals(energy, active, row_ok)
        v = _weighted(r, w)
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
            x, sr = _check_audio(artifact, "detect")
        except CannotWatermark as exc:
            return not_performed(SCHEME, VERSION, str(exc))
        x16 = resample(_mix(x), sr, FS)
        spec = _stft(x16)
        # chip phase 0 first; when its payload already passes the CRC the p-value cannot
        # get lower, so phase 1 is skipped (the bound counts both phases either way)
        found = self._search_x16(x16, sr, phases=(0,), spec=spec)
        decision = None if isinstance(found, str) else self._decide(*found)
        if decision is None or decision[2] is None:
            other = self._search_x16(x16, sr, phases=(1,), spec=spec)
            if isinstance(found, str) or (not isinstance(other, str) and other[0] > found[0]):
                found = other
            if isinstance(found, str):
                return not_performed(SCHEME, VERSION, found)
            decision = self._decide(*found)
        z_max = found[0]
        detected, p, decoded = decision
        payload = None
        if detected and decoded is not None and decoded < (1 << self.payload_bits):
            payload = f"{decoded:0{(self.payload_bits + 3) // 4}x}"
        return WatermarkResult(detected=detected, scheme=SCHEME, scheme_version=VERSION,
                               score=z_max, p_value=float(p), fpr=self.fpr, payload=payload)

    def _decide(self, z_max: float, aligned: np.ndarray) -> tuple[bool, float, int | None]:
        """``(detected, p_value, decoded payload or None)`` from the search's outcome."""
        decoded = self._code.decode(self._soft(aligned)).value
        p_pilot = min(1.0, N_TESTS * _q(z_max))
        p_crc = self._p_crc()
        # valid for the union "pilot or CRC": P(p <= a) <= P(p_pilot <= a - p_crc) + p_crc
        p = p_crc if decoded is not None else min(1.0, p_pilot + p_crc)
        return p <= self.fpr, float(p), decoded

    def _p_crc(self) -> float:
        """Chance that unmarked audio yields a CRC-valid payload (one per decode attempt)."""
        return N_DECODES * float(getattr(self._code, "false_accept_probability", 2.0 ** -24))

    def _z_threshold(self) -> float:
        """The pilot score above which ``detect`` reports a mark (without a payload)."""
        target = (self.fpr - self._p_crc()) / N_TESTS
        lo, hi = 0.0, 40.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if _q(mid) > target else (lo, mid)
        return hi

    def _search(self, artifact: Artifact) -> tuple[float, np.ndarray] | str:
        """Best pilot z over every shift and chip phase, and the fold aligned to it; or the
        reason (a string) why the audio cannot be checked."""
        try:
            x, sr = _check_audio(artifact, "detect")
        except CannotWatermark as exc:
            return str(exc)
        return self._search_x16(resample(_mix(x), sr, FS), sr)

    def _search_x16(self, x16: np.ndarray, sr: int, *, phases: tuple[int, ...] = (0, 1),
                    aligned: bool = False,
                    spec: np.ndarray | None = None) -> tuple[float, np.ndarray] | str:
        """:meth:`_search` on the 16 kHz mix of audio whose original rate was ``sr``, over
        the given chip ``phases`` (``aligned``: only shift 0 of phase 0, the embedder's
        own alignment, for its self-check); ``spec`` is the mix's STFT if already known."""
        if spec is None:
            spec = _stft(x16)
        row_ok = _rows_ok(sr)
        lay = self._layout
        best: tuple[float, int, np.ndarray] | None = None
        for phase in (0,) if aligned else phases:
            energy = _chip_energy(spec, phase)
            active = _active_columns(energy, row_ok, DETECT_FLOOR_DBFS)
            if active.sum() * CHIP_FRAMES * HOP / FS < MIN_ACTIVE_SECONDS:
                continue
            F = _fold(_weighted(*_residuals(energy, active, row_ok)))
            # z[k] = sum_j pilot[j + k] F[j] / sqrt(sum_j mask[j + k] F[j]^2), every k by FFT
            num = np.fft.irfft((np.conj(np.fft.rfft(F, axis=0)) * lay["pilot_fft"]).sum(axis=1),
                               PERIOD)
            den = np.fft.irfft((np.conj(np.fft.rfft(F * F, axis=0))
                                * lay["pmask_fft"]).sum(axis=1), PERIOD)
            z = np.where(den > 1e-24, num / np.sqrt(np.maximum(den, 1e-24)), 0.0)
            k = 0 if aligned else int(np.argmax(z))
            if best is None or z[k] > best[0]:
                best = (float(z[k]), k, F)
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
        """Soft values of the coded payload bits at the best shift (for measurements)."""
        found = self._search(artifact)
        return None if isinstance(found, str) else self._soft(found[1])
