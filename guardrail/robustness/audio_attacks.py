"""Audio attacks for the robustness lab, and a quality metric.

Every attack takes an audio :class:`~guardrail.Artifact` (``float32``, 1-D mono or
``N x C``, in ``[-1, 1]``) and returns a new one; the original is untouched. Unless stated
otherwise the result keeps the sample rate, the channel count and the length.

==========================  =================================================================
``mp3(kbps)``               MP3 encode + decode (LAME and mpg123 through libsndfile, constant
                            bit rate). MPEG audio has fixed rates: a clip at a rate MP3 does
                            not support (e.g. 96 kHz) is resampled to the nearest supported
                            one, encoded, decoded and resampled back. The bit rate is rounded
                            to one of the layer's rates (e.g. 8-160 kbps at 16-24 kHz); 128
                            kbps at 8-12 kHz becomes 64, the most MPEG 2.5 allows.
``resample(target_hz)``     Resample to ``target_hz`` and *stay there*: the result has the new
                            sample rate (and length). Detectors must accept it.
``resample_back(target_hz)``  Resample to ``target_hz`` and back to the original rate (the
                            band above ``target_hz / 2`` is lost; rate and length kept).
``noise(snr_db)``           Add white Gaussian noise at ``snr_db`` below the clip's power.
``gain(db)``                Multiply by ``10 ** (db / 20)``, then clip to ``[-1, 1]``.
``lowpass(hz)``             8th-order Butterworth low-pass, applied forward and backward (zero
                            phase, 16th-order magnitude).
``crop(fraction)``          Keep a contiguous ``fraction`` of the clip (the result is shorter).
``speed(factor)``           Play ``factor`` times faster by resampling (pitch changes too, as
                            on a turntable); the result is ``1 / factor`` as long.
``tempo(factor)``           Play ``factor`` times faster keeping the pitch (phase-vocoder time
                            stretch with phase locking); the result is ``1 / factor`` as long.
``pitch(semitones)``        Shift the pitch by ``semitones`` keeping the duration (time
                            stretch by ``2 ** (semitones / 12)``, then resampling back).
``chain((kbps, snr, hz))``  MP3 at ``kbps``, then white noise at ``snr`` dB, then the low-pass
                            at ``hz``: ``chain((64, 20, 4000))`` is the combined chain of the
                            robustness targets.
==========================  =================================================================

Random choices (the noise, the crop's start) are seeded from the content, so an attack on
the same clip always gives the same result and different clips get different draws.
Resampling is :func:`guardrail.signal.resample`, the resampler of the watermarks and
detectors too.

:func:`snr_db` measures quality (signal-to-noise ratio of a test signal against its
reference); the lab's default suite is in :data:`guardrail.robustness.attacks.SUITES`.
"""

from __future__ import annotations

import hashlib
import io
import math
from fractions import Fraction

import numpy as np

from .._types import Artifact, Modality
from ..signal import resample as resample_signal
from .base import attack

__all__ = [
    "MP3_SAMPLE_RATES",
    "crop",
    "gain",
    "lowpass",
    "mp3",
    "noise",
    "resample",
    "resample_back",
    "chain",
    "pitch",
    "snr_db",
    "speed",
    "tempo",
    "time_stretch",
]

#: Sample rates MPEG-1/2/2.5 layer III supports.
MP3_SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# bit-rate range of each MPEG version (kbps), keyed by the lowest rate of the version
_MP3_BITRATES = {32000: (32, 320), 16000: (8, 160), 8000: (8, 64)}


def _audio(artifact: Artifact) -> tuple[np.ndarray, int]:
    """The content as ``samples x channels`` float32, and the sample rate."""
    if artifact.modality != Modality.AUDIO:
        raise ValueError(f"audio attacks need an audio artifact, got {artifact.modality.value}")
    x = np.asarray(artifact.content)
    if x.ndim not in (1, 2) or not artifact.sample_rate:
        raise ValueError("audio content must be 1-D or N x C with a sample rate")
    x = x.astype(np.float32, copy=False)
    return (x[:, None] if x.ndim == 1 else x), int(artifact.sample_rate)


