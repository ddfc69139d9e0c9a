"""Tests of guardrail's own audio watermark (``guardrail-audio``).

Speech comes from the embedded Piper voice (offline, ~3 s to load and speak); the
bad-input tests use a speech-like synthetic signal (brown noise with a syllable envelope)
so that they need no model.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from guardrail import Artifact, GenerationMetadata, Modality
from guardrail.robustness import audio_attacks as aa
from guardrail.signal import resample
from guardrail.testing import speechlike
from guardrail.watermark.audio import (
    MIN_SECONDS,
    N_SCALE_TESTS,
    N_TESTS,
    SCALES,
    UNSCALED_WEIGHT,
    GuardrailAudioWatermark,
)
from guardrail.watermark.base import CannotWatermark, Watermarker, upper_tail

KEY = b"test-key-0123456789abcdef-audio!"
META = GenerationMetadata(model_id="test")

PROMPTS = [
    "The museum will be closed on Monday for maintenance and cleaning. Please come back "
    "on Tuesday, when the new exhibition about ancient ships opens.",
    "Scientists have discovered a new species of frog in the rainforest of Peru, and it "
    "sings at night.",
    "Turn left at the next intersection and continue for two hundred meters, then take "
    "the second exit at the roundabout.",
    "Breaking news: the city council has approved the new budget for public transport "
    "and bicycle lanes.",
]


def art(x: np.ndarray, sr: int) -> Artifact:
    return Artifact(modality=Modality.AUDIO, content=np.asarray(x, dtype=np.float32),
                    metadata=META, sample_rate=sr)


@pytest.fixture(scope="module")
def speech() -> list[tuple[np.ndarray, int]]:
    """Four 5 s windows of Piper speech at 22.05 kHz."""
    audio = pytest.importorskip("generators.audio")
    pytest.importorskip("piper")
    gen = audio.load(progress=False)
    out = []
    for i, text in enumerate(PROMPTS):
        g = gen.generate([text], seed=11 + i)[0]
        x = np.asarray(g.content, dtype=np.float32)
        n = 5 * g.sample_rate
        assert x.shape[0] >= n, "prompt too short for a 5 s window"
        out.append((x[:n], int(g.sample_rate)))
    return out


@pytest.fixture(scope="module")
def wm() -> GuardrailAudioWatermark:
    return GuardrailAudioWatermark(KEY)


@pytest.fixture(scope="module")
def marked(speech, wm) -> list[tuple[Artifact, str]]:
    out = []
    for i, (x, sr) in enumerate(speech):
        payload = 0x9E3779B9 ^ (i * 0x01010101)
        out.append((wm.embed(art(x, sr), payload), f"{payload:08x}"))
    return out


# ------------------------------------------------------------------ protocol and speech
def test_is_a_watermarker(wm):
    assert isinstance(wm, Watermarker)
    assert (wm.scheme, wm.version, wm.modality, wm.payload_bits) == (
        "guardrail-audio", "1", Modality.AUDIO, 32)


@pytest.mark.slow
def test_round_trip_on_speech(speech, marked, wm):
    for (x, sr), (m, want) in zip(speech, marked, strict=True):
        assert m.sample_rate == sr and m.content.shape == x.shape
        assert m.content.dtype == np.float32 and np.abs(m.content).max() <= 1.0
        assert aa.snr_db(x, m.content) >= 30.0
        res = wm.detect(m)
        assert res.detected is True, res
        assert res.payload == want
        assert res.p_value <= wm.fpr and res.fpr == wm.fpr
        assert (res.scheme, res.scheme_version) == ("guardrail-audio", "1")
        assert res.score > 8.0


@pytest.mark.slow
@pytest.mark.parametrize("attack", [aa.mp3(64), aa.resample(16000), aa.noise(20), aa.gain(6),
                                    aa.gain(-6), aa.crop(0.5)], ids=lambda a: a.label)
def test_survives_the_target_attacks(marked, wm, attack):
    for m, want in marked[:3]:
        res = wm.detect(attack(m))
        assert res.detected is True, (attack.label, res)
        if attack.name != "noise":  # at 20 dB noise the mark is found, the id often not
            assert res.payload == want, (attack.label, res)
        assert res.payload in (None, want)


@pytest.mark.slow
@pytest.mark.parametrize("attack", [aa.mp3(128), aa.resample(8000), aa.resample_back(8000),
                                    aa.lowpass(4000)], ids=lambda a: a.label)
def test_survives_the_other_suite_attacks(marked, wm, attack):
    found = [wm.detect(attack(m)) for m, _ in marked]
    assert sum(r.detected is True for r in found) >= len(found) - 1
    assert all(r.payload in (None, want) for r, (_, want) in zip(found, marked, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("attack", [aa.speed(1.05), aa.speed(0.95), aa.tempo(1.05),
                                    aa.tempo(0.95), aa.pitch(1), aa.pitch(-1)],
                         ids=lambda a: a.label)
def test_speed_tempo_and_pitch_changes_are_found_by_the_scale_search(marked, wm, attack):
    for m, want in marked[:2]:
        res = wm.detect(attack(m))
        assert res.detected is True, (attack.label, res)
        assert res.payload == want, (attack.label, res)
        assert res.p_value <= wm.fpr


# ------------------------------------------------------------------ the scale search
@pytest.mark.parametrize("attack", [aa.speed(1.05), aa.tempo(0.95), aa.pitch(-1)],
                         ids=lambda a: a.label)
def test_scale_search_recovers_the_id_on_speechlike_audio(attack):
    wm = GuardrailAudioWatermark(KEY)
    m = wm.embed(art(speechlike(6.0, seed=21), 16000), 0x5EED)
    plain = wm._search(attack(m))  # the unscaled grid alone loses the mark
    assert plain[0] < wm._z_threshold()
    res = wm.detect(attack(m))
    assert res.detected is True and res.payload == "00005eed", res


def test_scale_hypotheses_cover_speed_tempo_and_pitch():
    scales = set(SCALES)
    assert (1.0, 1.0) not in scales and len(scales) == len(SCALES)
    times = sorted(t for t, f in SCALES if f == 1.0)
    freqs = sorted(f for t, f in SCALES if t == 1.0)
    # tempo +-6.5 % in 0.5 % steps, pitch (and the speed family's frequency) in 1 % steps
    assert min(times) == pytest.approx(1 / 1.065) and max(times) == pytest.approx(1 / 0.935)
    assert min(freqs) == pytest.approx(0.94) and max(freqs) == pytest.approx(1.06)
    assert all(abs(f - round(f, 2)) < 1e-9 for _t, f in SCALES)
    assert any(t == pytest.approx(1 / 1.05) and f == pytest.approx(1.05) for t, f in SCALES)
    assert N_SCALE_TESTS == len(SCALES) * N_TESTS


def test_a_hypothesis_fold_is_the_back_mapped_read_folded():
    """Each hypothesis's fold (a matrix product, rows read once per frequency scale) is
    the definition written out: the grid read at each chip row's scaled bin with linear
    splitting, each frame's mean over the rows removed, then every half-column of the
    original read at its scaled frame with linear splitting and summed per period
    position."""
    from guardrail.watermark import _audio_scale as scale
    from guardrail.watermark._chips import CHIP_BINS, FS, N_FFT, N_ROWS, ROW0, stft

    grid = scale.fine_grid(stft(speechlike(4.0, seed=9)), 16000, floor_dbfs=-70.0,
                           max_scale=0.065, weights=lambda logs: ((np.cos(logs), None),))
    period, n_half = 8, 16
    for ts, fs in [(1.0, 1.0), (1 / 1.05, 1.05), (1 / 0.95, 1.0), (1.0, 0.94)]:
        for view, g in ((None, grid.v), (0, grid.u[0])):
            rows = np.zeros((g.shape[0], N_ROWS))
            for r in range(N_ROWS):
                pos = (ROW0 + CHIP_BINS * r) * fs
                lo = int(np.floor(pos))
                j = lo - grid.b0
                if (pos + CHIP_BINS * fs) * FS / N_FFT <= 0.45 * 16000 and 0 <= j < g.shape[1] - 1:
                    rows[:, r] = g[:, j] * (1 - (pos - lo)) + g[:, j + 1] * (pos - lo)
            rows[grid.active] -= rows[grid.active].mean(axis=1, keepdims=True)
            want = np.zeros((n_half, N_ROWS))
            for q in range(int((g.shape[0] - 1) / ts)):
                k, b = int(q * ts), q * ts - int(q * ts)
                nxt = rows[k + 1] if k + 1 < g.shape[0] else 0.0
                want[q % n_half] += rows[k] * (1 - b) + nxt * b
            got = grid.folds([(ts, fs)], period, view)[0]
            np.testing.assert_allclose(got[0], want[0::2], atol=1e-4 * np.abs(want).max())
            np.testing.assert_allclose(got[1], want[1::2], atol=1e-4 * np.abs(want).max())
    # all hypotheses in one call (one sparse product) read each as it is read alone
    scales = [(1 / 1.05, 1.05), (1.0, 1.0), (1.0, 0.94), (1 / 0.95, 1.0), (1 / 1.03, 0.97)]
    together = grid.folds(scales, period, 0)
    for i, h in enumerate(scales):
        np.testing.assert_allclose(together[i], grid.folds([h], period, 0)[0], rtol=1e-6,
                                   atol=1e-6 * np.abs(together).max())


def test_a_scaled_score_is_penalised_by_every_hypothesis():
    wm = GuardrailAudioWatermark(KEY)
    fold = np.zeros((32, 52))
    z = 6.0
    _, p_plain, _ = wm._decide(z, fold)
    _, p_scaled, _ = wm._decision(0.0, None, z_scaled=z)
    q = upper_tail(z)
    assert p_plain == pytest.approx(N_TESTS * q / UNSCALED_WEIGHT + wm._p_crc())
    assert p_scaled == pytest.approx(N_SCALE_TESTS * q / (1 - UNSCALED_WEIGHT) + wm._p_crc())
    assert wm._z_threshold() == pytest.approx(
        brentq(lambda t: N_TESTS * upper_tail(t) / UNSCALED_WEIGHT + wm._p_crc() - wm.fpr,
               1, 20), abs=1e-6)


def test_noise_floor_leaves_a_low_pass_stopband_out():
    from guardrail.watermark._chips import flat_floor

    passband = np.full(28, 1.0)
    stopband = np.full(24, 1e-6)  # 60 dB down: what a 4 kHz low-pass leaves above it
    assert flat_floor(np.concatenate([passband, stopband])) == pytest.approx(1.0)
    # without a stopband the quantile is as before: a loud row does not raise it
    rows = np.linspace(1.0, 2.0, 52)
    rows[10] = 1e3
    assert flat_floor(rows) == pytest.approx(np.percentile(rows, 20))


def test_noise_then_a_low_pass_keeps_the_mark():
    wm = GuardrailAudioWatermark(KEY)
    m = wm.embed(art(resample(speechlike(5.0, seed=23), 16000, 22050), 22050), 0xC4A1)
    res = wm.detect(aa.chain((64, 20, 4000))(m))
    assert res.detected is True and res.payload == "0000c4a1"


def test_unmarked_audio_under_a_speed_change_is_not_detected():
    x = art(speechlike(5.0, seed=22), 16000)
    versions = (x, aa.speed(1.05)(x), aa.pitch(1)(x))
    for k in range(20):
        wm = GuardrailAudioWatermark(f"null key {k}".encode())
        for a in versions:
            res = wm.detect(a)
            assert res.detected is False and res.payload is None
            assert res.p_value > 1e-3


@pytest.mark.slow
def test_wrong_key_finds_nothing(marked):
    other = GuardrailAudioWatermark(b"a different key, also 32 bytes!!")
    for m, _ in marked:
        res = other.detect(m)
        assert res.detected is False and res.payload is None
        assert res.p_value > 1e-3


@pytest.mark.slow
def test_unmarked_speech_is_not_detected(speech, wm):
    for x, sr in speech:
        res = wm.detect(art(x, sr))
        assert res.detected is False and res.payload is None
        assert res.p_value > 1e-3, res
        assert 0.0 <= res.p_value <= 1.0


@pytest.mark.slow
def test_stereo_marks_the_mix_consistently(speech, wm):
    x, sr = speech[0]
    stereo = np.stack([x, 0.5 * x[::-1]], axis=1)
    m = wm.embed(art(stereo, sr), 77)
    assert m.content.shape == stereo.shape
    delta = m.content - stereo
    assert np.allclose(delta[:, 0], delta[:, 1], atol=1e-6)  # the same change on both
    assert aa.snr_db(stereo, m.content) >= 30.0
    assert wm.detect(m).payload == f"{77:08x}"
    assert wm.detect(art(m.content.mean(axis=1), sr)).payload == f"{77:08x}"  # the mix
    assert wm.detect(art(stereo, sr)).detected is False


# ------------------------------------------------------------------ rates, sizes, strength
@pytest.mark.parametrize("sr", [8000, 11025, 16000, 24000, 44100, 48000, 96000])
def test_sample_rates_8_to_96_khz(sr):
    wm = GuardrailAudioWatermark(KEY)
    x = resample(speechlike(4.0), 16000, sr)
    m = wm.embed(art(x, sr), 0xABCDEF01)
    assert m.sample_rate == sr and m.content.shape == x.shape
    assert aa.snr_db(x, m.content) >= 30.0
    res = wm.detect(m)
    assert res.detected is True and res.payload == "abcdef01"


def test_a_copy_resampled_to_16k_and_to_8k_is_found():
    wm = GuardrailAudioWatermark(KEY)
    m = wm.embed(art(resample(speechlike(5.0, seed=3), 16000, 44100), 44100), 5)
    assert wm.detect(aa.resample(16000)(m)).payload == "00000005"
    assert wm.detect(aa.resample(8000)(m)).detected is True
    assert wm.detect(aa.resample_back(16000)(m)).payload == "00000005"


def test_one_second_clip_works_and_shorter_is_refused():
    wm = GuardrailAudioWatermark(KEY)
    x = speechlike(1.0, seed=4)
    assert wm.detect(wm.embed(art(x, 16000), 3)).detected is True
    short = x[: int(0.9 * 16000)]
    with pytest.raises(CannotWatermark, match=r"^cannot embed: .*at least 1 s"):
        wm.embed(art(short, 16000), 3)
    res = wm.detect(art(short, 16000))
    assert res.detected is None and "at least" in res.reason
    assert MIN_SECONDS == 1.0


def speech_with_pauses(seconds: float, seed: int, sr: int = 16000) -> np.ndarray:
    """Like a short TTS phrase: brown noise whose 0.1 s syllables are a third silent."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    brown = np.cumsum(rng.standard_normal(n))
    brown -= np.convolve(brown, np.ones(400) / 400, "same")
    m = n // 1600 + 1
    env = np.repeat(rng.uniform(0.1, 0.9, m) * (rng.uniform(size=m) > 0.35), 1600)[:n]
    return (brown / np.abs(brown).max() * env).astype(np.float32)


