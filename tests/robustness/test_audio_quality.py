"""The audio lab's perceptual quality measure: wideband PESQ (the ``quality`` extra)."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from guardrail.robustness import audio_quality as aq
from guardrail.testing import speechlike

pesq = pytest.importorskip("pesq", reason="the quality extra (pesq) is not installed")


def _noisy(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(x.shape)
    noise *= np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2) * 10.0 ** (-snr_db / 10.0))
    return (x + noise).astype(np.float32)


def test_pesq_falls_as_white_noise_rises_and_is_top_for_identical_clips():
    x = speechlike(4.0, seed=3)
    same = aq.pesq_wb(x, x, 16000)
    scores = [aq.pesq_wb(x, _noisy(x, snr), 16000) for snr in (40.0, 30.0, 20.0, 10.0)]
    assert same > 4.5
    assert all(a > b for a, b in zip([same, *scores], scores, strict=False)), scores
    assert scores[-1] < 3.0  # 10 dB of white noise: clearly degraded


def test_pesq_resamples_and_mixes_to_16k_mono():
    x = speechlike(4.0, seed=4)
    y = _noisy(x, 25.0)
    at16 = aq.pesq_wb(x, y, 16000)
    from guardrail.signal import resample

    stereo = np.stack([resample(x, 16000, 22050)] * 2, axis=1)
    stereo_y = np.stack([resample(y, 16000, 22050)] * 2, axis=1)
    assert abs(aq.pesq_wb(stereo, stereo_y, 22050) - at16) < 0.15


def test_unscorable_clips_are_counted_not_averaged():
    x = speechlike(3.0, seed=5)
    with pytest.raises(ValueError, match="silent"):
        aq.pesq_wb(np.zeros(16000), np.zeros(16000), 16000)
    with pytest.raises(ValueError, match="one length"):
        aq.pesq_wb(x, x[:-160], 16000)
    t = aq.Tally()
    t.add(x, _noisy(x, 30.0), 16000)
    t.add(np.zeros(16000), np.zeros(16000), 16000)
    r = t.result()["pesq_wb"]
    assert r["n"] == 1 and r["not_scored"] == 1 and r["min"] == r["mean"]
    both = aq.pooled([t.result(), {"pesq_wb": {"mean": 2.0, "min": 1.5, "n": 3,
                                               "not_scored": 0}, "reason": None}])["pesq_wb"]
    assert both["n"] == 4 and both["min"] == 1.5
    assert both["mean"] == pytest.approx((r["mean"] + 3 * 2.0) / 4)


def test_without_the_package_the_quality_is_reported_not_measured(monkeypatch):
    real = builtins.__import__

    def no_pesq(name, *args, **kwargs):
        if name == "pesq":
            raise ImportError("No module named 'pesq'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pesq)
    t = aq.Tally()
    t.add(speechlike(2.0, seed=1), speechlike(2.0, seed=1), 16000)
    res = t.result()
    assert res["pesq_wb"] is None and "not installed" in res["reason"]
    assert aq.pooled([res])["pesq_wb"] is None
