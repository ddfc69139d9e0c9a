"""guardrail's own image watermark (scheme ``guardrail-image``, version 1).

Design
------
*Working frame.* The luminance is resampled, keeping the aspect ratio, to an area of
``WORK_AREA = 384 * 384`` pixels. Resizing the image changes nothing in this frame, and
any crop becomes a uniform change of scale (by ``sqrt(old_area / new_area)``) plus a
translation. Images smaller than ``NATIVE_AREA`` (192 x 192) pixels are marked at their
own resolution instead (resampling would lose most of the pattern).

*Pattern.* A keyed ``48 x 48`` tile is repeated over the working frame. A quarter of its
cells (the keyed *pilot*) hold i.i.d. standard normal values; the other cells carry the
186 bits of the payload codeword (:class:`~guardrail.watermark.ecc.PayloadCode`: 32-bit
id, CRC-24, rate-1/3 convolutional code), each bit spread over 9 or 10 cells with keyed
signs, after XOR with a keyed scrambling sequence. The pattern is multiplied by a
perceptual mask (local activity of the luminance with a floor, capped: more goes into
texture and edges than into flat areas), upsampled to the image size and added to R, G
and B alike (a change of luminance only; chroma and alpha are untouched), scaled so that
its RMS is ``strength`` grey levels: PSNR about ``20 log10(255 / strength)`` dB (41.2 dB
by default; more where values clip at 0 or 255). A fixed random dither before rounding to
8 bits keeps sub-level changes in flat areas.

*Synchronisation.* The repeated tile makes the whitened luminance periodic. The detector
takes the autocorrelation of the spectrally whitened high-pass residual (one real DFT and
its inverse) and scores every scale in ``SCALE_RANGE`` and rotation in
``+-ANGLE_RANGE_DEG`` by the autocorrelation summed at the tile-lattice vectors
``(i, j) * TILE`` with ``|i|, |j| <= 2`` (12, one of each +-pair), then refines the
``SYNC_CANDIDATES`` best distinct lattices on a finer grid with ``|i|, |j| <= 3`` (24). This step uses the image only, never the key. For each candidate the detector
resamples the residual to undo scale and rotation, folds it modulo the tile (sums all
tiles) and finds the translation as the peak of the circular cross-correlation with the
pilot (sub-pixel refined for decoding).

*Decision.* For one fixed shift, the normalised pilot correlation
``z = sum(g * F) / sqrt(sum(F**2))`` (``F`` the folded residual on the pilot cells) is
exactly standard normal when the image does not carry this key's mark: the pilot values
``g`` are i.i.d. N(0, 1), drawn from the key, independent of the image and of the
key-independent synchronisation. The detector tries all ``48 * 48`` shifts of each
candidate, so the pilot p-value is the Bonferroni bound ``n_tests * Q(z_max)`` with
``n_tests = candidates * 48**2`` (9216, or 11520 for small images, which also get the
native-frame hypothesis). The payload is decoded from soft values (Viterbi) and accepted
only when its CRC matches; because the codeword is scrambled with a keyed uniform
sequence, an image without the mark decodes to a uniformly random message and passes the
CRC with probability exactly ``2**-24`` per decode attempt (at most ``MAX_DECODES``
attempts). The reported p-value combines both bounds (see
:meth:`GuardrailImageWatermark.analyse`) and ``detected`` is ``p_value <= fpr``.

The key (any non-empty bytes; 32 random bytes recommended) seeds every keyed choice
through HMAC-SHA256; it is never logged or put into results. Changing any constant below
or in :mod:`guardrail.watermark._image_sync` changes the marks: bump ``VERSION``.

Limits
------
* A periodic mark can be estimated by averaging the tiles of a marked image and then
  removed, or copied onto another image, by anyone holding a marked image (no key
  needed). Rotations beyond ``ANGLE_RANGE_DEG``, flips, changes of aspect ratio and crops
  beyond ``SCALE_RANGE`` are not searched.
* Documents (large saturated white areas) carry the mark only where there is ink;
  JPEG at quality 50 or brightening removes it there.
* Below about 128 x 128 pixels the mark is embedded but often not found, and images
  marked at their own (small) resolution do not survive resizing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .._types import Artifact
from ._common import AnalysisBase, ImageScheme, add_luma, dither, norm_shape, work_luma
from ._image_sync import TILE, fold, lattice_candidates, subpixel, whiten
from .base import CannotWatermark

__all__ = ["GuardrailImageWatermark", "ImageAnalysis", "MIN_SIDE"]

SCHEME = "guardrail-image"
VERSION = "1"

#: Smallest accepted image side, in pixels.
MIN_SIDE = 64
#: Images with fewer pixels than this are marked at their own resolution (resampling them
#: to the working frame would lose most of the pattern).
NATIVE_AREA = 192 * 192
#: Working frame area (pixels); the tile side is ``TILE`` working pixels.
WORK_AREA = 384 * 384
#: Fraction of tile cells that carry the pilot.
PILOT_FRACTION = 0.25
#: Lattice candidates tried with the key (counted in the p-value).
SYNC_CANDIDATES = 4
#: Most decode attempts per detection (counted in the p-value) and the pilot z needed
#: before a candidate is decoded.
MAX_DECODES = 4
DECODE_MIN_Z = 4.5
#: Perceptual mask: floor (grey levels of local activity) and cap (times the RMS).
MASK_FLOOR = 2.0
MASK_CAP = 3.0


@dataclass(frozen=True)
class ImageAnalysis(AnalysisBase):
    """Everything :meth:`GuardrailImageWatermark.analyse` found (diagnostics; no key).

    ``z`` to ``angle_deg`` as in :class:`~guardrail.watermark._common.AnalysisBase`: here
    over all lattice candidates and shifts, the geometry that of the best candidate's
    lattice (angle counter-clockwise), ``p_value`` as in
    :meth:`GuardrailImageWatermark.analyse`.

    Attributes
    ----------
    shift : tuple of float
        Translation of the tile (working pixels) of the best candidate.
    soft : numpy.ndarray or None
        De-scrambled soft values of the codeword at the best candidate (positive = 1).
    n_candidates, n_decodes : int
        Candidates tried and decode attempts made.
    """

    shift: tuple[float, float] = (0.0, 0.0)
    soft: np.ndarray | None = field(default=None, repr=False)
    n_candidates: int = 0
    n_decodes: int = 0


def _check_image(content: object, scheme: str = SCHEME, *, aspect: bool = True) -> str:
    """Validate an image array; return its kind (``gray``, ``rgb``, ``rgba``). ``scheme``:
    the scheme the errors name; ``aspect``: also this scheme's limit on the aspect ratio
    (a scheme with its own limit checks it itself)."""
    if not isinstance(content, np.ndarray):
        raise CannotWatermark(f"image content must be a numpy array, got "
                              f"{type(content).__name__}")
    if content.ndim == 2:
        kind = "gray"
    elif content.ndim == 3 and content.shape[2] == 3:
        kind = "rgb"
    elif content.ndim == 3 and content.shape[2] == 4:
        kind = "rgba"
    else:
        raise CannotWatermark(f"image must be HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA), "
                              f"got shape {content.shape}")
    if content.dtype != np.uint8:
        raise CannotWatermark(f"image must be uint8 (8 bits per channel), got "
                              f"{content.dtype}; convert it first")
    h, w = content.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise CannotWatermark(f"image is {w}x{h} pixels; {scheme} needs at least "
                              f"{MIN_SIDE}x{MIN_SIDE}")
    hw, ww = _norm_shape(h, w)
    if aspect and min(hw, ww) < TILE:
        raise CannotWatermark(f"image aspect ratio {w}x{h} is too extreme for {scheme} "
                              f"(at most {WORK_AREA // TILE ** 2}:1)")
    return kind


def _norm_shape(h: int, w: int) -> tuple[int, int]:
    """Shape of the normalised working frame: area ``WORK_AREA``, same aspect ratio."""
    return norm_shape(h, w, WORK_AREA)


def _work_shape(h: int, w: int) -> tuple[int, int]:
    """Shape of the frame an image of ``h x w`` is marked in (native when small)."""
    return (h, w) if h * w < NATIVE_AREA else _norm_shape(h, w)


class GuardrailImageWatermark(ImageScheme):
    """guardrail's default image watermark (scheme ``guardrail-image``).

    Parameters
    ----------
    key : bytes
        Secret key; every pattern derives from it. Never logged or returned.
    fpr : float
        False-positive rate at which :meth:`detect` decides ``detected``.
    payload_bits : int
        Size of the payload id, 1..32 bits (the code always carries 32; smaller ids are
        zero-extended, and a decoded id that does not fit is not reported).
    strength : float
        RMS of the luminance change in grey levels; 2.2 gives a PSNR of about 41 dB.

    Examples
    --------
    >>> wm = GuardrailImageWatermark(b"secret key bytes", fpr=1e-4)  # doctest: +SKIP
    >>> marked = wm.embed(artifact, 0xC0FFEE)  # doctest: +SKIP
    >>> wm.detect(marked).payload  # doctest: +SKIP
    '00c0ffee'
    """

    scheme = SCHEME
    version = VERSION

    def __init__(self, key: bytes, *, fpr: float = 1e-4, payload_bits: int = 32,
                 strength: float = 2.2) -> None:
        super().__init__(key, fpr=fpr, payload_bits=payload_bits, strength=strength)

    def _check(self, content: object) -> str:
        return _check_image(content)

    # ------------------------------------------------------------------ keyed layout
    @cached_property
    def _layout(self) -> dict[str, np.ndarray]:
        cells = TILE * TILE
        n_pilot = int(round(cells * PILOT_FRACTION))
        perm = self._rng("cells").permutation(cells)
        pilot_idx, pay_idx = perm[:n_pilot], perm[n_pilot:]
        n = self._code.n_coded
        pilot = np.zeros(cells, dtype=np.float64)
        pilot[pilot_idx] = self._rng("pilot").standard_normal(n_pilot)
        pmask = np.zeros(cells, dtype=np.float64)
        pmask[pilot_idx] = 1.0
        pilot, pmask = pilot.reshape(TILE, TILE), pmask.reshape(TILE, TILE)
        return {
            "pilot": pilot,
            "pilot_fft": np.conj(np.fft.rfft2(pilot)),
            "mask_fft": np.conj(np.fft.rfft2(pmask)),
            "pay_idx": pay_idx,
            "bit_of": np.arange(pay_idx.size) % n,
            "signs": self._rng("signs").choice([-1.0, 1.0], size=pay_idx.size),
            "scramble": self._rng("scramble").integers(0, 2, size=n).astype(np.uint8),
        }

    def _tile(self, payload: int) -> np.ndarray:
        lay = self._layout
        word = self._code.encode(payload) ^ lay["scramble"]
        tile = lay["pilot"].ravel().copy()
        tile[lay["pay_idx"]] = lay["signs"] * (2.0 * word[lay["bit_of"]] - 1.0)
        return tile.reshape(TILE, TILE)

    # ------------------------------------------------------------------ embed
    def embed(self, artifact: Artifact, payload: int) -> Artifact:
        """Return a new artifact whose image carries ``payload``.

        Accepts ``HxW`` grey, ``HxWx3`` RGB and ``HxWx4`` RGBA ``uint8`` arrays (alpha is
        kept unchanged), at least ``MIN_SIDE`` pixels on each side.

        Raises
        ------
        CannotWatermark
            The content is not an image this scheme accepts, or the payload does not fit
            (the message says which).
        """
        import cv2

        payload, kind, content = self._image_input(artifact, payload)
        h, w = content.shape[:2]
        yw = work_luma(content, kind, _work_shape(h, w))
        hw, ww = yw.shape
        tile = self._tile(payload).astype(np.float32)
        pattern = np.tile(tile, (-(-hw // TILE), -(-ww // TILE)))[:hw, :ww]
        delta = pattern * _mask(yw)
        if (hw, ww) != (h, w):
            delta = cv2.resize(delta, (w, h), interpolation=cv2.INTER_LINEAR)
        flat = delta.ravel()
        rms = math.sqrt(float(np.dot(flat, flat)) / flat.size)
        delta *= self.strength / max(rms, 1e-6)
        delta += dither(h, w)  # fixed: keeps sub-level changes, embed is repeatable
        out = add_luma(content, delta, kind)
        return artifact.evolve(content=out, data=None, media_type=None)

    # ------------------------------------------------------------------ detect
    def analyse(self, content: np.ndarray, *, soft: bool = True) -> ImageAnalysis:
        """Run the detector on an image array and return the details.

        The p-value is an upper bound on the probability, for an image that does not
        carry this key's mark, of a result at least this extreme:

        * ``p_pilot = min(1, SYNC_CANDIDATES * TILE**2 * Q(z))`` (each tested z is exactly
          N(0, 1) under that hypothesis; Bonferroni over all tests);
        * ``p_crc = MAX_DECODES * 2**-24`` (each decode passes the CRC with probability
          exactly ``2**-24``);
        * ``p = min(p_pilot, p_crc)`` when a decode passed its CRC, else
          ``min(1, p_pilot + p_crc)``.

        With ``soft=False`` the soft codeword values are only returned when they were
        computed anyway (saves a resampling on unmarked images).

        Raises
        ------
        CannotWatermark
            The array is not an image this scheme can check.
        """
        kind = _check_image(content)
        h, w = content.shape[:2]
        r = whiten(work_luma(content, kind, _norm_shape(h, w)))
        cands = [(r, s, th) for s, th in lattice_candidates(r, SYNC_CANDIDATES)]
        if h * w < NATIVE_AREA:
            # small images are marked at their own resolution: also try that frame, with
            # the translation search only (listed first: the likely hit for small images)
            cands.insert(0, (whiten(work_luma(content, kind, (h, w))), 1.0, 0.0))
        z_max = -math.inf
        where: tuple[np.ndarray, float, float, tuple[float, float]] | None = None
        values: np.ndarray | None = None  # its soft codeword values, when computed
        decoded: int | None = None
        n_dec = 0
        for r, s, th in cands:
            z, peak, zmap = self._pilot_z(fold(r, s, th, (0.0, 0.0)))
            dy, dx = subpixel(zmap, peak)
            shift = (peak[0] + dy, peak[1] + dx)
            vals = None
            if z >= DECODE_MIN_Z and decoded is None and n_dec < MAX_DECODES:
                vals = self._soft(fold(r, s, th, shift))
                n_dec += 1
                decoded = self._code.decode(vals).value
            if decoded is not None and vals is not None:
                where, values = (r, s, th, shift), vals  # the candidate that decoded
            elif z > z_max and decoded is None:
                where, values = (r, s, th, shift), vals
            z_max = max(z_max, z)
            if decoded is not None and z_max > 8.0:
                break  # conclusive; stopping early only lowers the work, not the bound
        if where is None:  # cannot happen: the search always returns candidates
            return ImageAnalysis(z=0.0, p_value=1.0, p_pilot=1.0, payload=None)
        r, s, th, shift = where
        p, p_pilot = self._p_values(len(cands) * TILE * TILE, z_max, decoded, MAX_DECODES)
        if values is None and soft:
            values = self._soft(fold(r, s, th, shift))
        return ImageAnalysis(z=float(z_max), p_value=float(p), p_pilot=float(p_pilot),
                             payload=decoded, scale=float(s),
                             angle_deg=float(math.degrees(th)), shift=shift, soft=values,
                             n_candidates=len(cands), n_decodes=n_dec)

    def _pilot_z(self, F: np.ndarray) -> tuple[float, tuple[int, int], np.ndarray]:
        """Pilot z-score for every circular shift of the folded tile ``F``."""
        lay = self._layout
        both = np.fft.rfft2(np.stack([F, F * F]))
        both[0] *= lay["pilot_fft"]
        both[1] *= lay["mask_fft"]
        num, den = np.fft.irfft2(both, s=F.shape)
        ok = den > 1e-9 * max(float(den.max()), 1e-30)
        zmap = np.where(ok, num / np.sqrt(np.where(ok, den, 1.0)), 0.0)
        k = int(np.argmax(zmap))
        return float(zmap.flat[k]), (k // TILE, k % TILE), zmap

    def _soft(self, F: np.ndarray) -> np.ndarray:
        """De-scrambled soft values of the codeword from an aligned folded tile."""
        lay = self._layout
        vals = F.ravel()[lay["pay_idx"]] * lay["signs"]
        soft = np.bincount(lay["bit_of"], weights=vals, minlength=self._code.n_coded)
        return np.where(lay["scramble"] == 1, -soft, soft)


def _mask(yw: np.ndarray) -> np.ndarray:
    """Perceptual mask at working resolution: local activity with a floor, unit RMS."""
    import cv2

    hp = yw - cv2.GaussianBlur(yw, (0, 0), 1.0)
    act = np.sqrt(cv2.GaussianBlur(hp * hp, (0, 0), 2.0))
    m = np.sqrt(act * act + MASK_FLOOR ** 2)
    m = np.minimum(m, MASK_CAP * float(np.sqrt(np.mean(m * m))))
    return m / float(np.sqrt(np.mean(m * m)))