def test_a_short_clip_never_carries_a_mark_without_its_id():
    # a 1.1 s phrase with pauses: each coded bit has few chips, so for some ids the host
    # outweighs the bits; the mark was still detected and returned, and the self-check read
    # "decodes to id None" (about 1 id in 9 on this clip). Now each id either decodes from
    # the WAV file or embed refuses it as payload-dependent (another id may fit).
    from guardrail.media import decode, encode

    clip = art(speech_with_pauses(1.1, seed=2), 16000)
    outcomes = {"decoded": 0, "refused": 0}
    for k in range(30, 40):
        wm = GuardrailAudioWatermark(bytes([k]) * 32)
        for p in range(1, 6):
            payload = (p * 0x9E3779B1 + k) & 0xFFFFFFFF
            try:
                marked = wm.embed(clip, payload)
            except CannotWatermark as exc:
                assert exc.payload_dependent and "cannot carry watermark id" in str(exc)
                outcomes["refused"] += 1
                continue
            res = wm.detect(decode(encode(marked, "audio/wav"), "audio/wav"))
            assert res.detected and res.payload == f"{payload:08x}", (k, payload, res)
            outcomes["decoded"] += 1
    assert outcomes["decoded"] >= 40  # most ids fit: refusing is the exception


def test_payload_bits_and_strength():
    x = speechlike(3.0, seed=5)
    small = GuardrailAudioWatermark(KEY, payload_bits=12)
    assert small.detect(small.embed(art(x, 16000), 0xABC)).payload == "abc"
    with pytest.raises(CannotWatermark, match="payload must be in"):
        small.embed(art(x, 16000), 1 << 12)
    strong = GuardrailAudioWatermark(KEY, strength=2.0)
    m = strong.embed(art(x, 16000), 1)
    assert aa.snr_db(x, m.content) == pytest.approx(31.0 - 20 * math.log10(2.0), abs=0.2)
    # same key, same payload and input -> the same output
    again = GuardrailAudioWatermark(KEY, strength=2.0).embed(art(x, 16000), 1)
    assert np.array_equal(again.content, m.content)