def _result(artifact: Artifact, y: np.ndarray, sample_rate: int | None = None) -> Artifact:
    y = np.clip(y, -1.0, 1.0).astype(np.float32)
    if np.asarray(artifact.content).ndim == 1:
        y = y[:, 0]
    return artifact.evolve(content=y, sample_rate=sample_rate or artifact.sample_rate,
                           data=None, media_type=None)


def _rng(artifact: Artifact, name: str) -> np.random.Generator:
    """A generator seeded by the attack's name and the content."""
    h = hashlib.sha256(name.encode())
    h.update(np.ascontiguousarray(artifact.content).tobytes())
    return np.random.default_rng(int.from_bytes(h.digest()[:8], "big"))


@attack("mp3", Modality.AUDIO)
def mp3(artifact: Artifact, kbps: float) -> Artifact:
    """MP3 round trip at ``kbps`` (constant bit rate), through libsndfile."""
    import soundfile as sf

    x, sr = _audio(artifact)
    rate = sr if sr in MP3_SAMPLE_RATES else min(
        MP3_SAMPLE_RATES, key=lambda r: (abs(r - sr), -r))
    work = resample_signal(x, sr, rate)
    lo, hi = next(v for k, v in sorted(_MP3_BITRATES.items(), reverse=True) if rate >= k)
    kbps = min(max(float(kbps), lo), hi)
    # libsndfile maps compression level c to the bit rate hi - c * (hi - lo)
    level = min(max((hi - kbps) / (hi - lo), 0.0), 0.99)
    chans = [work] if work.shape[1] <= 2 else [work[:, [c]] for c in range(work.shape[1])]
    out = []
    for part in chans:
        buf = io.BytesIO()
        sf.write(buf, part, rate, format="MP3", subtype="MPEG_LAYER_III",
                 compression_level=level, bitrate_mode="CONSTANT")
        buf.seek(0)
        dec, _ = sf.read(buf, dtype="float32", always_2d=True)
        out.append(_fit(dec, part.shape[0]))
    y = resample_signal(np.concatenate(out, axis=1), rate, sr)
    return _result(artifact, _fit(y, x.shape[0]))


def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad along axis 0 to ``n`` samples."""
    if y.shape[0] >= n:
        return y[:n]
    return np.concatenate([y, np.zeros((n - y.shape[0],) + y.shape[1:], y.dtype)])


@attack("resample", Modality.AUDIO)
def resample(artifact: Artifact, target_hz: int) -> Artifact:
    """Resample to ``target_hz``; the result keeps that rate (and is shorter or longer)."""
    x, sr = _audio(artifact)
    return _result(artifact, resample_signal(x, sr, int(target_hz)), sample_rate=int(target_hz))


@attack("resample_back", Modality.AUDIO)
def resample_back(artifact: Artifact, target_hz: int) -> Artifact:
    """Resample to ``target_hz`` and back to the original rate (same rate and length)."""
    x, sr = _audio(artifact)
    y = resample_signal(resample_signal(x, sr, int(target_hz)), int(target_hz), sr)
    return _result(artifact, _fit(y, x.shape[0]))


@attack("noise", Modality.AUDIO)
def noise(artifact: Artifact, snr_db: float) -> Artifact:
    """Add white Gaussian noise ``snr_db`` dB below the clip's mean power (then clip)."""
    x, _ = _audio(artifact)
    power = float(np.mean(x.astype(np.float64) ** 2))
    sigma = math.sqrt(power / 10.0 ** (float(snr_db) / 10.0))
    n = _rng(artifact, "noise").standard_normal(x.shape) * sigma
    return _result(artifact, x + n.astype(np.float32))


