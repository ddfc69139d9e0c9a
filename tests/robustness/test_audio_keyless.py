"""The keyless copy / removal attacks of the audio lab (on synthetic speech-like clips, so
that no model is needed)."""

from __future__ import annotations

import numpy as np
import pytest

from guardrail import Artifact, GenerationMetadata, Modality
from guardrail.robustness.audio_attacks import snr_db
from guardrail.robustness.audio_keyless import (
    ATTACK_SNR_DB,
    _binds,
    estimate_pattern,
    imprint,
    keyless_trials,
)
from guardrail.robustness.audio_lab import evaluate
from guardrail.testing import speechlike
from guardrail.watermark.audio import PERIOD, GuardrailAudioWatermark

KEY = b"audio keyless test key, 32 bytes"
SR = 16000


def _art(x: np.ndarray, sr: int = SR) -> Artifact:
    return Artifact(modality=Modality.AUDIO, content=x, metadata=GenerationMetadata("t"),
                    sample_rate=sr)


@pytest.fixture(scope="module")
def wm() -> GuardrailAudioWatermark:
    return GuardrailAudioWatermark(KEY)


@pytest.fixture(scope="module")
def donors(wm):
    return [(wm.embed(_art(speechlike(4.0, seed=s)), 0x1000 + s).content, SR, 0x1000 + s)
            for s in range(2)]


def test_estimators_shape_and_errors(donors):
    outs = [(x, sr) for x, sr, _ in donors]
    fold = estimate_pattern(outs, "fold")
    assert fold.shape[0] == PERIOD and np.isfinite(fold).all() and fold.std() > 0
    chips = estimate_pattern(outs[:1], "chips")
    assert chips.shape[0] > PERIOD  # one column per chip column of the 4 s output
    with pytest.raises(ValueError, match="estimator must be one of"):
        estimate_pattern(outs, "tile")
    with pytest.raises(ValueError, match="at least one marked output"):
        estimate_pattern([], "fold")


def test_imprint_is_exactly_at_its_ratio_and_copies_the_mark(wm, donors):
    target = speechlike(4.0, seed=9)
    assert not wm.detect(_art(target)).detected
    pattern = estimate_pattern([(donors[0][0], SR)], "fold")
    forged = imprint(target, SR, pattern)
    assert forged.shape == target.shape and forged.dtype == np.float32
    assert snr_db(target, forged) == pytest.approx(ATTACK_SNR_DB, abs=0.05)
    # the repeating pattern is estimated from one output: the copy scores far above the
    # unmarked target, and it is not bound to the victim's record
    res = wm.detect(_art(forged))
    assert res.score > wm.detect(_art(target)).score + 4.0
    from guardrail.fingerprint import fingerprint

    recorded = fingerprint(_art(donors[0][0]))
    assert _binds(recorded, donors[0][0], SR)  # the victim's own output binds
    assert not _binds(recorded, forged, SR)
    # two channels: the same change on both; silence cannot carry anything
    stereo = imprint(np.stack([target, target], axis=1), SR, pattern)
    assert stereo.shape == (target.shape[0], 2)
    assert np.allclose(stereo[:, 0], stereo[:, 1])
    silent = np.zeros(SR * 2, dtype=np.float32)
    assert np.array_equal(imprint(silent, SR, pattern), silent)


def test_keyless_trials_count_copies_victims_and_removals(wm, donors):
    targets = [(speechlike(4.0, seed=20 + s), SR) for s in range(3)]
    marked = [(wm.embed(_art(speechlike(4.0, seed=30)), 0x77).content, SR, 0x77)]
    notes: list[str] = []
    res = keyless_trials(wm, donors, targets, marked,
                         estimates=((1, "fold"), (2, "chips"), (10, "fold")), say=notes.append)
    assert set(res["copy"]) == {"copy(1, 'fold')", "copy(2, 'chips')"}
    assert set(res["removal"]) == {"removal(1, 'fold')", "removal(2, 'chips')"}
    assert any("from 10 outputs not run: 2 marked outputs held" in n for n in notes)
    for r in res["copy"].values():
        assert r["n"] == 3 and 0 <= r["victim_ids"] <= r["positives"] <= 3
        assert r["ai_verdicts"] == 0  # unrelated audio never binds to a victim's record
        assert r["ci_low"] <= r["rate"] <= r["ci_high"]
    assert res["copy"]["copy(1, 'fold')"]["positives"] >= 1
    for r in res["removal"].values():
        assert r["n"] == 1 and r["positives"] in (0, 1)
    # the removal with less energy too (the sweep), for each estimate that ran
    assert set(res["removal_sweep"]) == {
        f"removal{e} at {s}" for e in ("(1, 'fold')", "(2, 'chips')")
        for s in ("34 dB", "38 dB", "38 dB + speed(1.03)")}
    assert all(r["n"] == 1 for r in res["removal_sweep"].values())
    assert any("at 38 dB" in n for n in notes)
    only = keyless_trials(wm, donors, targets[:1], marked, estimates=((1, "chips"),),
                          removal_snrs=(ATTACK_SNR_DB,))
    assert only["removal_sweep"] == {}  # the main setting is not repeated