# ------------------------------------------------------------------ bad input
def test_silence_cannot_carry_a_mark():
    wm = GuardrailAudioWatermark(KEY)
    for x in (np.zeros(3 * 16000, np.float32),
              (1e-5 * np.random.default_rng(0).standard_normal(3 * 16000)).astype(np.float32),
              np.full(3 * 16000, 0.5, np.float32)):  # DC only: nothing in the band
        with pytest.raises(CannotWatermark, match=r"^cannot embed: "):
            wm.embed(art(x, 16000), 1)
        res = wm.detect(art(x, 16000))
        assert res.detected is not True


def test_leading_and_trailing_silence_is_left_untouched():
    wm = GuardrailAudioWatermark(KEY)
    x = np.concatenate([np.zeros(16000, np.float32), speechlike(3.0, seed=6),
                        np.zeros(16000, np.float32)])
    m = wm.embed(art(x, 16000), 9)
    assert np.abs(m.content[:12000]).max() == 0.0
    assert np.abs(m.content[-12000:]).max() == 0.0
    assert wm.detect(m).payload == "00000009"


def test_clipped_input():
    wm = GuardrailAudioWatermark(KEY)
    x = np.clip(speechlike(4.0, seed=7) * 8.0, -1.0, 1.0)
    assert np.mean(np.abs(x) >= 1.0) > 0.2
    m = wm.embed(art(x, 16000), 0x1234)
    assert np.abs(m.content).max() <= 1.0
    assert aa.snr_db(x, m.content) >= 30.0
    assert wm.detect(m).payload == "00001234"


