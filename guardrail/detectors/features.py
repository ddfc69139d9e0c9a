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


#: pixels converted to luminance at a time (bounds the float64 temporaries of big images)
_BLOCK_PIXELS = 1 << 18


def _luminance(rgb: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """BT.601 luminance in [0, 1], computed in float64 a block of rows at a time and
    stored as ``dtype``."""
    h, w = rgb.shape[:2]
    out = np.empty((h, w), dtype=dtype)
    rows = max(1, _BLOCK_PIXELS // max(w, 1))
    for y in range(0, h, rows):
        x = rgb[y:y + rows, :, :3].astype(np.float64) / 255.0
        out[y:y + rows] = 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
    return out


def _square(rgb: np.ndarray, size: int) -> np.ndarray:
    """The luminance of the centred square of ``rgb``, resized to ``size``."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = rgb[top:top + side, left:left + side]
    if side == size:
        return _luminance(crop)
    from PIL import Image

    # the resize works in float32: the luminance is stored so straight away
    y = _luminance(crop, np.float32)
    return np.asarray(Image.fromarray(y, mode="F").resize(
        (size, size), Image.Resampling.BILINEAR if side > size else Image.Resampling.NEAREST),
        dtype=np.float64)


def spectral_features(rgb: np.ndarray, *, size: int = IMAGE_SIZE,
                      n_radial: int = N_RADIAL) -> np.ndarray:
    """Feature vector (``n_radial + 6`` values) of an ``HxWx3 uint8`` image."""
    from scipy.ndimage import uniform_filter

    y = _square(rgb, size)
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


def _pre_emphasis(x: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Samples ``lo:hi`` of the pre-emphasised float64 signal ``y[0] = x[0]``,
    ``y[t] = x[t] - 0.97 x[t-1]``, zero beyond the end of ``x``."""
    out = np.zeros(hi - lo)
    end = min(hi, x.size)
    if end <= lo:
        return out
    cur = x[lo:end].astype(np.float64)
    if lo == 0:
        out[0] = cur[0]
        out[1:end] = cur[1:] - 0.97 * cur[:-1]
    else:
        out[:end - lo] = cur - 0.97 * x[lo - 1:end - 1].astype(np.float64)
    return out


def lfcc(audio: np.ndarray, sample_rate: int, *, n_filters: int = 20, n_ceps: int = 20,
         frame_ms: float = 20.0, hop_ms: float = 10.0) -> np.ndarray:
    """LFCC matrix ``frames x (3 * n_ceps)``: static coefficients, deltas, delta-deltas."""
    from scipy.fft import dct

    x = np.asarray(audio)
    flen = max(16, int(sample_rate * frame_ms / 1000))
    hop = max(8, int(sample_rate * hop_ms / 1000))
    n_fft = 1 << int(np.ceil(np.log2(flen)))
    size = max(x.size, flen)  # a short clip is zero-padded to one frame
    n = 1 + (size - flen) // hop
    fb = _linear_filterbank(n_filters, n_fft)
    window = np.hamming(flen)
    energies = np.empty((n, n_filters))
    step = max(1, _BLOCK_PIXELS // n_fft)  # frames at a time: bounded temporaries
    for i in range(0, n, step):
        k = min(step, n - i)
        lo = hop * i
        seg = _pre_emphasis(x, lo, lo + hop * (k - 1) + flen)
        idx = np.arange(flen)[None, :] + hop * np.arange(k)[:, None]
        power = np.abs(np.fft.rfft(seg[idx] * window, n=n_fft, axis=1)) ** 2
        energies[i:i + k] = np.log(power @ fb.T + 1e-10)
    ceps = dct(energies, type=2, axis=1, norm="ortho")[:, :n_ceps]
    d1 = _deltas(ceps)
    return np.hstack([ceps, d1, _deltas(d1)])


def lfcc_features(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Pooled LFCC statistics: mean and standard deviation of every column (120 values)."""
    m = lfcc(audio, sample_rate)
    return np.concatenate([m.mean(axis=0), m.std(axis=0)])
