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
from typing import Any, NamedTuple

import numpy as np

__all__ = ["ANGLE_RANGE_DEG", "N_PEAKS", "SCALE_RANGE", "Geometry", "candidates", "coherence",
           "geometries", "refine", "register", "scan", "sync_frequencies",
           "sync_pattern"]

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
#: Coherent refinement: sub-pixel offsets tried (detection pixels, each axis), and the
#: (scale, angle) steps of the pattern search, coarse to fine.
OFFSETS = np.linspace(-1.0, 1.0, 9)
_LOCAL = np.stack(np.meshgrid(OFFSETS, OFFSETS, indexing="ij"), -1).reshape(-1, 2)
#: Coherent scan for centred crops: scales searched and their step (log).
SCAN_RANGE = (1.05, 2.25)
SCAN_STEP = 0.003
REFINE_STEPS = ((0.006, math.radians(0.3)), (0.002, math.radians(0.1)),
                (0.0007, math.radians(0.035)))


class Geometry(NamedTuple):
    """A geometry hypothesis: the embedding frame maps to the detection frame as ``x = s
    R(th) Fl (q - cc) + cd + offset`` (see :func:`register`)."""

    s: float
    th: float
    flip: bool
    offset: tuple[float, float] = (0.0, 0.0)


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


def _move(freqs: np.ndarray, s: Any, th: Any, flip: Any) -> np.ndarray:
    """The keyed frequencies as seen in the detection frame: ``f -> R(th) Fl f / s``, with
    ``s``, ``th`` and ``flip`` broadcast against each other; shape ``(..., P, 2)``."""
    s, th, flip = np.broadcast_arrays(np.asarray(s, np.float64), np.asarray(th, np.float64),
                                      np.asarray(flip, bool))
    fx = np.where(flip[..., None], -freqs[:, 0], freqs[:, 0])
    fy = freqs[:, 1]
    cs, sn, s = np.cos(th)[..., None], np.sin(th)[..., None], s[..., None]
    return np.stack([(cs * fx - sn * fy) / s, (sn * fx + cs * fy) / s], axis=-1)


def _bilinear(spec: np.ndarray, g: np.ndarray) -> np.ndarray:
    """A centred ``SPECTRUM``-point spectrum read at frequencies ``g`` (``(..., 2)`` as
    (x, y), cycles per pixel), bilinear between bins."""
    c = SPECTRUM // 2
    xx, yy = c + g[..., 0] * SPECTRUM, c + g[..., 1] * SPECTRUM
    x0, y0 = np.floor(xx), np.floor(yy)
    tx, ty = xx - x0, yy - y0
    x0 = np.clip(x0.astype(np.int64), 0, SPECTRUM - 2)
    y0 = np.clip(y0.astype(np.int64), 0, SPECTRUM - 2)
    return (spec[y0, x0] * (1 - ty) * (1 - tx) + spec[y0 + 1, x0] * ty * (1 - tx)
            + spec[y0, x0 + 1] * (1 - ty) * tx + spec[y0 + 1, x0 + 1] * ty * tx)


def _score(white: np.ndarray, freqs: np.ndarray, ss: np.ndarray, aa: np.ndarray,
           flip: bool) -> np.ndarray:
    """Sum of the whitened power at the peaks moved by each (scale, angle): ``(S, A)``."""
    return _bilinear(white, _move(freqs, ss[:, None], aa[None, :], flip)).sum(axis=2)


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


def _moved(freqs: np.ndarray, geos: list[Geometry]) -> np.ndarray:
    """:func:`_move` for each of ``geos``: ``(G, P, 2)``."""
    return _move(freqs, [g.s for g in geos], [g.th for g in geos], [g.flip for g in geos])