def test_pure_tone_is_refused_rather_than_marked_invisibly():
    wm = GuardrailAudioWatermark(KEY)
    tone = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(3 * 16000) / 16000)).astype(np.float32)
    with pytest.raises(CannotWatermark, match="would not be detectable"):
        wm.embed(art(tone, 16000), 1)
    assert wm.detect(art(tone, 16000)).detected is False


@pytest.mark.parametrize("content, sr, match", [
    (np.zeros(0, np.float32), 16000, "at least 1 s"),
    (np.zeros((16000 * 2, 1, 1), np.float32), 16000, "1-D"),
    (np.full(16000 * 2, np.nan, np.float32), 16000, "NaN"),
    (np.zeros(16000 * 2, np.float32), 4000, "outside the supported"),
    (np.zeros(200000 * 2, np.float32), 192000, "outside the supported"),
    (np.zeros(16000 * 2, np.float32), None, "sample rate"),
    (np.zeros(16000 * 2, np.complex64), 16000, "float"),
])
def test_bad_input_is_refused_never_crashes(content, sr, match):
    wm = GuardrailAudioWatermark(KEY)
    a = Artifact(modality=Modality.AUDIO, content=content, metadata=META, sample_rate=sr)
    with pytest.raises(CannotWatermark, match=match):
        wm.embed(a, 1)
    res = wm.detect(a)
    assert res.detected is None and match in res.reason
    assert res.reason.startswith("cannot detect: ")