def test_evaluate_runs_the_keyless_attacks_and_states_their_targets():
    clips = [(speechlike(4.0, seed=s), SR) for s in range(12)]
    res = evaluate(clips, key=KEY, clip_seconds=4.0, attacks=[], n_unmarked=1,
                   timing_seconds=2.0, timing_repeats=1, n_copy_targets=3, n_removal=1,
                   human=[(speechlike(3.0, sr=8000, seed=99), 8000)],
                   unmarked_keys=())
    kl = res["keyless"]
    assert kl["n_human_targets"] == 1 and kl["snr_db"] == ATTACK_SNR_DB
    assert {r["n"] for r in kl["copy"].values()} == {3}
    assert {r["n"] for r in kl["removal"].values()} == {1}
    assert {r["n"] for r in kl["removal_sweep"].values()} == {1}
    for name in ("copy<=1/100", "copy_ai_verdicts==0", "removal_tpr>=0.95",
                 "removal_tpr[38 dB]>=0.95", "removal_tpr[38 dB + speed]>=0.95"):
        assert isinstance(res["targets"][name], bool)
    then = [r["rate"] for k, r in kl["removal_sweep"].items() if k.endswith("+ speed(1.03)")]
    assert then and res["targets"]["removal_tpr[38 dB + speed]>=0.95"] == (min(then) >= 0.95)
    assert res["targets"]["copy_ai_verdicts==0"] is True
    off = evaluate(clips[:2], key=KEY, clip_seconds=4.0, attacks=[], n_unmarked=1,
                   timing_seconds=2.0, timing_repeats=1, unmarked_keys=(), keyless=False)
    assert off["keyless"] is None and "copy<=1/100" not in off["targets"]


def test_removals_aimed_at_the_louder_views_of_version_2_keep_to_their_budget():
    from guardrail.robustness.audio_keyless import ADAPTIVE, _adaptive
    from guardrail.watermark.audio_v2 import GuardrailAudioWatermarkV2

    v2 = GuardrailAudioWatermarkV2(KEY)
    donors2 = [(v2.embed(_art(speechlike(4.0, seed=s)), 0x2000 + s).content, SR, 0x2000 + s)
               for s in range(2)]
    marked = [(v2.embed(_art(speechlike(4.0, seed=40)), 0x78).content, SR, 0x78)]
    res = keyless_trials(v2, donors2, [(speechlike(4.0, seed=41), SR)], marked,
                         estimates=((1, "chips"),), removal_snrs=(34.0, 38.0))
    assert set(res["removal"]) == {"removal(1, 'chips')"} | {
        f"removal(1, {e!r})" for e in ADAPTIVE}
    # copies aimed at the louder views too (the split removal has nothing to copy)
    assert set(res["copy"]) == {"copy(1, 'chips')", "copy(1, 'loud')", "copy(1, 'scale-loud')"}
    assert all(r["n"] == 1 and r["ai_verdicts"] == 0 for r in res["copy"].values())
    for e in ("chips",) + ADAPTIVE:
        for row in ("at 34 dB", "at 38 dB", "at 38 dB + speed(1.03)"):
            assert res["removal_sweep"][f"removal(1, {e!r}) {row}"]["n"] == 1
    x = marked[0][0]
    for e in ADAPTIVE:  # each removal spends exactly its budget (the split ones: both parts)
        assert snr_db(x, _adaptive(v2, x, SR, e, 30.0)) == pytest.approx(30.0, abs=0.1), e
    # the two splits aim at different pairs of views: the unscaled grid's, the scale search's
    assert {"chips+loud", "chips+scale-loud"} <= set(ADAPTIVE)
    assert not np.allclose(_adaptive(v2, x, SR, "chips+loud", 30.0),
                           _adaptive(v2, x, SR, "chips+scale-loud", 30.0))


def test_copies_aimed_at_a_coherent_layer_run_against_version_3_and_find_nothing():
    """Against version 3 the attacker also averages an output's complex STFT over the
    layer's period (which does estimate the layer, up to its column signs) and copies that,
    from one output and from all it holds; written into other speech it is not a mark."""
    from guardrail.robustness.audio_keyless import estimate_coherent, imprint_coherent
    from guardrail.watermark.audio_v3 import GuardrailAudioWatermarkV3

    v3 = GuardrailAudioWatermarkV3(KEY)
    outs = [(v3.embed(_art(speechlike(4.0, seed=s)), 0x3000 + s).content, SR, 0x3000 + s)
            for s in range(2)]
    targets = [(speechlike(4.0, seed=50 + i), SR) for i in range(2)]
    res = keyless_trials(v3, outs, targets, outs[:1], estimates=((1, "chips"),),
                         removal_snrs=())
    assert {"copy(1, 'coherent')", "copy(10, 'coherent')"} & set(res["copy"]) == {
        "copy(1, 'coherent')"}  # ten outputs are not held: that row is not run
    row = res["copy"]["copy(1, 'coherent')"]
    assert row["n"] == 2 and row["positives"] == 0 and row["victim_ids"] == 0
    est = estimate_coherent(np.asarray(outs[0][0]), SR)
    assert est.shape == (64, 208) and np.iscomplexobj(est)
    forged = imprint_coherent(targets[0][0], SR, est, 28.0)
    assert snr_db(targets[0][0], forged) == pytest.approx(28.0, abs=0.05)
