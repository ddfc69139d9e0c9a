"""Tests of guardrail's audio watermark version 3 (``guardrail-audio-v3``): version 2's pilot
with a coherent, content-bound payload layer. What version 3 shares with versions 1 and 2
(bad input, rates, silence, the pilot's views and scale search) is tested there; here, what
the layer changes."""

from __future__ import annotations

import numpy as np
import pytest

from guardrail import Artifact, GenerationMetadata, Modality
from guardrail._softbinding import watermark_alg
from guardrail.robustness import audio_attacks as aa
from guardrail.robustness.audio_keyless import estimate_coherent, imprint_coherent
from guardrail.testing import speechlike
from guardrail.watermark import registry
from guardrail.watermark._chips import stft
from guardrail.watermark.audio_v2 import GuardrailAudioWatermarkV2
from guardrail.watermark.audio_v3 import BASE_SNR_DB, GuardrailAudioWatermarkV3
from tests.watermark.conftest import audio_art as art

KEY = b"test-key-0123456789abcdef-audio3"


@pytest.fixture(scope="module")
def v3() -> GuardrailAudioWatermarkV3:
    return GuardrailAudioWatermarkV3(KEY)


@pytest.fixture(scope="module")
def marked(v3) -> tuple[Artifact, Artifact]:
    x = art(speechlike(5.0, seed=31))
    return x, v3.embed(x, 0xC0DE5)


def test_registered_as_version_3_with_its_own_soft_binding_name():
    wm = registry.build("guardrail-audio-v3", key=KEY, fpr=1e-4)
    assert isinstance(wm, GuardrailAudioWatermarkV3)
    assert (wm.scheme, wm.version) == ("guardrail-audio-v3", "3")
    assert registry.registered("audio")["guardrail-audio-v3"].modality is Modality.AUDIO
    assert watermark_alg("guardrail-audio-v3") == "io.guardrail.watermark.audio.v3"


def test_round_trip_at_the_stated_ratio_and_the_versions_do_not_read_each_other(v3, marked):
    x, m = marked
    res = v3.detect(m)
    assert res.detected is True and res.payload == "000c0de5" and res.scheme_version == "3"
    assert res.p_value <= v3.fpr
    d = np.asarray(m.content, np.float64) - np.asarray(x.content, np.float64)
    snr = 10 * np.log10(np.sum(np.asarray(x.content, np.float64) ** 2) / np.sum(d ** 2))
    assert snr == pytest.approx(BASE_SNR_DB, abs=0.05)
    v2 = GuardrailAudioWatermarkV2(KEY)
    assert v2.detect(m).payload is None  # version 2's payload is not written
    assert v3.detect(v2.embed(x, 0xC0DE5)).payload is None
    assert v3.detect(x).detected is False


@pytest.mark.parametrize("snr", [12, 10])
def test_the_id_survives_noise_where_version_2_loses_it(v3, snr):
    """The reason for version 3: white noise buries the chip energies version 2's payload
    is read from; the coherent layer is read by correlation, where noise is only noise."""
    x = art(speechlike(5.0, seed=32))
    v2 = GuardrailAudioWatermarkV2(KEY)
    ids = {"v2": 0, "v3": 0}
    for i, (name, wm) in enumerate((("v2", v2), ("v3", v3))):
        m = wm.embed(x, 0xBEEF + i)
        for seed in range(3):
            noisy = aa.noise(snr)(m.evolve(metadata=GenerationMetadata(model_id="t", seed=seed)))
            ids[name] += wm.detect(noisy).payload == f"{0xBEEF + i:08x}"
    assert ids["v3"] >= 2 and ids["v3"] > ids["v2"], ids


@pytest.mark.parametrize("cut", [1, 37, 130, 5000])
def test_a_crop_at_any_sample_is_read_through_the_delay_search(v3, marked, cut):
    """The layer needs its samples where the embedder put them: the pilot aligns the chip
    grid to a frame, the delay search the rest (a sample's delay turns 7 kHz by 2.7 rad)."""
    _x, m = marked
    y = art(np.asarray(m.content)[cut:])
    res = v3.detect(y)
    assert res.detected is True and res.payload == "000c0de5", (cut, res)
    truth = np.asarray(v3._code.encode(0xC0DE5), bool)
    assert np.mean((v3._raw_soft(y) > 0) == truth) < 0.9  # at the grid's own sample: lost