def test_not_audio_and_bad_payloads():
    wm = GuardrailAudioWatermark(KEY)
    text = Artifact(modality=Modality.TEXT, content="hello", metadata=META)
    with pytest.raises(CannotWatermark):
        wm.embed(text, 1)
    assert wm.detect(text).detected is None
    a = art(speechlike(2.0), 16000)
    for bad in (-1, 1 << 32, True, 1.5, "7"):
        with pytest.raises(CannotWatermark, match="payload"):
            wm.embed(a, bad)


def test_integer_pcm_is_accepted():
    wm = GuardrailAudioWatermark(KEY)
    pcm = (speechlike(3.0, seed=8) * 32767).astype(np.int16)
    a = Artifact(modality=Modality.AUDIO, content=pcm, metadata=META, sample_rate=16000)
    m = wm.embed(a, 42)
    assert m.content.dtype == np.float32 and m.content.shape == pcm.shape
    assert wm.detect(m).payload == "0000002a"


def test_constructor_validation_and_the_key_stays_secret():
    for kwargs in ({"fpr": 0.0}, {"fpr": 1.0}, {"payload_bits": 0}, {"payload_bits": 33},
                   {"strength": 0.0}, {"strength": 10.0}):
        with pytest.raises(ValueError):
            GuardrailAudioWatermark(KEY, **kwargs)
    with pytest.raises(ValueError):
        GuardrailAudioWatermark(b"")
    wm = GuardrailAudioWatermark(KEY)
    assert KEY.decode() not in repr(wm)
    res = wm.detect(wm.embed(art(speechlike(2.0), 16000), 1))
    assert KEY.decode() not in repr(res) and KEY.hex() not in repr(res)


