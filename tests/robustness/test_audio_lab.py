"""Tests of the audio robustness lab's measurements (on synthetic speech-like clips, so
that no model is needed) and of the corpus split."""

from __future__ import annotations

import pytest

from guardrail.robustness import audio_attacks as aa
from guardrail.robustness.audio_corpus import SENTENCES, SPLITS, piper_clips
from guardrail.robustness.audio_lab import (
    PAYLOAD_TARGET_ATTACK,
    SCALE_TARGET_ATTACKS,
    UNMARKED_KEYS,
    evaluate,
)
from guardrail.testing import speechlike


def test_evaluate_reports_intervals_keys_and_the_scale_targets():
    clips = [(speechlike(4.0, seed=s), 16000) for s in range(2)]
    res = evaluate(clips, key=b"lab test key, thirty-two bytes!!", clip_seconds=4.0,
                   attacks=[aa.speed(1.05), aa.noise(10)], n_unmarked=3, timing_seconds=2.0,
                   timing_repeats=1)
    sp = res["attacks"]["speed(1.05)"]
    assert sp["n"] == 2 and sp["tpr"] == 1.0
    lo, hi = sp["tpr_ci"]
    assert 0.0 < lo < 1.0 and hi == 1.0  # Clopper-Pearson for 2 of 2
    assert len(res["attacks"]["noise(10)"]["payload_ok_ci"]) == 2
    un = res["unmarked"]
    assert un["n_keys"] == 1 + len(UNMARKED_KEYS) and un["n_windows"] == 3
    assert un["n"] == 3 * un["n_keys"] and un["false_positives"] == 0
    assert [k["n"] for k in un["by_key"]] == [3] * len(UNMARKED_KEYS)
    assert un["fpr_ci"][0] == 0.0 and 0.0 < un["fpr_ci"][1] < 0.5
    assert res["targets"]["tpr[speed(1.05)]>=0.95"] is True
    assert f"payload_ok[{PAYLOAD_TARGET_ATTACK}]>=0.9" in res["targets"]
    assert "speed(1.05)" in SCALE_TARGET_ATTACKS and "chain((64, 20, 4000))" in SCALE_TARGET_ATTACKS
    q = res["quality"]  # wideband PESQ of the two marked clips (the quality extra installed)
    if q["pesq_wb"] is None:
        assert "not installed" in q["reason"]
    else:
        assert q["pesq_wb"]["n"] + q["pesq_wb"]["not_scored"] == 2
        assert 1.0 <= q["pesq_wb"]["min"] <= q["pesq_wb"]["mean"] < 4.64


def test_piper_splits_are_disjoint_and_cover_the_sentences():
    assert not set(SPLITS["tune"]) & set(SPLITS["heldout"])
    assert set(SPLITS["tune"]) | set(SPLITS["heldout"]) == set(SENTENCES)
    with pytest.raises(ValueError, match="unknown split"):
        piper_clips(1, split="train")
