"""Tests of the audio attacks: shapes, rates and lengths as documented, and that each one
does what its name says."""

from __future__ import annotations

import math

import numpy as np
import pytest

from guardrail import Artifact, GenerationMetadata, Modality
from guardrail.robustness import audio_attacks as aa
from guardrail.robustness.attacks import SUITES, build_suite
from guardrail.robustness.base import Attack

META = GenerationMetadata(model_id="test")
SR = 22050


def signal(seconds: float = 2.0, sr: int = SR, channels: int = 0, seed: int = 0) -> np.ndarray:
    """A few harmonics plus a little noise at about -12 dBFS; ``channels=0`` gives 1-D."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = sum(0.15 / h * np.sin(2 * np.pi * 220 * h * t + h) for h in range(1, 8))
    x = x + 0.01 * rng.standard_normal(t.shape)
    x = x.astype(np.float32)
    if channels:
        x = np.stack([x * (0.5 + 0.5 * c / channels) for c in range(channels)], axis=1)
    return x


def art(x: np.ndarray, sr: int = SR) -> Artifact:
    return Artifact(modality=Modality.AUDIO, content=x, metadata=META, sample_rate=sr)


def band_energy(x: np.ndarray, sr: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.shape[0], 1 / sr)
    return float(spec[(f >= lo) & (f < hi)].sum())


SAME_SHAPE = [aa.mp3(128), aa.mp3(64), aa.resample_back(8000), aa.noise(20), aa.gain(6),
              aa.gain(-6), aa.lowpass(4000)]


@pytest.mark.parametrize("attack", SAME_SHAPE, ids=lambda a: a.label)
@pytest.mark.parametrize("channels", [0, 2])
def test_same_shape_and_rate(attack, channels):
    x = signal(channels=channels)
    a = art(x)
    y = attack(a)
    assert y.modality == Modality.AUDIO and y.sample_rate == SR
    assert y.content.shape == x.shape and y.content.dtype == np.float32
    assert np.abs(y.content).max() <= 1.0
    assert not np.array_equal(y.content, x)
    assert np.array_equal(a.content, x)  # the input is untouched


@pytest.mark.parametrize("channels", [0, 2])
def test_resample_changes_the_rate_and_length(channels):
    x = signal(channels=channels)
    for hz in (16000, 8000):
        y = aa.resample(hz)(art(x))
        assert y.sample_rate == hz
        assert y.content.shape[0] == pytest.approx(x.shape[0] * hz / SR, abs=2)
        assert y.content.shape[1:] == x.shape[1:]


def test_crop_keeps_a_seeded_contiguous_part():
    x = signal(4.0)
    y = aa.crop(0.5)(art(x))
    n = y.content.shape[0]
    assert n == x.shape[0] // 2 and y.sample_rate == SR
    start = next(i for i in range(x.shape[0] - n + 1) if np.array_equal(x[i:i + n], y.content))
    assert np.array_equal(aa.crop(0.5)(art(x)).content, y.content)  # same input, same crop
    starts = set()
    for seed in range(6):
        xs = signal(4.0, seed=seed)
        ys = aa.crop(0.5)(art(xs)).content
        starts.add(next(i for i in range(0, xs.shape[0] - n + 1)
                        if np.array_equal(xs[i:i + n], ys)))
    assert len(starts) > 1, "the crop start should depend on the content"
    assert 0 <= start <= x.shape[0] - n
    with pytest.raises(ValueError):
        aa.crop(0.0)(art(x))


@pytest.mark.parametrize("factor", [1.05, 0.95])
def test_speed_changes_length_and_pitch(factor):
    x = signal(2.0, channels=2)
    y = aa.speed(factor)(art(x))
    assert y.sample_rate == SR and y.content.shape[1] == 2
    assert y.content.shape[0] == pytest.approx(x.shape[0] / factor, abs=3)
    f = np.fft.rfftfreq(y.content.shape[0], 1 / SR)
    peak = f[np.argmax(np.abs(np.fft.rfft(y.content[:, 0])))]
    assert peak == pytest.approx(220 * factor, rel=0.01)


def peak_hz(x: np.ndarray, sr: int = SR) -> float:
    f = np.fft.rfftfreq(x.shape[0], 1 / sr)
    return float(f[np.argmax(np.abs(np.fft.rfft(x * np.hanning(x.shape[0]))))])


@pytest.mark.parametrize("factor", [1.05, 0.95])
def test_tempo_changes_length_and_keeps_pitch(factor):
    x = signal(3.0, channels=2)
    y = aa.tempo(factor)(art(x))
    assert y.sample_rate == SR and y.content.shape[1] == 2
    assert y.content.shape[0] == round(x.shape[0] / factor)
    assert peak_hz(y.content[:, 0]) == pytest.approx(220, rel=0.005)
    # the level is kept (no gain from overlapping windows) and the signal is not silence
    mid = slice(SR // 2, -SR // 2)
    assert np.std(y.content[mid, 0]) == pytest.approx(np.std(x[mid, 0]), rel=0.1)
    with pytest.raises(ValueError, match="time-stretch factor"):
        aa.tempo(5)(art(x))


def test_tempo_keeps_the_timing_of_an_event_scaled():
    x = np.zeros(SR * 3, dtype=np.float32)
    t = np.arange(SR // 10) / SR
    x[SR * 2:SR * 2 + SR // 10] = 0.5 * np.sin(2 * np.pi * 440 * t)  # a beep at 2.0 s
    y = aa.tempo(1.05)(art(x)).content
    onset = np.argmax(np.abs(y) > 0.1) / SR
    assert onset == pytest.approx(2.0 / 1.05, abs=0.05)


@pytest.mark.parametrize("semitones", [1, -1])
def test_pitch_shifts_the_pitch_and_keeps_the_length(semitones):
    x = signal(3.0)
    y = aa.pitch(semitones)(art(x)).content
    assert y.shape == x.shape
    assert peak_hz(y) == pytest.approx(220 * 2 ** (semitones / 12), rel=0.005)
    with pytest.raises(ValueError, match="semitones"):
        aa.pitch(13)(art(x))


def test_chain_is_mp3_then_noise_then_lowpass():
    rng = np.random.default_rng(3)
    x = (0.1 * rng.standard_normal(SR * 2)).astype(np.float32)
    y = aa.chain((64, 20, 4000))(art(x)).content
    assert y.shape == x.shape
    assert band_energy(y, SR, 5000, 11025) < 1e-3 * band_energy(x, SR, 5000, 11025)
    assert 3.0 < aa.snr_db(aa.lowpass(4000)(art(x)).content, y) < 20.0
    assert aa.chain((64, 20, 4000)).label == "chain((64, 20, 4000))"
    with pytest.raises(ValueError, match="kbps, snr_db, hz"):
        aa.chain(64)(art(x))


def test_noise_is_at_the_requested_snr_and_deterministic():
    x = signal(3.0)
    y = aa.noise(20)(art(x)).content
    assert aa.snr_db(x, y) == pytest.approx(20.0, abs=0.3)
    assert np.array_equal(aa.noise(20)(art(x)).content, y)


def test_gain_scales_and_clips():
    x = signal()
    assert np.allclose(aa.gain(-6)(art(x)).content, x * 10 ** (-6 / 20), atol=1e-7)
    loud = aa.gain(20)(art(x)).content
    assert np.abs(loud).max() == pytest.approx(1.0)
    assert np.mean(np.abs(loud) >= 1.0) > 0.05


def test_lowpass_removes_the_band_above_the_cutoff():
    rng = np.random.default_rng(1)
    x = (0.1 * rng.standard_normal(SR * 2)).astype(np.float32)
    y = aa.lowpass(4000)(art(x)).content
    assert band_energy(y, SR, 5000, 11025) < 1e-4 * band_energy(x, SR, 5000, 11025)
    assert band_energy(y, SR, 100, 3000) > 0.9 * band_energy(x, SR, 100, 3000)
    same = aa.lowpass(30000)(art(x)).content  # above Nyquist: unchanged
    assert np.array_equal(same, x)


def test_resample_back_loses_the_top_band():
    rng = np.random.default_rng(2)
    x = (0.1 * rng.standard_normal(SR * 2)).astype(np.float32)
    y = aa.resample_back(8000)(art(x)).content
    assert band_energy(y, SR, 4500, 11025) < 1e-3 * band_energy(x, SR, 4500, 11025)


@pytest.mark.parametrize("sr", [8000, 16000, 44100, 96000])
def test_mp3_at_any_rate_is_lossy_but_close(sr):
    x = signal(2.0, sr=sr)
    for kbps in (64, 128):
        y = aa.mp3(kbps)(art(x, sr)).content
        assert y.shape == x.shape
        assert 8.0 < aa.snr_db(x, y) < 60.0  # coded, aligned (no delay), not silence


def test_mp3_bit_rate_is_what_was_asked():
    import io

    import soundfile as sf

    x = signal(10.0)
    sizes = {}
    for kbps in (64, 128):
        level = (160 - kbps) / (160 - 8)  # the mapping the attack uses at 22.05 kHz
        buf = io.BytesIO()
        sf.write(buf, x, SR, format="MP3", subtype="MPEG_LAYER_III", compression_level=level,
                 bitrate_mode="CONSTANT")
        sizes[kbps] = len(buf.getvalue()) * 8 / 10.0 / 1000.0
    assert sizes[64] == pytest.approx(64, rel=0.05)
    assert sizes[128] == pytest.approx(128, rel=0.05)


def test_snr_db():
    x = signal()
    assert aa.snr_db(x, x) == math.inf
    assert aa.snr_db(x, 1.1 * x) == pytest.approx(20.0, abs=1e-4)
    assert aa.snr_db(np.zeros(4), np.ones(4)) == -math.inf
    with pytest.raises(ValueError):
        aa.snr_db(x, x[:-1])


def test_suite_and_labels():
    suite = build_suite("audio")
    labels = [a.label for a in suite]
    assert labels == list(SUITES["audio"])
    for want in ("mp3(128)", "mp3(64)", "resample(16000)", "resample(8000)", "noise(20)",
                 "gain(6)", "gain(-6)", "lowpass(4000)", "crop(0.5)", "speed(1.05)",
                 "speed(0.95)", "tempo(1.05)", "tempo(0.95)", "pitch(1)", "pitch(-1)",
                 "noise(10)", "chain((64, 20, 4000))"):
        assert want in labels
    assert all(isinstance(a, Attack) and a.modality == Modality.AUDIO
               for a in suite)
    assert aa.mp3.attack_name == "mp3"


def test_attacks_refuse_other_modalities():
    text = Artifact(modality=Modality.TEXT, content="hi", metadata=META)
    with pytest.raises(ValueError):
        aa.gain(6)(text)
