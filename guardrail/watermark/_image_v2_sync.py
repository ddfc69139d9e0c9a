"""Geometry of ``guardrail-image-v2``: the low-energy sync template and the registration warp.

The sync template is a sum of ``N_PEAKS`` keyed 2-D sinusoids (keyed frequencies, angles
and phases) at a small share of the mark's power. It carries no payload and takes no part
in the detection statistic; it only tells the detector the scale, rotation and mirroring
the image went through. Its energy sits in a few frequencies, so its peaks stand far above
the image's own spectrum once that is whitened. A rotation ``R``, scale ``s`` and mirror
``Fl`` of the image move a frequency ``f`` to ``R Fl f / s``: the detector scores every
(scale, angle, mirror) hypothesis by the whitened power at the moved peak positions (coarse
grid on a smoothed spectrum, then refined), which needs the key (the frequencies) but
nothing else. The keyed frequencies are not on a lattice, so a scaled or mirrored
hypothesis does not line up with a false one.

An attacker can find the peaks in the spectrum of a marked image and notch them out (or
copy them): that defeats the geometric search only; see docs/WATERMARKS.md.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["ANGLE_RANGE_DEG", "N_PEAKS", "SCALE_RANGE", "candidates", "register",
           "sync_frequencies", "sync_pattern"]

#: Keyed sinusoids in the sync template and their radial frequency band (cycles per
#: working pixel).
N_PEAKS = 8
F_BAND = (0.2, 0.36)
#: Scales searched (content enlarged by s > 1: a crop keeping a quarter of the area is 2).
SCALE_RANGE = (0.8, 2.25)
#: Rotations searched (degrees, either way).
ANGLE_RANGE_DEG = 16.0
#: Zero-padded spectrum size.
SPECTRUM = 512


def sync_frequencies(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Keyed frequency vectors ``(N_PEAKS, 2)`` as (fx, fy) and phases, from ``rng``.

    Angles are spread over the half-plane (one per sector of ``180 / N_PEAKS`` degrees, at
    a keyed position inside it), so that no two peaks can be confused by a rotation in
    range, and radii are keyed inside ``F_BAND``.
    """
    sector = math.pi / N_PEAKS
    ang = (np.arange(N_PEAKS) + rng.uniform(0.2, 0.8, N_PEAKS)) * sector
    rad = rng.uniform(F_BAND[0], F_BAND[1], N_PEAKS)
    freqs = np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    return freqs, rng.uniform(0.0, 2.0 * math.pi, N_PEAKS)