@attack("gain", Modality.AUDIO)
def gain(artifact: Artifact, db: float) -> Artifact:
    """Change the level by ``db`` decibels; samples beyond full scale are clipped."""
    x, _ = _audio(artifact)
    return _result(artifact, x * np.float32(10.0 ** (float(db) / 20.0)))


@attack("lowpass", Modality.AUDIO)
def lowpass(artifact: Artifact, hz: float) -> Artifact:
    """Zero-phase Butterworth low-pass at ``hz`` (no change if ``hz`` >= Nyquist)."""
    from scipy.signal import butter, sosfiltfilt

    x, sr = _audio(artifact)
    if float(hz) >= sr / 2:
        return _result(artifact, x)
    sos = butter(8, float(hz), btype="low", fs=sr, output="sos")
    return _result(artifact, sosfiltfilt(sos, x, axis=0))


@attack("crop", Modality.AUDIO)
def crop(artifact: Artifact, fraction: float) -> Artifact:
    """Keep a contiguous ``fraction`` (0..1] of the clip, at a content-seeded start."""
    x, _ = _audio(artifact)
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"crop fraction must be in (0, 1], got {fraction}")
    keep = max(1, int(round(x.shape[0] * float(fraction))))
    start = int(_rng(artifact, "crop").integers(0, x.shape[0] - keep + 1))
    return _result(artifact, x[start:start + keep])


@attack("speed", Modality.AUDIO)
def speed(artifact: Artifact, factor: float) -> Artifact:
    """Play ``factor`` times faster (resampling: pitch follows), same sample rate."""
    x, sr = _audio(artifact)
    if not 0.25 <= float(factor) <= 4.0:
        raise ValueError(f"speed factor must be in [0.25, 4], got {factor}")
    ratio = Fraction(1.0 / float(factor)).limit_denominator(1000)
    # resampling from ratio.denominator to ratio.numerator Hz makes the clip 1 / factor as long
    return _result(artifact, resample_signal(x, ratio.denominator, ratio.numerator))


#: Phase vocoder frame (samples at 22.05 kHz; scaled with the rate) and overlap.
_PV_FRAME_S = 2048 / 22050
_PV_OVERLAP = 4