# ------------------------------------------------------------------ the null distribution
def _null_p_values(n_keys: int) -> list[np.ndarray]:
    x = art(speechlike(5.0, seed=9), 16000)
    marked_other = GuardrailAudioWatermark(b"the embedding key").embed(x, 123)
    return [np.array([GuardrailAudioWatermark(f"key {i}".encode()).detect(a).p_value
                      for i in range(n_keys)]) for a in (x, marked_other)]


def test_p_values_of_unmarked_audio_are_calibrated_quick():
    for pv in _null_p_values(80):
        assert (pv <= 0.1).mean() <= 0.1 + 0.05
        assert pv.min() > 1e-4


@pytest.mark.slow
def test_p_values_of_unmarked_audio_are_calibrated():
    """Under 'no mark of this key' each shift's and each scale hypothesis's z is exactly
    N(0, 1) (the pilot is drawn from the key), so over many keys the weighted Bonferroni
    p-value is conservative."""
    for pv in _null_p_values(300):
        assert (pv <= 0.1).mean() <= 0.1 + 0.05
        assert (pv <= 0.01).mean() <= 0.01 + 0.02
        assert pv.min() > 1e-4
    assert N_TESTS == 64


def test_resample_helper_lengths():
    x = np.random.default_rng(0).standard_normal(22050).astype(np.float32)
    assert resample(x, 22050, 16000).shape == (16000,)
    assert resample(x, 22050, 22050).shape == (22050,)
    assert resample(x[:22051], 22051, 16000).shape == (16000,)  # FFT path (odd ratio)


# ------------------------------------------------------------------ AudioSeal adapter
def test_audioseal_names_what_is_missing_and_how_to_provide_it(monkeypatch, tmp_path):
    from guardrail.errors import DependencyError, ModelLoadError
    from guardrail.watermark.audioseal import ENV_DETECTOR, ENV_GENERATOR, AudioSealWatermark

    monkeypatch.delenv(ENV_GENERATOR, raising=False)
    monkeypatch.delenv(ENV_DETECTOR, raising=False)
    a = art(speechlike(2.0), 16000)
    try:
        import audioseal  # noqa: F401
    except ImportError:
        with pytest.raises(DependencyError, match="audioseal"):
            AudioSealWatermark().detect(a)
        return
    with pytest.raises(ModelLoadError) as err:
        AudioSealWatermark().embed(a, 1)
    msg = str(err.value)
    assert "audioseal generator" in msg and "no checkpoint path" in msg
    assert "generator_base.pth" in msg and ENV_GENERATOR in msg
    with pytest.raises(ModelLoadError, match=r"no checkpoint file at .*missing\.pth"):
        AudioSealWatermark(detector=tmp_path / "missing.pth").detect(a)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="not a usable AudioSeal detector"):
        AudioSealWatermark(detector=junk).detect(a)
    monkeypatch.setenv(ENV_DETECTOR, str(tmp_path / "env.pth"))
    with pytest.raises(ModelLoadError, match=r"env\.pth"):
        AudioSealWatermark().detect(a)


@pytest.fixture(scope="module")
def tiny_audioseal(tmp_path_factory) -> tuple[str, str]:
    """A tiny randomly initialised AudioSeal generator and detector, saved in the published
    checkpoint layout (``xp.cfg`` + ``model``, pre-TorchScript key names)."""
    pytest.importorskip("audioseal")
    import dataclasses

    import torch
    from audioseal import builder

    seanet = dict(channels=1, dimension=8, n_filters=4, n_residual_layers=1, ratios=[2, 2],
                  activation="ELU", activation_params={"alpha": 1.0}, norm="none",
                  norm_params={}, kernel_size=3, last_kernel_size=3, residual_kernel_size=3,
                  dilation_base=2, causal=False, pad_mode="constant", true_skip=True,
                  compress=2, lstm=0, disable_norm_outer_blocks=0)
    torch.manual_seed(0)
    dec = builder.DecoderConfig(final_activation=None, final_activation_params=None,
                                trim_right_ratio=1.0)
    gen = builder.create_generator(builder.AudioSealWMConfig(
        nbits=16, seanet=builder.SEANetConfig(**seanet), decoder=dec))
    det = builder.create_detector(builder.AudioSealDetectorConfig(
        nbits=16, seanet=builder.SEANetConfig(**seanet)))
    folder = tmp_path_factory.mktemp("audioseal")

    def save(model, extra, name):
        state = {k.replace("inner_conv.", ""): v for k, v in model.state_dict().items()}
        path = folder / name
        torch.save({"xp.cfg": {"seanet": seanet, "nbits": 16, **extra}, "model": state}, path)
        return str(path)

    return (save(gen, {"decoder": dataclasses.asdict(dec)}, "generator.pth"),
            save(det, {"detector": {"output_dim": 32}}, "detector.pth"))