@pytest.mark.parametrize("cut", [0, 256, 768, 37])
def test_the_quick_read_finds_what_the_full_reading_finds(v3, marked, monkeypatch, cut):
    """A marked copy is read from chip phase 0 alone (one fold); a copy cut by an odd
    number of frames (its chips at phase 1) or off the frame grid takes the full reading.
    Either way the id is the one the full reading alone finds."""
    _x, m = marked
    y = art(np.asarray(m.content)[cut:])
    calls: list[int] = []
    folded = GuardrailAudioWatermarkV3._folded
    monkeypatch.setattr(GuardrailAudioWatermarkV3, "_folded", lambda self, spec, sr, phase,
                        grid: (calls.append(phase), folded(self, spec, sr, phase, grid))[1])
    quick = v3.detect(y)
    assert quick.detected is True and quick.payload == "000c0de5", (cut, quick)
    assert calls == ([0] if cut == 0 else [0, 1]), (cut, calls)
    # the full reading alone: both phases' pilot alignments, then the layer's reading
    spec = stft(np.asarray(y.content))
    grids = v3._grids(spec, 16000)
    scored = v3._alignments(grids, 16000)
    full = v3._coherent_id(spec, 16000, grids, [(p, k) for _, p, k in scored],
                           v3._decision(scored[0][0], None)[0])
    assert full == 0xC0DE5


def test_the_scan_is_the_correlation_written_out_with_each_alignment_s_own_variance(v3):
    """Soft value of coded bit b at shift s: the sum over the period's coefficients of bit b
    of Re(received coefficient, s chips earlier, x key); its variance without a mark: half
    the power of exactly those coefficients - per shift (a band cut to 4 kHz or silent
    columns leave some bits nothing to read at one shift and plenty at another)."""
    from guardrail.watermark._chips import CHIP_FRAMES
    from guardrail.watermark.audio_v3 import _FRAMES

    rng = np.random.default_rng(3)
    folded = (rng.standard_normal((_FRAMES, 208)) + 1j * rng.standard_normal((_FRAMES, 208)))
    folded[:, 100:] = 0.0  # the upper band cut away
    folded[10:20] = 0.0  # silent columns
    folded = folded.astype(np.complex64)
    lay, n = v3._coh, v3._code.n_coded
    soft, var = v3._scan(folded)
    on = lay["frame_bit"] >= 0  # the layer's chips (not the pilot's)
    for s in (0, 5, 31):
        rolled = np.roll(folded, CHIP_FRAMES * s, axis=0)
        want = np.bincount(lay["frame_bit"][on], weights=(rolled * lay["key"]).real[on],
                           minlength=n)
        power = np.bincount(lay["frame_bit"][on], weights=(np.abs(rolled) ** 2)[on],
                            minlength=n)
        np.testing.assert_allclose(soft[s], want, atol=1e-4)
        np.testing.assert_allclose(var[s], 0.5 * power + 1e-30, rtol=1e-5, atol=1e-4)


def test_the_layer_leaves_the_pilot_s_chips_alone(v3):
    """The layer is written into version 2's payload chips only - the pilot's chips carry
    the pilot alone (the layer's energy there lowered the pilot's scores) - and every coded
    bit gets its share of them."""
    from guardrail.watermark import _chips as chips
    from guardrail.watermark.audio import PERIOD

    lay = v3._coh
    np.testing.assert_array_equal(lay["bit_of"] >= 0, v3._layout["bit_of"] >= 0)
    counts = np.bincount(lay["bit_of"][lay["bit_of"] >= 0], minlength=v3._code.n_coded)
    assert counts.max() - counts.min() <= 1
    x16 = speechlike(5.0, seed=7)
    spec = chips.stft(x16)
    energy = chips.chip_energy(spec, 0)
    word = np.random.default_rng(1).integers(0, 2, v3._code.n_coded).astype(np.uint8)
    coef = v3._layer(spec.shape, energy, chips.rows_ok(16000), word, 1e-3 * float(np.sum(x16 ** 2)))
    written = chips.chip_energy(coef, 0) > 0  # chips (columns x rows) the layer wrote into
    pay = v3._layout["bit_of"][np.arange(written.shape[0]) % PERIOD] >= 0
    assert written.any() and not (written & ~pay).any()
    assert written[pay].mean() > 0.5