def _turned(v: np.ndarray, g: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``Re(sum_p v_p exp(-2 pi i g_p . t))`` - the template's match when the content moved
    by ``t`` - for the values ``v`` (``(G, P)``) at frequencies ``g`` (``(G, P, 2)``) and
    each offset ``t = centre + _LOCAL`` (``centre``: ``(G, 2)``): ``(G, len(_LOCAL))``.

    ``_LOCAL`` is the grid ``OFFSETS x OFFSETS``, so the exponential factors into one per
    axis: ``2 * len(OFFSETS)`` complex exponentials per frequency instead of
    ``len(OFFSETS) ** 2`` cosines and sines - the same values to rounding, and the scan,
    which reads 271 scales, 2.4x faster."""
    t = centre[:, None, :] + OFFSETS[None, :, None]  # (G, n, 2): each axis' offsets
    ex = np.exp(-2j * math.pi * t[:, :, None, 0] * g[:, None, :, 0])  # (G, n, P)
    ey = np.exp(-2j * math.pi * t[:, :, None, 1] * g[:, None, :, 1])
    c = np.einsum("gap,gbp->gab", v[:, None, :] * ex, ey).real
    return c.reshape(len(v), -1)


def _dtft(r: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``sum_x r(x) exp(2 pi i g_k . (x - centre))`` for each frequency ``g_k`` (rows of
    ``g``, cycles per pixel as (x, y)): separable, as two real float32 products."""
    h, w = r.shape
    px = np.outer(np.arange(w) - w // 2, 2 * math.pi * g[:, 0]).astype(np.float32)
    py = np.outer(np.arange(h) - h // 2, 2 * math.pi * g[:, 1]).astype(np.float32)
    m = np.ascontiguousarray(r, np.float32) @ np.concatenate([np.cos(px), np.sin(px)], 1)
    mc, ms = m[:, :len(g)], m[:, len(g):]
    cy, sy = np.cos(py), np.sin(py)
    re = np.sum(cy * mc - sy * ms, axis=0, dtype=np.float64)
    return re + 1j * np.sum(sy * mc + cy * ms, axis=0, dtype=np.float64)


def coherence(r: np.ndarray, freqs: np.ndarray, phases: np.ndarray, geos: list[Geometry]
              ) -> list[tuple[float, tuple[float, float]]]:
    """Phase-coherent correlation of the residual ``r`` with the sync template under each
    (scale, angle, mirror) of ``geos``, at its best sub-pixel offset (``OFFSETS`` around
    the geometry's own): ``[(c, offset)]``.

    It is the template's inner product with ``r`` - the Fourier transform of ``r`` at the
    moved frequencies, each turned by its keyed phase - so unlike the power spectrum that
    :func:`candidates` reads it depends on where the template sits, to a fraction of a
    pixel and of a degree. It uses the sync key only: under any hypothesis it is
    independent of the pilot."""
    g = _moved(freqs, geos)
    val = _dtft(r, g.reshape(-1, 2)).reshape(len(geos), -1) * np.exp(1j * phases)
    centre = np.array([geo.offset for geo in geos], np.float64)  # (G, 2)
    tt = _LOCAL[None] + centre[:, None]  # (G, T, 2)
    c = _turned(val, g, centre)
    j = np.argmax(c, axis=1)
    return [(float(c[i, k]), (float(tt[i, k, 0]), float(tt[i, k, 1])))
            for i, k in enumerate(j)]


def _locate(r: np.ndarray, freqs: np.ndarray, phases: np.ndarray, geo: Geometry
            ) -> tuple[float, float]:
    """The whole-pixel offset (within half the frame) at which the sync template under
    ``geo`` best matches ``r``: where a crop off centre moved the frame's centre."""
    h, w = r.shape
    g = _moved(freqs, [geo])[0]
    v = _dtft(r, g) * np.exp(1j * phases)
    tx, ty = np.arange(-(w // 2), w // 2 + 1.0), np.arange(-(h // 2), h // 2 + 1.0)
    a = np.exp(-2j * math.pi * np.outer(tx, g[:, 0]))  # (nx, P)
    b = np.exp(-2j * math.pi * np.outer(ty, g[:, 1]))  # (ny, P)
    c = np.real((b * v) @ a.T)  # (ny, nx)
    j = int(np.argmax(c))
    return float(tx[j % tx.size]), float(ty[j // tx.size])


def refine(r: np.ndarray, freqs: np.ndarray, phases: np.ndarray, geo: Geometry
           ) -> list[Geometry]:
    """Pattern search on (scale, angle, sub-pixel offset) for the largest :func:`coherence`,
    from ``geo`` as it is and, when that differs, from the whole-pixel offset
    :func:`_locate` finds (a crop off centre): one or two refined geometries. Both are
    kept: the template is a few sinusoids, so a wrong offset can match it nearly as
    well as the right one."""
    far = geo._replace(offset=_locate(r, freqs, phases, geo))
    out = [_climb(r, freqs, phases, g)[1] for g in ([geo] if far == geo else [geo, far])]
    same = len(out) == 2 and _near(*out, scale=1e-4, angle=1e-4, offset=0.1)
    return out[:1] if same else out


def _climb(r: np.ndarray, freqs: np.ndarray, phases: np.ndarray, geo: Geometry
           ) -> tuple[float, Geometry]:
    """Coarse to fine: at each of ``REFINE_STEPS`` the 3 x 3 grid of (scale, angle) steps
    around the current geometry, a quadratic fitted to its coherence, and a move to the
    fit's peak (within one step; to the best grid point when the fit has no peak)."""
    best_c, best = -math.inf, geo
    centre = geo
    uv = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]
    design = np.array([[1.0, a, b, a * a, b * b, a * b] for a, b in uv])
    for ds, da in REFINE_STEPS:
        geos = [centre._replace(s=centre.s * math.exp(a * ds), th=centre.th + b * da)
                for a, b in uv]
        res = coherence(r, freqs, phases, geos)
        cs = np.array([c for c, _ in res])
        j = int(np.argmax(cs))
        if cs[j] > best_c:
            best_c, best = float(cs[j]), geos[j]._replace(offset=res[j][1])
        q = np.linalg.lstsq(design, cs, rcond=None)[0]
        hess = np.array([[2 * q[3], q[5]], [q[5], 2 * q[4]]])
        if np.all(np.linalg.eigvalsh(hess) < 0):
            a, b = np.clip(np.linalg.solve(hess, -q[1:3]), -1.0, 1.0)
        else:
            a, b = uv[j]
        centre = geos[4]._replace(s=geos[4].s * math.exp(a * ds), th=geos[4].th + b * da,
                                  offset=res[j][1])
    (c, t), = coherence(r, freqs, phases, [centre])
    return (c, centre._replace(offset=t)) if c > best_c else (best_c, best)


def scan(r: np.ndarray, freqs: np.ndarray, phases: np.ndarray, n: int) -> list[Geometry]:
    """The ``n`` best scales for a centred, upright, unmirrored enlargement (a crop about
    the centre, possibly resized) by the template's phase-coherent correlation along the
    whole scale range (``SCAN_RANGE`` in steps of ``SCAN_STEP``): the Fourier transform of
    the residual (zero-padded to ``SPECTRUM``) read at the moved frequencies, turned by the
    keyed phases and by each of ``OFFSETS``. Coherent, it finds the template where the
    power spectrum that :func:`candidates` reads does not rise above the picture's own (a
    weak sync after a small crop)."""
    from scipy import fft

    h, w = r.shape
    buf = np.zeros((SPECTRUM, SPECTRUM), np.complex64)
    buf[:min(h, SPECTRUM), :min(w, SPECTRUM)] = r[:SPECTRUM, :SPECTRUM]
    # centred: spec at k is sum r exp(-2 pi i k . x / SPECTRUM)
    spec = np.fft.fftshift(fft.fft2(buf))
    scales = np.exp(np.arange(math.log(SCAN_RANGE[0]), math.log(SCAN_RANGE[1]), SCAN_STEP))
    g = _move(freqs, scales[:, None], 0.0, False)[:, 0]  # (S, P, 2)
    # sum r exp(+2 pi i g . (x - centre)) is the transform at -g, turned to the centre
    v = _bilinear(spec, -g) * np.exp(
        1j * (phases[None] - 2 * math.pi * (g @ np.array([w // 2, h // 2]))))
    coh = _turned(v, g, np.zeros((len(scales), 2))).max(-1)
    peaks = [i for i in range(1, len(coh) - 1) if coh[i] >= max(coh[i - 1], coh[i + 1])]
    return [Geometry(float(scales[i]), 0.0, False)
            for i in sorted(peaks, key=lambda i: -coh[i])[:n]]


def geometries(r: np.ndarray, freqs: np.ndarray, phases: np.ndarray, k: int, refined: int,
               scanned: int) -> list[Geometry]:
    """The geometry hypotheses the sync gives besides the identity: the ``k`` best
    :func:`candidates` (those within 0.3% and 0.2 degrees of the identity dropped), the
    ``refined`` of them with the highest :func:`coherence` first and :func:`refine`-d (one
    or two geometries each), then the ``scanned`` best of :func:`scan` climbed from there
    (unless a refined candidate is already that geometry), then the other candidates as
    they are."""
    raw = [Geometry(s, th, flip) for s, th, flip in candidates(r, freqs, k)
           if abs(math.log(s)) >= 0.003 or abs(th) >= math.radians(0.2)]
    coh = coherence(r, freqs, phases, raw) if raw else []
    order = sorted(range(len(raw)), key=lambda i: -coh[i][0])
    fine = [g for i in order[:refined] for g in refine(r, freqs, phases, raw[i])]
    for geo in scan(r, freqs, phases, scanned) if scanned else []:
        got = _climb(r, freqs, phases, geo)[1]
        if not any(_near(got, f) for f in fine):
            fine.append(got)
    return fine + [raw[i] for i in order[refined:]]


def _near(a: Geometry, b: Geometry, *, scale: float = 1e-3,
          angle: float = math.radians(0.05), offset: float = 0.25) -> bool:
    """Whether two hypotheses agree within ``scale`` (log), ``angle`` (radians) and
    ``offset`` (pixels); the defaults are what the pilot could not tell apart."""
    return (a.flip == b.flip and abs(math.log(a.s / b.s)) < scale and abs(a.th - b.th) < angle
            and max(abs(a.offset[0] - b.offset[0]), abs(a.offset[1] - b.offset[1])) < offset)


def register(img: np.ndarray, geo: Geometry, size: int, *, replicate: bool = False
             ) -> np.ndarray:
    """Resample a detection-frame array into a ``size x size`` embedding-frame canvas.

    The embedding frame maps to the detection frame as ``x = s R(th) Fl (q - cc) + cd +
    offset`` (``geo``; ``Fl`` mirrors x when ``flip``; ``cc``, ``cd`` the integer canvas
    and image centres; ``offset`` in detection pixels, x and y), so the canvas holds the
    content upright, unscaled and unmirrored, centred. Outside the image the canvas is 0
    (or the nearest edge value with ``replicate``).
    """
    import cv2

    h, w = img.shape
    cs, sn = math.cos(geo.th), math.sin(geo.th)
    a = geo.s * np.array([[cs, -sn], [sn, cs]])
    if geo.flip:
        a = a @ np.array([[-1.0, 0.0], [0.0, 1.0]])
    cc = np.array([size // 2, size // 2], dtype=np.float64)
    # integer centres: the identity is exact
    cd = np.array([w // 2 + geo.offset[0], h // 2 + geo.offset[1]])
    m = np.hstack([a, (cd - a @ cc)[:, None]])
    border = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=border, borderValue=0)