def test_audioseal_code_path_with_a_tiny_random_model(tiny_audioseal):
    from guardrail.watermark.audioseal import AudioSealWatermark

    gen, det = tiny_audioseal
    wm = AudioSealWatermark(gen, det, key=b"audioseal key", fpr=0.1)
    assert isinstance(wm, Watermarker) and wm.payload_bits == 8
    for sr, shape in ((16000, (32000,)), (44100, (88200, 2))):
        x = np.zeros(shape, np.float32)
        x[:] = (speechlike(2.0, sr=sr)[:, None] if len(shape) == 2 else speechlike(2.0, sr=sr))
        m = wm.embed(art(x, sr), 0xA5)
        assert m.content.shape == shape and m.sample_rate == sr
        assert m.content.dtype == np.float32 and np.abs(m.content).max() <= 1.0
        res = wm.detect(m)  # a random model detects nothing in particular
        assert res.scheme == "audioseal" and res.detected in (True, False)
        assert res.fpr is None and res.p_value is None  # not calibrated: the rate is unknown
    with pytest.raises(CannotWatermark, match="silent"):
        wm.embed(art(np.zeros(32000, np.float32), 16000), 1)
    assert wm.detect(art(np.zeros(4000, np.float32), 16000)).detected is None  # too short
    silent = wm.detect(art(np.zeros(32000, np.float32), 16000))
    assert silent.detected is None and "silent" in silent.reason
    # calibration: a conformal threshold from unmarked clips, then p-values and fpr
    clips = [art(speechlike(1.0, seed=s), 16000) for s in range(9)]
    wm.calibrate(clips)
    res = wm.detect(clips[0])
    assert wm.calibrated and res.fpr == 0.1 and 0.0 < res.p_value <= 1.0
    with pytest.raises(ValueError, match="needs at least"):
        AudioSealWatermark(gen, det, fpr=1e-4).calibrate(clips)


def test_audioseal_payload_check_and_decision(tiny_audioseal):
    import torch

    from guardrail.watermark.audioseal import AudioSealWatermark

    gen, det = tiny_audioseal
    wm = AudioSealWatermark(gen, det, key=b"k1")
    bits = wm._message(0x3C)

    class FakeDetector:  # stands in for a trained detector
        def __init__(self, prob, message):
            self.prob, self.message = prob, message

        def detect_watermark(self, wav):
            return torch.tensor([self.prob]), torch.tensor(self.message[None, :])

    a = art(speechlike(2.0), 16000)
    wm._models["detector"] = FakeDetector(0.93, bits)
    res = wm.detect(a)
    assert res.detected is True and res.payload == "3c" and res.score == pytest.approx(0.93)
    flipped = bits.copy()
    flipped[5] ^= 1
    wm._models["detector"] = FakeDetector(0.93, flipped)
    assert wm.detect(a).payload is None  # the tag rejects a wrong id
    wm._models["detector"] = FakeDetector(0.1, bits)
    assert wm.detect(a).detected is False and wm.detect(a).payload is None
    other = AudioSealWatermark(gen, det, key=b"k2")
    other._models["detector"] = FakeDetector(0.93, bits)
    assert other.detect(a).payload is None  # another key cannot read the id
    raw = AudioSealWatermark(gen, det, check_bits=0)
    assert raw.payload_bits == 16 and raw._payload(raw._message(0xBEEF)) == 0xBEEF


# ------------------------------------------------------------------ list decoding
def test_list_decoding_of_one_path_is_viterbi():
    from guardrail.watermark.ecc import PayloadCode

    code = PayloadCode(info_bits=32, crc_bits=24)
    rng = np.random.default_rng(5)
    for i in range(40):
        value = int(rng.integers(0, 1 << 32))
        soft = (2.0 * code.encode(value) - 1.0) * (0.3 + 0.02 * i) + rng.standard_normal(186)
        assert code.decode_list(soft, 1).value == code.decode(soft).value