def test_the_layer_s_amplitude_is_capped_by_its_chip_and_its_column(v3):
    """At most ``COH_CAP`` times the host's RMS in its chip and ``COH_COL_CAP`` times its
    column's: in the quiet columns between words, which nothing masks, the layer is held
    under the column's level even where the budget would give it more."""
    from guardrail.watermark import _chips as chips
    from guardrail.watermark.audio_v3 import COH_CAP, COH_COL_CAP

    x16 = speechlike(5.0, seed=8).astype(np.float32)
    x16[16000:24000] *= 0.1  # half a second 20 dB quieter: a pause
    spec = chips.stft(x16)
    energy = chips.chip_energy(spec, 0)
    ok = chips.rows_ok(16000)
    word = np.random.default_rng(2).integers(0, 2, v3._code.n_coded).astype(np.uint8)
    big = 0.05 * float(np.sum(x16.astype(np.float64) ** 2))  # more than the caps allow
    lay = chips.chip_energy(v3._layer(spec.shape, energy, ok, word, big), 0)
    on = lay > 0
    col = energy[:, ok].mean(axis=1, keepdims=True) * np.ones_like(energy)
    cap = np.minimum(COH_CAP ** 2 * energy, COH_COL_CAP ** 2 * col)
    assert on.any()
    np.testing.assert_allclose(lay[on], cap[on], rtol=1e-3)  # the budget fills every cap
    # and the column's cap is what holds the pause's chips
    pause = np.zeros(energy.shape[0], bool)
    pause[16000 // 512 + 2:24000 // 512 - 2] = True
    held = on & pause[:, None] & (COH_COL_CAP ** 2 * col < COH_CAP ** 2 * energy)
    assert held.sum() > 0.5 * (on & pause[:, None]).sum() > 0


def test_a_copied_layer_is_not_a_mark_on_other_audio(v3, marked):
    """The layer's keyed phases repeat every period, so averaging an output's STFT over its
    periods estimates it; written into other speech it meets column signs unrelated to its
    own and decodes nothing - and without its id a copy is not evidence."""
    _x, m = marked
    est = estimate_coherent(np.asarray(m.content), 16000)
    for seed in (41, 42, 43):
        target = speechlike(5.0, seed=seed)
        res = v3.detect(art(imprint_coherent(target, 16000, est, 28.0)))
        assert res.detected is False and res.payload is None, res


def test_the_coherent_copy_attack_works_against_an_unbound_layer(monkeypatch):
    """Without the column signs the same copy carries the victim's id: the attack is real,
    the binding is what stops it."""
    unbound = GuardrailAudioWatermarkV3(KEY)
    monkeypatch.setattr(unbound, "_column_field", lambda energy, row_ok: np.full(
        energy.shape[0], 10.0))
    m = unbound.embed(art(speechlike(5.0, seed=31)), 0xC0DE5)
    est = estimate_coherent(np.asarray(m.content), 16000)
    hits = [unbound.detect(art(imprint_coherent(speechlike(5.0, seed=s), 16000, est, 28.0)))
            for s in (41, 42, 43)]
    assert sum(r.payload == "000c0de5" for r in hits) >= 2, hits


def test_a_decoded_id_is_evidence_on_its_own_and_every_decode_is_in_the_bound(v3):
    low = 1.0  # a pilot score far below the threshold
    detected, p, decoded = v3._decision(low, 42)
    assert detected is True and decoded == 42 and p == v3._p_crc() <= v3.fpr
    assert v3._decision(low, None)[0] is False
    from guardrail.watermark.audio_v3 import COH_DECODES

    assert v3._p_crc() == (COH_DECODES * v3.list_size + 1) * 2.0 ** -24


def test_speed_tempo_and_pitch_keep_the_mark_but_not_its_id(v3):
    m = v3.embed(art(speechlike(6.0, seed=33)), 0x5EED)
    for attack in (aa.speed(1.05), aa.tempo(0.95), aa.pitch(-1)):
        res = v3.detect(attack(m))
        assert res.detected is True, (attack.label, res)
        assert res.payload is None  # the documented limit: the layer needs its phases


def test_p_values_of_unmarked_audio_are_calibrated_quick():
    x = art(speechlike(5.0, seed=34))
    pv = np.array([GuardrailAudioWatermarkV3(f"key {i}".encode()).detect(x).p_value
                   for i in range(40)])
    assert (pv <= 0.1).mean() <= 0.1 + 0.08 and pv.min() > 1e-4


def test_short_clips_carry_the_id_or_are_refused_with_the_reason(v3):
    from guardrail.watermark.base import CannotWatermark

    for seconds, seed in ((1.5, 35), (2.5, 36)):
        x = art(speechlike(seconds, seed=seed))
        try:
            m = v3.embed(x, 0x77)
        except CannotWatermark as exc:
            assert exc.payload_dependent or "detectable" in str(exc)
            continue
        assert v3.detect(m).payload == "00000077"
