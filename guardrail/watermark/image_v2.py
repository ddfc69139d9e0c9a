"""guardrail's image watermark, version 2 (scheme ``guardrail-image-v2``).

Why a version 2
---------------
Version 1 (``guardrail-image``) repeats one keyed tile over the image. Averaging the
high-pass residual of a single marked image over the tile positions recovers that tile,
so anyone holding one marked image can copy the mark onto a real photo or subtract it -
no key needed. Version 2 leaves nothing of the kind to average.

Design
------
*Working frame.* As in v1: the luminance resampled, keeping the aspect ratio, to an area
of ``WORK_AREA`` (256 x 256) pixels; the mark is made there, upsampled to the image and
added to R, G and B alike.

*Payload pattern: keyed, non-periodic, bound to the content.* The key draws a
``TORUS x TORUS`` field (384 x 384, larger than the working frame of any image up to an
aspect ratio of 2.25:1, so nothing repeats inside an image): a pilot ``g`` of i.i.d.
N(0, 1) values plus, on every cell, a keyed +-1 carrying one of the 186 bits of the
payload codeword (:class:`~guardrail.watermark.ecc.PayloadCode`, scrambled with a keyed
sequence). Before it is added, this field is multiplied cell by cell by a **content sign
field** ``c(x) = sign((k * L)(x))``: ``L`` is the working luminance blurred (sigma
``SIGMA_L``) and ``k`` a keyed ``KERNEL x KERNEL`` filter with no response to constant
levels or linear ramps. ``c`` changes sign every few pixels, is the same in the marked
image and in any processed copy of it (it is made of coarse structure that JPEG, noise,
blur and resizing leave alone), differs between different pictures, and cannot be
computed without the key. The pattern ``g * c`` therefore differs from image to image:

* averaging residuals over many marked images of one key converges to zero;
* a pattern estimated from one (or ten) marked images and added to another photo meets,
  in that photo, a content sign field unrelated to its own: its correlation with what
  the detector looks for is a sum of terms of random sign (measured: the copy attack,
  docs/ROBUSTNESS.md);
* subtracting an estimate needs the pattern itself, i.e. the key.

*Spectral shaping.* In an image u times the working frame's side the pattern reaches 1/(2u)
cycles per pixel, an octave that compression after a blur or downscale removes at u <= 2;
so it is low-passed there (``SHAPE_SIGMA``, fading to none at u = 4; same power). The
detector is unchanged: marks made before the shaping are read alike.

*Synchronisation: a separate low-energy sync template.* ``SYNC_SHARE`` of the mark's power
is a sum of keyed sinusoids (:mod:`guardrail.watermark._image_v2_sync`). It carries no
payload and plays no part in the decision; its peaks in the whitened power spectrum give
the scale (crops to 25% of the area, resizes), rotation (+-``ANGLE_RANGE_DEG``) and mirror
candidates, and the ``REFINED`` best of them are refined by its phase-coherent
correlation to a fraction of a pixel (sub-pixel offset included); a coherent scan of the
scale axis adds ``SCANNED`` more for centred crops. Notching it out or copying it changes
only the geometric search: the unchanged geometry and its mirror are always tried.

*Detection.* For each geometry hypothesis - the identity, its mirror and the sync
candidates - the residual (spectrally whitened; smoothed for crops, ``CROP_SCALE``) and
the blurred luminance are resampled into the embedding frame, the content sign field is
recomputed there with the key (soft: a ramp over a dead zone set higher than the
embedder's, ``DETECT_DEAD``, so that pixels a copied ghost could tip do not count), and
the weighted residual ``v`` is correlated with the pilot at every circular shift of
the torus (one FFT). For a fixed hypothesis and shift, ``z = sum(v * g) / sqrt(sum(v**2))``
is exactly standard normal for an image that does not carry this key's mark (``g`` is
i.i.d. N(0, 1), drawn from the key, independent of the image and of everything computed
from it). Two families of tests are made: the shifts within ``NEAR`` of where the pattern
sits in an image that was not cropped off centre (resizing, compression, filtering,
rotations and crops about the centre keep it there), ``hypotheses * (2 NEAR + 1)**2``
tests, and every shift of the torus, ``hypotheses * TORUS**2`` tests. The pilot p-value is
a weighted Bonferroni bound over both families (``NEAR_WEIGHT`` of the rate near) and all
hypotheses (``IDENTITY_WEIGHT`` for the identity and its mirror, the most common case):
an uncropped image needs z of about 4.6 instead of 6.6 at the default FPR. The payload is
decoded at the best shift (Viterbi, then list Viterbi of ``list_size`` paths; soft values
weighting each cell by its local reliability, then the plain sum) and accepted only with a
matching CRC-24 (``2**-24`` per check on unmarked content; at most ``2 MAX_DECODES *
list_size`` checks, all counted). The p-value combines both bounds as in v1; ``detected``
is ``p_value <= fpr`` and the copy check.

*Copy check.* The p-value holds for content that does not contain the key's pattern. A
pattern copied from another marked image does contain it, at full strength, multiplied by
that image's sign field; against this image's field it gives a sum of terms of random
sign whose spread grows with the copied strength, so z alone can pass. The detector
therefore also computes the statistic under this image's sign field displaced by
``COPY_OFFSETS`` (16 displacements of 48 and 96 working pixels): a genuine mark follows
the true field only, a copy gives statistics of one distribution under all of them. The
ratio of the true statistic to the RMS of the displaced ones must reach
``COPY_MIN_RATIO``; a mark that fails it is reported as a copy, not detected. So is a mark
on a picture with little structure of its own (``MIN_STRUCTURE``, ``MIN_FIELD_RMS``): there
the field may be the ghost of a copy's donor, which the copied pattern follows; ``embed``
refuses such pictures, and those whose own output fails the copy check
(``copy_check="strict"`` also asks for ``STRONG_RATIO`` over the strongly structured pixels).

*Key-independent sensitivity.* The keyed filter's gain on the blurred luminance is
``KERNEL_GAIN`` for every key (a random 9 x 9 filter's varies threefold between keys).

Work is bounded for any input: only the luminance conversion and the first resampling
touch every pixel; everything after runs on the fixed working frame and torus.

Limits
------
See docs/WATERMARKS.md: strong denoisers and regeneration remove the mark; so does a
geometric change after the sync template was notched out; vertical flips and 90-degree
rotations are not searched; informed wide-band copies pass the copy check in 3-9%, the
strict one in about 0.3% (which loses more marks after crops and rotations; see there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .._types import Artifact
from ..config import COPY_CHECKS
from . import _image_v2_sync as sync
from ._common import (
    AnalysisBase,
    ImageScheme,
    add_luma,
    blurred_gain,
    dither,
    low_pass,
    norm_shape,
    reliability,
    upper_tail,
    work_luma,
)
from ._image_sync import whiten, whiten_spectral
from ._image_v2_copy import displaced_ratio, strong_boost
from ._image_v2_sync import Geometry, register
from .base import CannotWatermark
from .ecc import decode_id, list_size_for
from .image import _check_image, _mask

__all__ = ["GuardrailImageWatermarkV2", "ImageAnalysisV2"]

SCHEME = "guardrail-image-v2"
VERSION = "2"

#: Working frame area (pixels) and side of the keyed pilot / payload torus (working pixels).
WORK_AREA, TORUS = 256 * 256, 384
#: Most elongated image accepted (beyond 2.25:1 part of the torus repeats in the frame), and
#: the share of the mark's power in the sync template.
MAX_ASPECT, SYNC_SHARE = 4.0, 0.25
#: Content sign field: blur of the luminance (working pixels) and keyed filter size.
SIGMA_L, KERNEL = 3.0, 9
#: A 5 x 5 median before the blur keeps thin structure (a copied residual) out of the field.
MEDIAN = True
#: Embedder's dead zone (grey levels of the keyed filter response): a quarter of the
#: amplitude below ``F_DEAD``, all of it from ``F_FULL``.
F_DEAD, F_FULL = 1.0, 2.0
#: The detector's dead zone, from ``DETECT_DEAD`` (weight 0) to ``DETECT_FULL`` (1), sits
#: above the embedder's: a copied estimate carries a faint ghost of its donor's coarse
#: structure, which on a smooth photo tips pixels near the dead zone its own way - and the
#: copy then matches their signs. From 2 grey levels up a ghost at 38 dB rarely decides one.
DETECT_DEAD, DETECT_FULL = 2.0, 3.0
#: Residual of a geometry hypothesis: the luminance spectrally whitened (:func:`~._image_sync.
#: whiten_spectral`: ``SPEC_EXP`` of the way to a flat spectrum, then high-pass and local RMS
#: as in v1); from ``CROP_SCALE`` on (a crop enlarged the content ``s`` times; the plain v1
#: residual until 2026-12-07) smoothed by ``CROP_PREFILTER * sqrt(s**2 - 1)`` working pixels
#: before it is resampled to the frame.
CROP_SCALE, SPEC_EXP, CROP_PREFILTER = 1.15, 0.5, 0.4
#: Sync candidates tried besides the identity; how many of them are refined to a fraction
#: of a pixel, and how many scales of the coherent scan for centred crops are added; the
#: share of the false-positive rate spent on the identity and its mirror.
SYNC_CANDIDATES, REFINED, SCANNED, IDENTITY_WEIGHT = 3, 2, 1, 0.5
#: Most decode attempts per detection and the pilot z needed before one is made (near the
#: expected shift; anywhere on the torus, where the best of 147,456 shifts of an unmarked
#: image reaches 4.5 by chance, ``DECODE_FAR_Z``); a decode whose best path fails the CRC
#: checks the ``LIST_SIZE`` best paths, fewer when ``fpr`` is strict, so that the CRC checks
#: use at most ``LIST_FPR_SHARE`` of it (1e-4: 16 paths).
MAX_DECODES, DECODE_MIN_Z, DECODE_FAR_Z = 4, 4.5, 6.0
LIST_SIZE, LIST_FPR_SHARE = 16, 0.1
#: Soft values: each cell over its local residual RMS (window in working pixels, floor), then
#: if that fails the plain sum; every CRC check of both counted.
SOFT_SIGMA, SOFT_FLOOR, SOFT_WEIGHTED = 1.0, 1.0, (True, False)
#: Spectral shaping (see above): low-pass of ``SHAPE_SIGMA`` working pixels up to
#: ``SHAPE_FULL`` times the working frame's side, none from ``SHAPE_NONE`` times.
SHAPE_SIGMA, SHAPE_FULL, SHAPE_NONE = 0.5, 2.0, 4.0
#: ``embed`` refuses an image whose unattacked output scores below this (threshold ~4.6).
EMBED_MIN_Z = 8.0
#: Copy check: the content field's displacements (working pixels) and the ratio to reach.
COPY_OFFSETS = tuple((dy, dx) for d in (48, 96) for dy in (-d, 0, d) for dx in (-d, 0, d)
                     if (dy, dx) != (0, 0))
COPY_MIN_RATIO = 4.5
#: ``copy_check="strict"``: ``STRONG_RATIO`` over the pixels whose field reaches ``COPY_STRONG``
#: too (beyond a ghost's reach), and 1 + ``STRONG_BOOST`` x the pattern from ``STRONG_FROM``.
COPY_STRONG, STRONG_RATIO, STRONG_BOOST, STRONG_FROM = 6.0, 4.5, 2.0, 5.0
#: Least share of the frame whose content field reaches ``DETECT_DEAD``, least field RMS (grey
#: levels; ``embed`` wants ``EMBED_MARGIN`` times it): below either, the picture's structure
#: may be a copy's ghost (a 38 dB residual estimate of any width brought 0.6-1.0).
MIN_STRUCTURE, MIN_FIELD_RMS, EMBED_MARGIN = 0.005, 1.3, 1.1
#: Torus shifts this close to where an uncropped image has its pattern (a 1-px mirror
#: offset included): a test family with this share of the false-positive rate.
NEAR, NEAR_WEIGHT = 1, 0.75
#: Gain (L2 norm of the filter convolved with the blur) of the keyed filter for every key,
#: so that the dead zone means the same for every key.
KERNEL_GAIN = 0.08
#: The hypotheses tried first: no geometric change, and its mirror image.
_IDENTITY = (Geometry(1.0, 0.0, False), Geometry(1.0, 0.0, True))


@dataclass(frozen=True)
class ImageAnalysisV2(AnalysisBase):
    """What :meth:`GuardrailImageWatermarkV2.analyse` found (diagnostics; no key).

    ``z`` to ``angle_deg`` as in :class:`~guardrail.watermark._common.AnalysisBase`, over
    all geometry hypotheses and torus shifts.

    Attributes
    ----------
    flipped, offset : bool, tuple of float
        Whether the best hypothesis is the mirror image; its offset (detection pixels).
    shift : tuple of int
        Torus shift of the best hypothesis.
    soft : numpy.ndarray or None
        De-scrambled soft codeword values at the best hypothesis (positive = 1).
    n_hypotheses, n_decodes : int
    consistency : float or None
        The copy check's ratio (see ``GuardrailImageWatermarkV2._consistency``), computed
        only when ``p_value <= fpr`` (else ``None``: the mark is not detected anyway);
        ``consistent`` is ``consistency >= COPY_MIN_RATIO`` when it was computed.
    structure : float or None
        Share of the working frame above the content field's dead zone, computed with
        ``consistency``; below ``MIN_STRUCTURE`` (or with a field RMS below
        ``MIN_FIELD_RMS``) the mark is not counted (``consistent`` false, ``copy_reason``).
    """

    flipped: bool = False
    offset: tuple[float, float] = (0.0, 0.0)
    shift: tuple[int, int] = (0, 0)
    soft: np.ndarray | None = field(default=None, repr=False)
    n_hypotheses: int = 0
    n_decodes: int = 0
    consistency: float | None = None
    structure: float | None = None


def _norm_shape(h: int, w: int) -> tuple[int, int]:
    return norm_shape(h, w, WORK_AREA)


def _check(content: object) -> str:
    kind = _check_image(content, SCHEME, aspect=False)
    h, w = content.shape[:2]  # type: ignore[union-attr]
    if max(h, w) > MAX_ASPECT * min(h, w):
        raise CannotWatermark(f"image aspect ratio {w}x{h} is too extreme for {SCHEME} "
                              f"(at most {MAX_ASPECT:g}:1)")
    return kind


class GuardrailImageWatermarkV2(ImageScheme):
    """guardrail's image watermark, version 2 (scheme ``guardrail-image-v2``).

    Parameters
    ----------
    key : bytes
        Secret key; every pattern derives from it. Never logged or returned.
    fpr : float
        False-positive rate at which :meth:`detect` decides ``detected``.
    payload_bits : int
        Size of the payload id, 1..32 bits (the code always carries 32).
    strength : float
        RMS of the luminance change in grey levels; 2.4 gives a PSNR of about 40.5 dB.
    copy_check : {"standard", "strict"}
        ``"strict"`` adds the strong-field ratio to the copy check (``COPY_STRONG``).
    """

    scheme = SCHEME
    version = VERSION
    _decodes = MAX_DECODES * len(SOFT_WEIGHTED)  # Viterbi runs at most, each up to list_size

    def __init__(self, key: bytes, *, fpr: float = 1e-4, payload_bits: int = 32,
                 strength: float = 2.4, copy_check: str = "standard") -> None:
        super().__init__(key, fpr=fpr, payload_bits=payload_bits, strength=strength)
        if copy_check not in COPY_CHECKS:
            raise ValueError(f"copy_check must be one of {', '.join(COPY_CHECKS)}, "
                             f"got {copy_check!r}")
        self.copy_check = copy_check
        #: Paths checked per decode (list Viterbi; 1 is plain Viterbi).
        self.list_size = list_size_for(self._code, self.fpr, self._decodes, cap=LIST_SIZE,
                                       share=LIST_FPR_SHARE)

    def _check(self, content: object) -> str:
        return _check(content)

    # ------------------------------------------------------------------ keyed layout
    @cached_property
    def _layout(self) -> dict[str, np.ndarray]:
        n = self._code.n_coded
        cells = TORUS * TORUS
        pilot = self._rng("pilot").standard_normal((TORUS, TORUS)).astype(np.float32)
        freqs, phases = sync.sync_frequencies(self._rng("sync"))
        # keyed filter with no response to constant levels or linear ramps, unit norm
        k = self._rng("kernel").standard_normal((KERNEL, KERNEL))
        yy, xx = np.mgrid[:KERNEL, :KERNEL].astype(np.float64)
        basis = np.stack([np.ones(KERNEL * KERNEL), xx.ravel(), yy.ravel()], axis=1)
        q, _ = np.linalg.qr(basis)
        kv = k.ravel() - q @ (q.T @ k.ravel())
        kernel = (kv / np.linalg.norm(kv)).reshape(KERNEL, KERNEL)
        kernel *= KERNEL_GAIN / blurred_gain(kernel, SIGMA_L)
        return {
            "pilot": pilot,
            "pilot_fft": np.conj(np.fft.rfft2(pilot)).astype(np.complex64),
            "bit_of": self._rng("bits").permutation(cells) % n,
            "signs": self._rng("signs").choice(np.array([-1.0, 1.0], np.float32),
                                               size=(TORUS, TORUS)),
            "scramble": self._rng("scramble").integers(0, 2, size=n).astype(np.uint8),
            "sync_freqs": freqs,
            "sync_phases": phases,
            "kernel": kernel.astype(np.float32),
        }

    def _field(self, payload: int) -> np.ndarray:
        """Pilot plus payload on the torus, unit variance."""
        lay = self._layout
        word = self._code.encode(payload) ^ lay["scramble"]
        bits = (2.0 * word.astype(np.float32) - 1.0)[lay["bit_of"]]
        f = lay["pilot"] + lay["signs"] * bits.reshape(TORUS, TORUS)
        return f / np.float32(f.std())

    def _sync(self, hw: int, ww: int) -> np.ndarray:
        """The sync template on a working frame of ``hw x ww`` (cached per shape)."""
        cache = self.__dict__.setdefault("_sync_cache", {})
        if (hw, ww) not in cache:
            if len(cache) >= 8:
                cache.clear()
            lay = self._layout
            cache[(hw, ww)] = sync.sync_pattern(lay["sync_freqs"], lay["sync_phases"], (hw, ww))
        return cache[(hw, ww)]

    def _content_field(self, lum: np.ndarray) -> np.ndarray:
        """Keyed filter response of the blurred luminance (its sign is the content field)."""
        import cv2

        src = cv2.medianBlur(np.ascontiguousarray(lum, np.float32), 5) if MEDIAN else lum
        low = cv2.GaussianBlur(src, (0, 0), SIGMA_L)
        return cv2.filter2D(low, cv2.CV_32F, self._layout["kernel"],
                            borderType=cv2.BORDER_REPLICATE)

    # ------------------------------------------------------------------ embed
    def embed(self, artifact: Artifact, payload: int) -> Artifact:
        """Return a new artifact whose image carries ``payload`` (see the module notes).

        Raises
        ------
        CannotWatermark
            The content is not an image this scheme accepts, the payload does not fit, or
            the image has too little texture to carry a content-bound mark (its own
            unattacked output would score below ``EMBED_MIN_Z``: smooth gradients, flat
            graphics) - a mark nobody could find is never returned.
        """
        import cv2

        payload, kind, content = self._image_input(artifact, payload)
        h, w = content.shape[:2]
        yw = work_luma(content, kind, _norm_shape(h, w))
        hw, ww = yw.shape
        iy, ix = np.arange(hw) % TORUS, np.arange(ww) % TORUS
        main = self._field(payload)[np.ix_(iy, ix)]
        cf = self._content_field(yw)
        if flat := _flatness(cf, f"cannot carry a {SCHEME} mark", EMBED_MARGIN)[1]:
            raise CannotWatermark(flat)
        boost = STRONG_BOOST if self.copy_check == "strict" else 0.0  # 0: wgt as it is
        main *= strong_boost(_sign_weight(cf, embed=True), cf, boost, STRONG_FROM)
        main = low_pass(main, _shape_sigma(h * w / (hw * ww)))
        sync = self._sync(hw, ww)
        delta = (np.float32(math.sqrt(1.0 - SYNC_SHARE)) * main
                 + np.float32(math.sqrt(SYNC_SHARE)) * sync) * _mask(yw)
        delta = cv2.resize(delta.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        rms = math.sqrt(float(np.mean(delta * delta)))
        delta *= np.float32(self.strength / max(rms, 1e-6))
        delta += dither(h, w)
        out = add_luma(content, delta, kind)
        z, ratio = self._self_check(out, kind)
        if z < EMBED_MIN_Z:
            raise CannotWatermark(
                f"the image has too little texture to carry a {SCHEME} mark bound to its "
                f"content (score {z:.1f} on the unattacked output, {EMBED_MIN_Z:g} needed): "
                "smooth gradients and flat graphics leave the content sign field empty")
        if ratio < COPY_MIN_RATIO:
            raise CannotWatermark(
                f"the image's own structure cannot carry a {SCHEME} mark: its "
                f"unattacked output fails the copy check (ratio {ratio:.1f}, "
                f"{COPY_MIN_RATIO:g} needed) - detection could not tell its mark from a copy")
        return artifact.evolve(content=out, data=None, media_type=None)

    def _self_check(self, out: np.ndarray, kind: str) -> tuple[float, float]:
        """Pilot z of the marked output at the identity geometry and the expected shift,
        and its copy check's ratio there (:meth:`_consistency`)."""
        h, w = out.shape[:2]
        yw = work_luma(out, kind, _norm_shape(h, w))
        frame = self._frame(_Residuals(yw), yw, _IDENTITY[0])
        v, home = _weight(*frame), _home(yw.shape)
        den = math.sqrt(float(np.sum(v.astype(np.float64) ** 2)))
        g = np.roll(self._layout["pilot"], home, axis=(0, 1))
        z = float(np.sum(v * g)) / den if den > 0 else 0.0
        return z, (self._consistency(frame, home) if z >= EMBED_MIN_Z else 0.0)

    # ------------------------------------------------------------------ detect
    def _hypotheses(self, r: np.ndarray) -> list[Geometry]:
        """The identity and its mirror, then :func:`~._image_v2_sync.geometries`."""
        lay = self._layout
        return [*_IDENTITY, *sync.geometries(r, lay["sync_freqs"], lay["sync_phases"],
                                             SYNC_CANDIDATES, REFINED, SCANNED)]

    def analyse(self, content: np.ndarray, *, soft: bool = True) -> ImageAnalysisV2:
        """Run the detector on an image array and return the details.

        The p-value bounds, for an image without this key's mark, the probability of a
        result at least this extreme: ``p_pilot = min(1, min over hypotheses h of min((2
        NEAR + 1)**2 Q(z_near) / NEAR_WEIGHT, TORUS**2 Q(z_all) / (1 - NEAR_WEIGHT)) /
        w_h)`` (the best shift near the expected one, and anywhere; ``w_h``:
        ``IDENTITY_WEIGHT / 2`` for the identity and its mirror, the rest shared by the
        others); ``p_crc = 2 MAX_DECODES * list_size * 2**-24``; ``p = min(p_pilot, p_crc)``
        when a decode passed its CRC, else ``min(1, p_pilot + p_crc)``. ``z`` is the
        z-score of the shift that sets ``p_pilot``; ``consistent`` is the copy check. The
        soft values are always computed at the best hypothesis (``soft``: as in v1).

        Raises
        ------
        CannotWatermark
            The array is not an image this scheme can check.
        """
        kind = _check(content)
        h, w = content.shape[:2]
        yw = work_luma(content, kind, _norm_shape(h, w))
        res = _Residuals(yw)
        home = _home(yw.shape)
        # weighted Bonferroni: IDENTITY_WEIGHT of the rate for the identity and its mirror;
        # the sync search runs only when they are not conclusive
        hyps, w_id, w_other = list(_IDENTITY), IDENTITY_WEIGHT / 2, 0.0
        best_p, best, decoded, n_dec = math.inf, None, None, 0
        for i, geo in enumerate(hyps):  # the sync hypotheses are appended after the mirror
            frame = self._frame(res, yw, geo)
            (z_far, far), (z_near, near) = self._pilot_z(v := _weight(*frame), home)
            # the more significant of the two families for this hypothesis
            n_w = 1.0 / (w_id if i < 2 else w_other)
            p_far = n_w * TORUS * TORUS * upper_tail(z_far) / (1.0 - NEAR_WEIGHT)
            p_near = n_w * (2 * NEAR + 1) ** 2 * upper_tail(z_near) / NEAR_WEIGHT
            z, shift, p_h, min_z = ((z_near, near, p_near, DECODE_MIN_Z) if p_near <= p_far
                                    else (z_far, far, p_far, DECODE_FAR_Z))
            if z >= min_z and decoded is None and n_dec < MAX_DECODES:
                n_dec += 1
                for weighted in SOFT_WEIGHTED:
                    vals = self._soft(v, shift, weighted)
                    if (decoded := decode_id(self._code, vals, self.list_size)) is not None:
                        best = (z, geo, shift, vals, frame, v)
                        break
            if decoded is None and p_h < best_p:
                best = (z, geo, shift, None, frame, v)  # kept, not recomputed
            best_p = min(best_p, p_h)
            if decoded is not None and best_p < 1e-12:
                break  # conclusive; stopping early only lowers the work, not the bound
            if i == 1:
                hyps += self._hypotheses(res.plain)[len(_IDENTITY):]
                w_other = (1.0 - 2 * w_id) / max(1, len(hyps) - 2)
        assert best is not None
        z_best, geo, shift, vals, frame, v = best
        p_pilot = min(1.0, best_p)  # both families' weights are in p_near and p_far
        p = self._with_crc(p_pilot, decoded, self._decodes * self.list_size)
        ratio = structure = flat = None
        if vals is None or p <= self.fpr:  # the copy check matters only for a detection
            if vals is None:
                vals = self._soft(v, shift)
            if p <= self.fpr:
                ratio = self._consistency(frame, shift)
                structure, flat = _flatness(self._content_field(yw),
                                            "cannot tell its mark from a copy")
        return ImageAnalysisV2(z=float(z_best), p_value=float(p), p_pilot=float(p_pilot),
                               payload=decoded, scale=float(geo.s),
                               angle_deg=float(math.degrees(geo.th)), flipped=bool(geo.flip),
                               offset=tuple(map(float, geo.offset)), shift=shift, soft=vals,
                               n_hypotheses=len(hyps), n_decodes=n_dec, consistency=ratio,
                               structure=structure,
                               consistent=(ratio is None or ratio >= COPY_MIN_RATIO)
                               and flat is None, copy_reason=flat)

    def _geometry(self, res: ImageAnalysisV2) -> dict[str, object]:
        return {"scale": res.scale, "angle_deg": res.angle_deg, "flipped": res.flipped,
                "offset": list(res.offset), "shift": list(res.shift)}

    def _frame(self, res: _Residuals, yw: np.ndarray, geo: Geometry
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(residual, valid, f)`` in the embedding frame under one geometry hypothesis:
        the registered residual (:meth:`_Residuals.at` the hypothesis' scale), the mask of
        canvas pixels inside the image, and the keyed filter response of the registered
        luminance (its sign is the content field)."""
        r = res.at(geo.s)
        rc = register(r, geo, TORUS)
        valid = register(np.ones_like(r), geo, TORUS) > 0.99
        f = self._content_field(register(yw, geo, TORUS, replicate=True))
        return rc, valid, f

    def _consistency(self, frame: tuple[np.ndarray, np.ndarray, np.ndarray],
                     shift: tuple[int, int]) -> float:
        """Copy check on a hypothesis' :meth:`_frame`: how well the pilot statistic under
        this image's content sign field, displaced by each of ``COPY_OFFSETS``, follows what
        a genuine mark predicts (:func:`~._image_v2_copy.displaced_ratio`: about the z-score
        for a genuine mark, of order one for a copy however strong); ``strict``: the smaller
        of that and the same over the pixels whose field reaches ``COPY_STRONG``, scaled
        by ``COPY_MIN_RATIO / STRONG_RATIO`` (each view against its own ratio)."""
        rc, valid, f = frame
        u = rc * valid * np.roll(self._layout["pilot"], shift, axis=(0, 1))
        q = _sign_weight(f, embed=True) * valid
        views = ((None, 1.0), (COPY_STRONG, COPY_MIN_RATIO / STRONG_RATIO))
        return min(k * displaced_ratio(u, q, _sign_weight(f, embed=False, dead=d), COPY_OFFSETS)
                   for d, k in views[:2 if self.copy_check == "strict" else 1])

    def _pilot_z(self, v: np.ndarray, home: tuple[int, int]
                 ) -> tuple[tuple[float, tuple[int, int]], tuple[float, tuple[int, int]]]:
        """Pilot z at every circular shift of the torus: ``((z, shift) of the best shift
        anywhere, (z, shift) of the best within ``NEAR`` of ``home``)``."""
        den = math.sqrt(float(np.sum(v.astype(np.float64) ** 2)))
        if den <= 0.0:
            return (0.0, (0, 0)), (0.0, home)
        from scipy import fft  # float32 transforms: twice as fast as numpy's float64 ones

        num = fft.irfft2(fft.rfft2(v.astype(np.float32)) * self._layout["pilot_fft"], s=v.shape)
        k = int(np.argmax(num))
        rows = (home[0] + np.arange(-NEAR, NEAR + 1)) % TORUS
        cols = (home[1] + np.arange(-NEAR, NEAR + 1)) % TORUS
        win = num[np.ix_(rows, cols)]
        j = int(np.argmax(win))
        near = (int(rows[j // win.shape[1]]), int(cols[j % win.shape[1]]))
        return ((float(num.flat[k]) / den, (k // TORUS, k % TORUS)),
                (float(win.flat[j]) / den, near))

    def _soft(self, v: np.ndarray, shift: tuple[int, int], weighted: bool = True) -> np.ndarray:
        """De-scrambled soft codeword values with the pattern at ``shift``; ``weighted``: each
        cell by its :func:`~._common.reliability` (``SOFT_SIGMA``, ``SOFT_FLOOR``)."""
        lay, v = self._layout, reliability(v, SOFT_SIGMA, SOFT_FLOOR) if weighted else v
        vt = np.roll(v, (-shift[0], -shift[1]), axis=(0, 1)).ravel() * lay["signs"].ravel()
        soft = np.bincount(lay["bit_of"], weights=vt, minlength=self._code.n_coded)
        return np.where(lay["scramble"] == 1, -soft, soft)


def _flatness(f: np.ndarray, what: str, margin: float = 1.0) -> tuple[float, str | None]:
    """``(share of the frame where the content field f reaches DETECT_DEAD, why the picture
    has too little structure of its own - MIN_STRUCTURE, margin * MIN_FIELD_RMS - or None)``"""
    share = float(np.mean(np.abs(f) >= np.float32(DETECT_DEAD)))
    rms = math.sqrt(float(np.mean(np.square(f, dtype=np.float64))))
    if share >= MIN_STRUCTURE and rms >= margin * MIN_FIELD_RMS:
        return share, None
    return share, (f"the image has too little structure of its own ({share:.2%} of it above "
                   f"the content field's dead zone, {MIN_STRUCTURE:.1%} needed; field RMS "
                   f"{rms:.2f}, {margin * MIN_FIELD_RMS:g} needed): it {what}")


def _shape_sigma(area_ratio: float) -> float:
    """Low-pass (working pixels) of the pattern of an image ``area_ratio`` times the working
    frame's area: ``SHAPE_SIGMA`` up to ``SHAPE_FULL`` times its side, none from ``SHAPE_NONE``."""
    up = math.sqrt(max(area_ratio, 0.0))
    return SHAPE_SIGMA * min(1.0, max(0.0, (SHAPE_NONE - up) / (SHAPE_NONE - SHAPE_FULL)))


def _home(shape: tuple[int, int]) -> tuple[int, int]:
    """The torus shift at which a working frame of ``shape`` carries its pattern when the
    image was not cropped off centre (registration keeps the frame's centre fixed)."""
    return (TORUS // 2 - shape[0] // 2) % TORUS, (TORUS // 2 - shape[1] // 2) % TORUS


def _weight(rc: np.ndarray, valid: np.ndarray, f: np.ndarray) -> np.ndarray:
    """A :meth:`GuardrailImageWatermarkV2._frame` reduced to the weighted residual."""
    return rc * _sign_weight(f, embed=False) * valid


class _Residuals:
    """The residuals of one working luminance, each computed on first use: ``plain`` (v1's
    whitened high-pass; only the sync search reads it) and ``spectral`` (:func:`~._image_sync.
    whiten_spectral`; every hypothesis reads it, crops smoothed - :meth:`at`)."""

    def __init__(self, yw: np.ndarray) -> None:
        self.yw = yw

    @cached_property
    def plain(self) -> np.ndarray:
        return whiten(self.yw)

    @cached_property
    def spectral(self) -> np.ndarray:
        return whiten_spectral(self.yw, SPEC_EXP)

    def at(self, s: float) -> np.ndarray:
        """The residual for a hypothesis of scale ``s``: ``spectral``, from ``CROP_SCALE`` on
        smoothed by ``CROP_PREFILTER * sqrt(s**2 - 1)`` working pixels."""
        if s < CROP_SCALE:
            return self.spectral
        import cv2

        return cv2.GaussianBlur(self.spectral, (0, 0), CROP_PREFILTER * math.sqrt(s * s - 1.0))


def _sign_weight(f: np.ndarray, *, embed: bool, dead: float | None = None) -> np.ndarray:
    """Signed weight of the content field: ``sign(f)`` times a ramp from 0 at the dead zone to
    1 at its end (``F_DEAD``/``F_FULL`` when embedding, with at least 0.25 so that weakly
    structured parts still carry some; ``DETECT_DEAD``/``DETECT_FULL`` when detecting;
    ``dead`` to one level above it when given)."""
    lo, hi = (F_DEAD, F_FULL) if embed else (DETECT_DEAD, DETECT_FULL)
    if dead is not None:
        lo, hi = dead, dead + 1.0
    ramp = np.clip((np.abs(f) - np.float32(lo)) / np.float32(hi - lo), 0.0, 1.0)
    if embed:
        ramp = np.maximum(ramp, np.float32(0.25))
    return np.where(f >= 0, ramp, -ramp).astype(np.float32)