def test_list_decoding_recovers_what_viterbi_rejects():
    from guardrail.watermark.ecc import PayloadCode

    code = PayloadCode(info_bits=32, crc_bits=24)
    rng = np.random.default_rng(11)
    viterbi = listed = wrong = 0
    for _ in range(150):
        value = int(rng.integers(0, 1 << 32))
        soft = (2.0 * code.encode(value) - 1.0) * 0.7 + rng.standard_normal(186)
        viterbi += code.decode(soft).value == value
        res = code.decode_list(soft, 16)
        listed += res.value == value
        wrong += res.value is not None and res.value != value
        if res.value is not None:
            assert 0 <= res.rank < 16 and res.attempts == res.rank + 1
    assert wrong == 0
    assert listed >= viterbi + 20, (viterbi, listed)  # measured: 39 and 70 of 150


def test_list_decoding_of_noise_finds_nothing_and_checks_the_bound():
    from guardrail.watermark.ecc import PayloadCode

    code = PayloadCode(info_bits=32, crc_bits=24)
    rng = np.random.default_rng(3)
    for _ in range(200):
        res = code.decode_list(rng.standard_normal(186), 16)
        assert res.value is None and not res.crc_ok and res.attempts == 16
    with pytest.raises(ValueError, match="list_size"):
        code.decode_list(np.zeros(186), 0)
    with pytest.raises(ValueError, match="186 soft values"):
        code.decode_list(np.zeros(10), 4)


def test_every_crc_check_counts_in_the_p_value():
    wm = GuardrailAudioWatermark(KEY)  # fpr 1e-4: 16 paths in each of 3 decodes
    assert wm.list_size == 16
    assert wm._p_crc() == pytest.approx(3 * 16 * 2.0 ** -24)
    assert wm._p_crc() <= 0.1 * wm.fpr
    strict = GuardrailAudioWatermark(KEY, fpr=1e-6)  # no room for a list: plain Viterbi
    assert strict.list_size == 1 and strict._p_crc() == pytest.approx(3 * 2.0 ** -24)
    # the list is searched only when the pilot was found (score >= LIST_MIN_Z)
    rng = np.random.default_rng(11)
    for _ in range(200):
        value = int(rng.integers(0, 1 << 32))
        soft = (2.0 * wm._code.encode(value) - 1.0) * 0.7 + rng.standard_normal(186)
        if wm._code.decode(soft).value is None and wm._code.decode_list(soft, 16).value:
            break
    else:
        pytest.fail("no soft values that only the list decodes")
    assert wm._decode(soft, 5.0) == value and wm._decode(soft, 0.0) is None
    assert strict._decode(soft, 5.0) is None
    # a payload that passes its CRC is reported with p = p_crc
    _, p, decoded = wm._decision(0.0, 0x1234)
    assert decoded == 0x1234 and p == pytest.approx(wm._p_crc())


@pytest.mark.parametrize("seed", [3, 9])
def test_payload_under_noise_that_defeats_plain_viterbi(seed):
    wm = GuardrailAudioWatermark(KEY)
    payload = 0x5EED0000 + seed
    m = wm.embed(art(speechlike(5.0, seed=seed), 16000), payload)
    noisy = aa.noise(14)(m)
    found = wm._search(noisy)
    assert not isinstance(found, str)
    # the single best path fails its CRC: the decoder before list decoding found no id
    assert wm._code.decode(wm._soft(found[1])).value is None
    res = wm.detect(noisy)
    assert res.detected is True and res.payload == f"{payload:08x}"
    assert res.p_value == pytest.approx(wm._p_crc())


def test_unmarked_noisy_audio_stays_undetected_under_several_keys():
    clean = art(speechlike(5.0, seed=31), 16000)
    versions = (clean, aa.noise(10)(clean), aa.noise(20)(clean),
                art(np.random.default_rng(2).standard_normal(80000) * 0.1, 16000))
    for k in range(12):
        wm = GuardrailAudioWatermark(f"list key {k}".encode())
        for a in versions:
            res = wm.detect(a)
            assert res.detected is False and res.payload is None
            assert res.p_value >= wm._p_crc() and res.p_value > 1e-3
