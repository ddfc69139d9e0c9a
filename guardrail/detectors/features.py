"""Hand-made features for the trainable detectors (numpy / scipy only).

* :func:`spectral_features` (images): azimuthally averaged log power spectrum of the
  luminance high-pass residual, plus a few statistics of the residual and its spectrum.
  Upsampling layers of generators leave periodic peaks and an unnatural high-frequency
  fall-off in this spectrum (Durall et al. 2020; Frank et al. 2020).
* :func:`lfcc_features` (audio): linear-frequency cepstral coefficients with deltas and
  delta-deltas, pooled (mean and standard deviation over frames), as in the ASVspoof
  LFCC baselines.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IMAGE_SIZE", "lfcc", "lfcc_features", "spectral_features"]

#: Images are centre-cropped (after downscaling large ones) to this square before the FFT.
IMAGE_SIZE = 256
N_RADIAL = 32


def _luminance(rgb: np.ndarray) -> np.ndarray:
    x = rgb[..., :3].astype(np.float64) / 255.0
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def _square(y: np.ndarray, size: int) -> np.ndarray:
    h, w = y.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    y = y[top:top + side, left:left + side]
    if side != size:
        from PIL import Image

        y = np.asarray(Image.fromarray(y.astype(np.float32), mode="F").resize(
            (size, size), Image.Resampling.BILINEAR if side > size else Image.Resampling.NEAREST),
            dtype=np.float64)
    return y


def spectral_features(rgb: np.ndarray, *, size: int = IMAGE_SIZE,
                      n_radial: int = N_RADIAL) -> np.ndarray:
    """Feature vector (``n_radial + 6`` values) of an ``HxWx3 uint8`` image."""
    from scipy.ndimage import uniform_filter

    y = _square(_luminance(rgb), size)
    resid = y - uniform_filter(y, size=3, mode="reflect")
    win = np.outer(np.hanning(size), np.hanning(size))
    spec = np.abs(np.fft.fftshift(np.fft.fft2(resid * win))) ** 2
    logp = np.log(spec + 1e-12)
    c = size // 2
    yy, xx = np.indices(spec.shape)
    r = np.hypot(yy - c, xx - c) / c  # 0 .. sqrt(2); use the inscribed disc 0..1
    bins = np.minimum((r * n_radial).astype(int), n_radial)
    sums = np.bincount(bins.ravel(), weights=logp.ravel(), minlength=n_radial + 1)
    counts = np.bincount(bins.ravel(), minlength=n_radial + 1)
    radial = sums[:n_radial] / np.maximum(counts[:n_radial], 1)
    radial = radial - radial.mean()  # shape of the fall-off, not overall contrast
    inner = r <= 1.0
    p = spec[inner & (r > 0.02)]
    hi = spec[inner & (r > 0.5)].sum() / max(spec[inner & (r > 0.02)].sum(), 1e-12)
    peak = float(np.log(p.max() / max(np.median(p), 1e-12)))
    rs = resid.ravel()
    sd = float(rs.std()) + 1e-12
    kurt = float(np.mean(((rs - rs.mean()) / sd) ** 4))
    stats = np.array([np.log(sd), np.log(kurt), hi, peak,
                      float(np.log(np.abs(np.diff(y, axis=1)).mean() + 1e-12)),
                      float(np.log(np.abs(np.diff(y, axis=0)).mean() + 1e-12))])
    return np.concatenate([radial, stats]).astype(np.float64)


def _linear_filterbank(n_filters: int, n_fft: int) -> np.ndarray:
    n_bins = n_fft // 2 + 1
    edges = np.linspace(0, n_bins - 1, n_filters + 2)
    k = np.arange(n_bins)
    fb = np.zeros((n_filters, n_bins))
    for i in range(n_filters):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        up = (k - lo) / max(mid - lo, 1e-9)
        down = (hi - k) / max(hi - mid, 1e-9)
        fb[i] = np.clip(np.minimum(up, down), 0, None)
    return fb


def _deltas(x: np.ndarray, width: int = 2) -> np.ndarray:
    """Regression deltas over time (axis 0), as in HTK."""
    pad = np.pad(x, ((width, width), (0, 0)), mode="edge")
    num = sum(n * (pad[width + n:len(x) + width + n] - pad[width - n:len(x) + width - n])
              for n in range(1, width + 1))
    return num / (2 * sum(n * n for n in range(1, width + 1)))


def lfcc(audio: np.ndarray, sample_rate: int, *, n_filters: int = 20, n_ceps: int = 20,
         frame_ms: float = 20.0, hop_ms: float = 10.0) -> np.ndarray:
    """LFCC matrix ``frames x (3 * n_ceps)``: static coefficients, deltas, delta-deltas."""
    from scipy.fft import dct

    x = np.asarray(audio, dtype=np.float64)
    x = np.append(x[0], x[1:] - 0.97 * x[:-1])  # pre-emphasis
    flen = max(16, int(sample_rate * frame_ms / 1000))
    hop = max(8, int(sample_rate * hop_ms / 1000))
    n_fft = 1 << int(np.ceil(np.log2(flen)))
    if x.size < flen:
        x = np.pad(x, (0, flen - x.size))
    n = 1 + (x.size - flen) // hop
    idx = np.arange(flen)[None, :] + hop * np.arange(n)[:, None]
    frames = x[idx] * np.hamming(flen)
    power = np.abs(np.fft.rfft(frames, n=n_fft, axis=1)) ** 2
    fb = _linear_filterbank(n_filters, n_fft)
    energies = np.log(power @ fb.T + 1e-10)
    ceps = dct(energies, type=2, axis=1, norm="ortho")[:, :n_ceps]
    d1 = _deltas(ceps)
    return np.hstack([ceps, d1, _deltas(d1)])


def lfcc_features(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Pooled LFCC statistics: mean and standard deviation of every column (120 values)."""
    m = lfcc(audio, sample_rate)
    return np.concatenate([m.mean(axis=0), m.std(axis=0)])
