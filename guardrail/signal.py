"""The one audio resampler.

Every module that changes a signal's sample rate - the audio watermarks, the audio attacks,
the detectors, the fingerprints, the evaluation reports - calls :func:`resample`, so that a
clip resampled by an attack and the same clip resampled by a detector are the same samples.

Examples
--------
>>> import numpy as np
>>> resample(np.zeros(16000, np.float32), 16000, 8000).shape
(8000,)
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["fft_module", "resample"]

#: Largest reduced up/down factor handled by the polyphase filter; larger ratios (rare,
#: e.g. 44100 -> 44099) use band-limited FFT resampling.
MAX_POLY_FACTOR = 1000


def fft_module():
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
    """Resample a signal along axis 0 from ``sr_from`` to ``sr_to`` Hz.

    Parameters
    ----------
    x
        Samples, ``N`` (mono) or ``N x C`` (channels in columns).
    sr_from, sr_to
        Sample rates in Hz.

    Returns
    -------
    numpy.ndarray
        ``float32``, ``ceil(N * sr_to / sr_from)`` samples along axis 0, the other axes
        unchanged; a copy when the rates are equal.

    Notes
    -----
    Uses scipy's polyphase filter (its default Kaiser window) when the reduced ratio has
    factors of at most ``MAX_POLY_FACTOR`` (all common rates), else band-limited FFT
    resampling with zero padding against wrap-around.
    """
    x = np.asarray(x, dtype=np.float32)
    if sr_from == sr_to:
        return x.copy()
    g = math.gcd(int(sr_from), int(sr_to))
    ua, ub = int(sr_from) // g, int(sr_to) // g
    n = x.shape[0]
    m = -(-n * ub // ua)
    if max(ua, ub) <= MAX_POLY_FACTOR:
        try:
            from scipy.signal import resample_poly
        except ImportError:  # pragma: no cover
            pass
        else:
            y = resample_poly(x, ub, ua, axis=0, window=_poly_filter(ub, ua).copy())[:m]
            if y.shape[0] < m:
                y = np.pad(y, [(0, m - y.shape[0])] + [(0, 0)] * (y.ndim - 1))
            return y.astype(np.float32, copy=False)
    fft = fft_module()
    q = -(-(n + 256 + n // 64) // ua)  # pad to ua * q samples: the output has ub * q
    n_pad, m_pad = ua * q, ub * q
    spec = fft.rfft(x, n_pad, axis=0)
    k = m_pad // 2 + 1
    if k <= spec.shape[0]:
        out_spec = spec[:k].copy()
        if m_pad % 2 == 0:
            out_spec[-1] = out_spec[-1].real  # the new Nyquist bin
    else:
        out_spec = np.zeros((k,) + spec.shape[1:], dtype=spec.dtype)
        out_spec[: spec.shape[0]] = spec
        if n_pad % 2 == 0:
            out_spec[spec.shape[0] - 1] *= 0.5
    y = fft.irfft(out_spec, m_pad, axis=0)[:m] * (m_pad / n_pad)
    return y.astype(np.float32, copy=False)
