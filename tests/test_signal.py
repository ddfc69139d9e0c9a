"""The one audio resampler."""

from __future__ import annotations

import numpy as np
import pytest

from guardrail.signal import resample


def tone(hz: float, sr: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize(("sr_from", "sr_to"), [(44100, 16000), (16000, 48000),
                                                 (22050, 16000), (44100, 44099)])
def test_length_dtype_and_content(sr_from, sr_to):
    x = tone(440.0, sr_from)
    y = resample(x, sr_from, sr_to)
    assert y.dtype == np.float32 and y.shape == (-(-x.shape[0] * sr_to // sr_from),)
    ref = tone(440.0, sr_to, y.shape[0] / sr_to)
    mid = slice(y.shape[0] // 4, 3 * y.shape[0] // 4)  # away from the filter's edges
    assert np.max(np.abs(y[mid] - ref[mid])) < 0.01


def test_same_rate_is_a_copy():
    x = tone(100.0, 8000)
    y = resample(x, 8000, 8000)
    assert y is not x and np.array_equal(x, y)


@pytest.mark.parametrize("sr_to", [16000, 44099])  # polyphase and FFT paths
def test_channels_are_resampled_along_axis_0(sr_to):
    x = np.stack([tone(300.0, 44100), tone(500.0, 44100)], axis=1)
    y = resample(x, 44100, sr_to)
    assert y.shape == (-(-x.shape[0] * sr_to // 44100), 2)
    for c in range(2):
        assert np.allclose(y[:, c], resample(x[:, c], 44100, sr_to), atol=1e-6)