def time_stretch(x: np.ndarray, sr: int, factor: float) -> np.ndarray:
    """Phase-vocoder time stretch of ``samples x channels`` audio: ``factor`` times faster
    (``factor`` > 1 shortens), the pitch kept.

    Frames of about 93 ms (a power of two at the rate), hop a quarter of that, Hann
    analysis and synthesis windows; the phase of each bin is advanced by its measured
    instantaneous frequency and locked to the nearest spectral peak (Laroche and Dolson's
    identity phase locking), which keeps speech free of the "phasiness" of a plain vocoder.
    """
    factor = float(factor)
    if not 0.25 <= factor <= 4.0:
        raise ValueError(f"time-stretch factor must be in [0.25, 4], got {factor}")
    n_fft = 1 << max(8, int(round(math.log2(_PV_FRAME_S * sr))))
    hop = n_fft // _PV_OVERLAP
    win = np.hanning(n_fft + 1)[:-1]
    n_out = int(round(x.shape[0] / factor))
    pad = np.pad(x.astype(np.float64), [(n_fft, n_fft + hop)] + [(0, 0)] * (x.ndim - 1))
    n_frames = (pad.shape[0] - n_fft) // hop + 1
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    omega = 2.0 * np.pi * hop * np.arange(n_fft // 2 + 1) / n_fft
    steps = np.arange(0.0, n_frames - 1, factor)
    out = np.zeros((len(steps) * hop + n_fft,) + x.shape[1:])
    for c in range(1 if x.ndim == 1 else x.shape[1]):
        col = pad if x.ndim == 1 else pad[:, c]
        spec = np.fft.rfft(col[idx] * win, axis=1)
        mag, ph = np.abs(spec), np.angle(spec)
        acc = ph[0].copy()
        y = np.zeros(out.shape[0])
        for k, t in enumerate(steps):
            i = int(t)
            frac = t - i
            m = (1.0 - frac) * mag[i] + frac * mag[i + 1]
            dphi = ph[i + 1] - ph[i] - omega
            dphi -= 2.0 * np.pi * np.round(dphi / (2.0 * np.pi))
            # phase locking: every bin takes the phase of its region's peak, plus its own
            # offset from that peak in the analysis frame
            peaks = np.flatnonzero((m[1:-1] > m[:-2]) & (m[1:-1] >= m[2:])) + 1
            if peaks.size:
                bounds = np.concatenate([[0], (peaks[1:] + peaks[:-1]) // 2 + 1, [m.size]])
                owner = np.repeat(peaks, np.diff(bounds))
                phase = acc[owner] + ph[i] - ph[i][owner]
            else:
                phase = acc
            frame = np.fft.irfft(m * np.exp(1j * phase), n_fft) * win
            y[k * hop:k * hop + n_fft] += frame
            acc = acc + omega + dphi
        # Hann^2 at 4x overlap sums to 1.5
        y /= 1.5
        if x.ndim == 1:
            out = y
        else:
            out[:, c] = y
    out = out[n_fft:n_fft + n_out]
    if out.shape[0] < n_out:
        out = np.pad(out, [(0, n_out - out.shape[0])] + [(0, 0)] * (x.ndim - 1))
    return out.astype(np.float32)


@attack("tempo", Modality.AUDIO)
def tempo(artifact: Artifact, factor: float) -> Artifact:
    """Play ``factor`` times faster keeping the pitch (time stretch), same sample rate."""
    x, sr = _audio(artifact)
    return _result(artifact, time_stretch(x, sr, float(factor)))


@attack("pitch", Modality.AUDIO)
def pitch(artifact: Artifact, semitones: float) -> Artifact:
    """Shift the pitch by ``semitones`` (-12..12) keeping the duration and sample rate."""
    x, sr = _audio(artifact)
    if not -12.0 <= float(semitones) <= 12.0:
        raise ValueError(f"pitch shift must be in [-12, 12] semitones, got {semitones}")
    p = 2.0 ** (float(semitones) / 12.0)
    # stretch to p times the duration, then play p times faster (resampling)
    y = time_stretch(x, sr, 1.0 / p)
    ratio = Fraction(1.0 / p).limit_denominator(200)
    y = resample_signal(y, ratio.denominator, ratio.numerator)
    return _result(artifact, _fit(y, x.shape[0]))


@attack("chain", Modality.AUDIO)
def chain(artifact: Artifact, params: tuple[float, float, float]) -> Artifact:
    """MP3 at ``kbps``, white noise at ``snr_db``, low-pass at ``hz``: ``(kbps, snr_db, hz)``."""
    try:
        kbps, snr, hz = (float(v) for v in params)
    except (TypeError, ValueError):
        raise ValueError(f"chain needs (kbps, snr_db, hz), got {params!r}") from None
    return lowpass(hz)(noise(snr)(mp3(kbps)(artifact)))


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-noise ratio (dB) of ``test`` against ``reference`` (same shape).

    ``10 log10(sum(reference**2) / sum((test - reference)**2))``; ``inf`` when identical.

    Raises
    ------
    ValueError
        When the shapes differ (compare before cropping, resampling or speed changes).
    """
    ref = np.asarray(reference, dtype=np.float64)
    tst = np.asarray(test, dtype=np.float64)
    if ref.shape != tst.shape:
        raise ValueError(f"snr_db needs equal shapes, got {ref.shape} and {tst.shape}")
    err = float(np.sum((tst - ref) ** 2))
    sig = float(np.sum(ref ** 2))
    if err == 0.0:
        return math.inf
    if sig == 0.0:
        return -math.inf
    return 10.0 * math.log10(sig / err)
