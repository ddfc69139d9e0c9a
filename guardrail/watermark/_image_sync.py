"""The key-independent synchronisation of ``guardrail-image``.

The repeated tile makes the whitened luminance periodic; the autocorrelation of the
spectrally whitened residual then peaks on the tile lattice, which gives the scale and the
rotation the image went through without the key (see :mod:`guardrail.watermark.image` for
the design). :func:`fold` undoes them and sums all tiles into one.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ANGLE_RANGE_DEG", "SCALE_RANGE", "TILE", "fold", "lattice_candidates", "subpixel",
           "whiten", "whiten_spectral"]

#: Tile side (working pixels).
TILE = 48
#: Synchronisation search: scales (content enlarged by s > 1, e.g. after a crop) and angles.
SCALE_RANGE = (0.77, 1.33)
ANGLE_RANGE_DEG = 6.0
#: The synchroniser uses the band of frequencies [F_MIN, F_MAX] (cycles per working pixel).
F_MIN, F_MAX = 0.06, 0.42


def whiten(yw: np.ndarray) -> np.ndarray:
    """High-pass residual divided by its local RMS (robust to brightness and contrast)."""
    import cv2

    hp = yw - cv2.GaussianBlur(yw, (0, 0), 1.5)
    loc = cv2.GaussianBlur(hp * hp, (0, 0), 3.0)
    return (hp / np.sqrt(loc + 1.0)).astype(np.float32)


def whiten_spectral(yw: np.ndarray, exp: float) -> np.ndarray:
    """The luminance's spectrum divided by its own smoothed magnitude to the power
    ``exp / 2`` (9 x 9 bins; ``exp``: the share of the way to a flat power spectrum), then
    :func:`whiten`'s Gaussian high-pass (sigma 1.5) and division by the local RMS (sigma
    3): the mark is white in the embedding frame, the image's own spectrum is not, so
    flattening the image's spectrum raises the mark's share of the residual (the linear
    detector's optimum in coloured noise). Computed from the image alone, so the pilot
    statistic stays exactly standard normal without the mark."""
    import cv2

    h, w = yw.shape
    spec = np.fft.rfft2(yw.astype(np.float64) - float(yw.mean()))
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
    smooth = cv2.blur(power, (9, 9)).astype(np.float64) + 1e-6 * float(power.mean()) + 1e-12
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    high = 1.0 - np.exp(-2.0 * math.pi ** 2 * 1.5 ** 2 * (fy * fy + fx * fx))
    hp = np.fft.irfft2(spec * smooth ** (-exp / 2.0) * high, s=(h, w)).astype(np.float32)
    loc = cv2.GaussianBlur(hp * hp, (0, 0), 3.0)
    return (hp / np.sqrt(loc + np.float32(1e-3 * float(loc.mean()) + 1e-12))).astype(np.float32)


_BANDS: dict[tuple[int, int], np.ndarray] = {}


def _band(ly: int, lx: int) -> np.ndarray:
    """Mask of the inner CCS columns (x-frequency 1 .. lx/2 - 1) inside [F_MIN, F_MAX]."""
    if (ly, lx) not in _BANDS:
        fy = np.fft.fftfreq(ly)[:, None]
        fx = (np.arange(1, lx // 2) / lx)[None, :]
        rad = np.hypot(fy, fx)
        _BANDS[(ly, lx)] = ((rad >= F_MIN) & (rad <= F_MAX)).astype(np.float32)
    return _BANDS[(ly, lx)]


def _even_dft_size(n: int) -> int:
    import cv2

    m = cv2.getOptimalDFTSize(n)
    while m % 2:
        m = cv2.getOptimalDFTSize(m + 1)
    return m


def _acf(r: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocorrelation of the spectrally whitened residual (circular; lag 0 at index 0).

    The power spectrum (zero-padded by ``max_lag``, so that the autocorrelation is not
    circular up to that lag) is divided by its local mean and restricted to the band
    where the pattern lives. A periodic pattern then shows as peaks at its lattice
    vectors. OpenCV's packed (CCS) real DFT is used for speed; the two packed columns
    (x-frequency 0 and Nyquist) are left out.
    """
    import cv2

    h, w = r.shape
    ly, lx = _even_dft_size(h + max_lag), _even_dft_size(w + max_lag)
    buf = np.zeros((ly, lx), np.float32)
    buf[:h, :w] = r - np.float32(r.mean())
    spec = cv2.dft(buf)
    inner = spec[:, 1:lx - 1].reshape(ly, lx // 2 - 1, 2)
    power = inner[..., 0] * inner[..., 0] + inner[..., 1] * inner[..., 1]
    bg = cv2.blur(power, (31, 31))
    bg += np.float32(1e-12 * float(bg.mean()) + 1e-30)
    white = power / bg
    white -= np.float32(1.0)
    white *= _band(ly, lx)
    packed = np.zeros((ly, lx), np.float32)
    packed[:, 1:lx - 1:2] = white
    return cv2.idft(packed, flags=cv2.DFT_REAL_OUTPUT)


def _lattice_vectors(radius: int, period: float) -> np.ndarray:
    """Lattice vectors ``(i, j) * period`` with ``|i|, |j| <= radius``, one of each +-v."""
    out = [(i, j) for i in range(0, radius + 1) for j in range(-radius, radius + 1)
           if i > 0 or j > 0]
    return np.array(out, dtype=np.float64) * period


def _acf_score(acf: np.ndarray, vecs: np.ndarray, ss: np.ndarray, aa: np.ndarray
               ) -> np.ndarray:
    """Sum of the autocorrelation at the lattice vectors scaled by ``s``, rotated by ``a``.

    ``vecs`` holds (x, y) vectors of the embedding frame; the detection frame sees
    ``s * R(a) @ v``. Returns an array of shape ``(len(ss), len(aa))``.
    """
    ly, lx = acf.shape
    cs, sn = np.cos(aa)[:, None], np.sin(aa)[:, None]
    vx = (cs * vecs[:, 0] - sn * vecs[:, 1])[None]  # (1, A, V)
    vy = (sn * vecs[:, 0] + cs * vecs[:, 1])[None]
    xx = ss[:, None, None] * vx
    yy = ss[:, None, None] * vy
    x0, y0 = np.floor(xx), np.floor(yy)
    tx, ty = (xx - x0).astype(np.float32), (yy - y0).astype(np.float32)
    x0, y0 = x0.astype(np.int64) % lx, y0.astype(np.int64) % ly
    x1, y1 = (x0 + 1) % lx, (y0 + 1) % ly
    v = (acf[y0, x0] * (1 - ty) * (1 - tx) + acf[y1, x0] * ty * (1 - tx)
         + acf[y0, x1] * (1 - ty) * tx + acf[y1, x1] * ty * tx)
    return v.sum(axis=2)


def lattice_candidates(r: np.ndarray, k: int) -> list[tuple[float, float]]:
    """The ``k`` best distinct (scale, angle) lattice candidates, refined; key-independent."""
    period = float(TILE)
    acf = _acf(r, int(4 * period))
    v_coarse, v_fine = _lattice_vectors(2, period), _lattice_vectors(3, period)
    lo, hi = SCALE_RANGE
    scales = np.exp(np.arange(math.log(lo), math.log(hi), 0.008))
    angles = np.deg2rad(np.arange(-ANGLE_RANGE_DEG, ANGLE_RANGE_DEG + 1e-9, 0.5))
    coarse = _acf_score(acf, v_coarse, scales, angles)
    order = np.argsort(coarse.ravel())[::-1]
    picked: list[tuple[float, float]] = []
    used: list[tuple[int, int]] = []
    fs0 = np.exp(np.linspace(-0.006, 0.006, 7))
    fa0 = np.deg2rad(np.linspace(-0.375, 0.375, 7))
    for idx in order:
        i, j = divmod(int(idx), angles.size)
        if any(abs(i - a) <= 2 and abs(j - b) <= 2 for a, b in used):
            continue
        used.append((i, j))
        fs, fa = scales[i] * fs0, angles[j] + fa0
        fine = _acf_score(acf, v_fine, fs, fa)
        a, b = divmod(int(np.argmax(fine)), fa.size)
        picked.append((float(fs[a]), float(fa[b])))
        if len(picked) == k:
            break
    return picked


def subpixel(zmap: np.ndarray, peak: tuple[int, int]) -> tuple[float, float]:
    """Parabolic interpolation of a cyclic correlation peak; offsets in [-0.5, 0.5]."""
    i, j = peak
    n0, n1 = zmap.shape
    out = []
    for a, b, c in ((zmap[(i - 1) % n0, j], zmap[i, j], zmap[(i + 1) % n0, j]),
                    (zmap[i, (j - 1) % n1], zmap[i, j], zmap[i, (j + 1) % n1])):
        den = a - 2.0 * b + c
        out.append(float(np.clip(0.5 * (a - c) / den, -0.5, 0.5)) if den < 0 else 0.0)
    return out[0], out[1]


def fold(r: np.ndarray, s: float, th: float, shift: tuple[float, float]) -> np.ndarray:
    """Undo scale ``s`` and rotation ``th``, then fold modulo the tile (sum of all tiles).

    Embedding-frame coordinates ``q`` (relative to the centre of the image, in working
    pixels) map to the detection frame as ``x = s R(th) (q + shift) + centre``; the
    output cell ``c`` sums the residual over all ``q = c (mod TILE)``. With the shift
    found by the pilot correlation, cell ``c`` collects tile cell ``c`` of the pattern.
    """
    import cv2

    h, w = r.shape
    ce = np.array([w // 2, h // 2], dtype=np.float64)  # integer centre
    sh = np.array([shift[1], shift[0]], dtype=np.float64)  # (x, y)
    cs, sn = math.cos(th), math.sin(th)
    a = s * np.array([[cs, -sn], [sn, cs]])  # acts on (x, y)
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)
    q = np.linalg.solve(a, (corners - ce).T).T - sh
    qmin = np.floor(q.min(axis=0) / TILE) * TILE
    out_w, out_h = (int(v) for v in np.ceil((q.max(axis=0) - qmin + 1) / TILE) * TILE)
    radius = 0.5 * math.hypot(h, w)
    if (abs(math.log(s)) * radius < 0.05 and abs(th) * radius < 0.05
            and np.allclose(sh, np.round(sh), atol=0.05)):
        # (almost) the identity: place the residual at an integer offset, no resampling
        ox, oy = (int(v) for v in np.round(-ce - sh - qmin))
        canvas = np.zeros((out_h + TILE, out_w + TILE), np.float32)
        canvas[oy:oy + h, ox:ox + w] = r
        return canvas.reshape(-1, TILE, canvas.shape[1] // TILE, TILE).sum(axis=(0, 2))
    # output pixel p samples the detection frame at a @ (p + qmin + sh) + ce
    m = np.hstack([a, (ce + a @ (qmin + sh))[:, None]])
    warped = cv2.warpAffine(r, m, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped.reshape(out_h // TILE, TILE, out_w // TILE, TILE).sum(axis=(0, 2))