def sync_pattern(freqs: np.ndarray, phases: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The sync template on a frame of ``shape`` (rows, columns), unit RMS, float32.

    Coordinates are relative to the frame centre ``(w // 2, h // 2)``, the point the
    detector's registration keeps fixed.
    """
    h, w = shape
    x = (np.arange(w) - w // 2).astype(np.float64)
    y = (np.arange(h) - h // 2).astype(np.float64)
    out = np.zeros((h, w), np.float64)
    for (fx, fy), ph in zip(freqs, phases, strict=True):
        # cos(a + b) with a = 2 pi fx x + ph, b = 2 pi fy y: two outer products
        ax, ay = 2 * math.pi * fx * x + ph, 2 * math.pi * fy * y
        out += np.outer(np.cos(ay), np.cos(ax)) - np.outer(np.sin(ay), np.sin(ax))
    return (out * math.sqrt(2.0 / len(freqs))).astype(np.float32)


def _white_spectrum(r: np.ndarray) -> np.ndarray:
    """Power spectrum of the windowed residual (zero-padded, centred), whitened by its
    local mean."""
    import cv2

    h, w = r.shape
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    buf = np.zeros((SPECTRUM, SPECTRUM), np.float32)
    hh, ww = min(h, SPECTRUM), min(w, SPECTRUM)
    buf[:hh, :ww] = ((r - np.float32(r.mean())) * win)[:hh, :ww]
    half = np.fft.rfft2(buf)
    half = (half.real ** 2 + half.imag ** 2).astype(np.float32)
    n = SPECTRUM
    # the other half of a real signal's spectrum: P[k1, k2] = P[-k1, -k2]
    rest = half[(-np.arange(n)) % n][:, 1:n // 2][:, ::-1]
    spec = np.fft.fftshift(np.concatenate([half, rest], axis=1))
    bg = cv2.blur(spec, (25, 25)) + np.float32(1e-12 * float(spec.mean()) + 1e-30)
    return spec / bg - np.float32(1.0)


def _score(white: np.ndarray, freqs: np.ndarray, ss: np.ndarray, aa: np.ndarray,
           flip: bool) -> np.ndarray:
    """Sum of the whitened power at the peaks moved by each (scale, angle): ``(S, A)``."""
    f = freqs * np.array([-1.0, 1.0]) if flip else freqs
    cs, sn = np.cos(aa)[:, None], np.sin(aa)[:, None]
    fx = (cs * f[:, 0] - sn * f[:, 1])[None] / ss[:, None, None]  # (S, A, P)
    fy = (sn * f[:, 0] + cs * f[:, 1])[None] / ss[:, None, None]
    c = SPECTRUM // 2
    xx, yy = c + fx * SPECTRUM, c + fy * SPECTRUM
    x0, y0 = np.floor(xx), np.floor(yy)
    tx, ty = xx - x0, yy - y0
    x0 = np.clip(x0.astype(np.int64), 0, SPECTRUM - 2)
    y0 = np.clip(y0.astype(np.int64), 0, SPECTRUM - 2)
    v = (white[y0, x0] * (1 - ty) * (1 - tx) + white[y0 + 1, x0] * ty * (1 - tx)
         + white[y0, x0 + 1] * (1 - ty) * tx + white[y0 + 1, x0 + 1] * ty * tx)
    return v.sum(axis=2)


def candidates(r: np.ndarray, freqs: np.ndarray, k: int) -> list[tuple[float, float, bool]]:
    """The ``k`` best distinct (scale, angle in radians, mirrored) hypotheses, refined."""
    import cv2

    white = _white_spectrum(r)
    smooth = cv2.blur(white, (3, 3))
    lo, hi = SCALE_RANGE
    scales = np.exp(np.arange(math.log(lo), math.log(hi), 0.01))
    angles = np.deg2rad(np.arange(-ANGLE_RANGE_DEG, ANGLE_RANGE_DEG + 1e-9, 0.6))
    coarse = [_score(smooth, freqs, scales, angles, flip) for flip in (False, True)]
    flat = np.concatenate([c.ravel() for c in coarse])
    order = np.argsort(flat)[::-1]
    n_sa = scales.size * angles.size
    picked: list[tuple[float, float, bool]] = []
    used: list[tuple[int, int, int]] = []
    fs0 = np.exp(np.linspace(-0.006, 0.006, 13))
    fa0 = np.deg2rad(np.linspace(-0.36, 0.36, 13))
    for idx in order[: 60 * k]:
        fl, rest = divmod(int(idx), n_sa)
        i, j = divmod(rest, angles.size)
        if any(fl == c and abs(i - a) <= 3 and abs(j - b) <= 3 for c, a, b in used):
            continue
        used.append((fl, i, j))
        fs, fa = scales[i] * fs0, angles[j] + fa0
        fine = _score(white, freqs, fs, fa, bool(fl))
        a, b = divmod(int(np.argmax(fine)), fa.size)
        picked.append((float(fs[a]), float(fa[b]), bool(fl)))
        if len(picked) == k:
            break
    return picked


def register(img: np.ndarray, s: float, th: float, flip: bool, size: int, *,
             replicate: bool = False) -> np.ndarray:
    """Resample a detection-frame array into a ``size x size`` embedding-frame canvas.

    The embedding frame maps to the detection frame as ``x = s R(th) Fl (q - cc) + cd``
    (``Fl`` mirrors x when ``flip``; ``cc``, ``cd`` the integer canvas and image centres),
    so the canvas holds the content upright, unscaled and unmirrored, centred. Outside the
    image the canvas is 0 (or the nearest edge value with ``replicate``).
    """
    import cv2

    h, w = img.shape
    cs, sn = math.cos(th), math.sin(th)
    a = s * np.array([[cs, -sn], [sn, cs]])
    if flip:
        a = a @ np.array([[-1.0, 0.0], [0.0, 1.0]])
    cc = np.array([size // 2, size // 2], dtype=np.float64)
    cd = np.array([w // 2, h // 2], dtype=np.float64)  # integer centres: identity is exact
    m = np.hstack([a, (cd - a @ cc)[:, None]])
    border = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=border, borderValue=0)
