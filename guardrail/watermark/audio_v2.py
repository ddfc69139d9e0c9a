"""guardrail's audio watermark, version 2 (scheme ``guardrail-audio-v2``).

Why a version 2
---------------
Version 1 (``guardrail-audio``) writes one keyed pattern, repeated every 1.024 s, into the
chips of every output of a key. Its detector's residuals are key-independent, so averaging
them over the repetitions of one output - or over ten outputs - recovers the pattern
without the key: written into unrelated speech at 28 dB it is detected in 96-98 % of 300
clips, 61 % of them with the victim's id (the audio lab's keyless attacks,
:mod:`guardrail.robustness.audio_keyless`; docs/ROBUSTNESS.md).

Design
------
Everything of version 1 - the 16 kHz chip grid, the pilot and the coded payload, the
perceptual allocation, informed embedding, the scale search for speed, tempo and pitch,
the p-value and the list decoder (:mod:`guardrail.watermark.audio`) - with one change: the
pattern is **bound to the content**. Each chip's pattern value is multiplied by a *content
sign* ``c = sign(F)``, ``F = K * L``: ``L`` is the log of the chip energies averaged over
each chip's 3 x 3 neighbourhood (above a floor 50 dB under the clip's loud chips,
:func:`guardrail.watermark._chips.smooth_logs`), and ``K`` a keyed ``KERNEL_COLS x
KERNEL_ROWS`` filter (chips in time x frequency; drawn from the key, with no response to a
constant or to a linear ramp in either direction, unit norm). ``F`` is made of the coarse
spectro-temporal shape of the audio - syllables, formants - which compression, resampling,
filtering and moderate noise leave alone; it differs between different audio and cannot be
computed without the key. Chips with ``|F| < DEAD_EMBED`` are left unmarked.

The detector reads the residuals of version 1 times ``sign(F) * ramp(|F|)``, the ramp
rising from 0 at ``DEAD_LO`` to 1 at ``DEAD_HI`` (above the embedder's dead zone, so that
chips a copy's ghost could tip do not count), ``F`` recomputed from the audio under test -
on the unscaled grid from its chips, and for the scale search once on its fine grid (an
anchor at every frame and bin, :func:`._audio_scale.fine_grid`), whose weighted residuals
every scale hypothesis reads; the payload is read unweighted, as in version 1, and only
the pilot is bound (see :meth:`GuardrailAudioWatermarkV2._decision`). The pilot is still
i.i.d. N(0, 1) from the key and independent of ``K`` (another keyed draw), so every score
is exactly standard normal on audio without this key's mark, and the p-value of version 1
holds, with one change:

*Two views of the pilot (since 2026-12-06).* On the unscaled grid the pilot is read twice -
over every chip (version 1's weights) and over the louder chips only (``PILOT_VIEWS``: the
chips whose smoothed level is no more than ``LOUD_DB`` - 0 dB - below the median of the
chips within ``FIELD_RANGE_DB`` of the loud ones) - and the better score counts, with both
views'
``2 * PERIOD`` tests in the Bonferroni bound (the score needed rises from about 4.81 to
4.95). Why: the perceptual allocation gives the quiet chips the largest relative change,
so that is where a given energy buys the most evidence - and where a keyless removal
flattens the contrast most cheaply. Subtracting an output's own chip residuals (the lab's
``chips`` estimate) removed the mark read over every chip at 42-46 dB, a twentieth to a
fortieth of the mark's own energy (tuning clips, one key); the louder chips cost an
attacker far more, and the louder view keeps the mark until the removal has about half the
mark's energy, also when it is aimed at those chips (docs/ROBUSTNESS.md). The scale search
reads two views as well (``SCALE_VIEWS``): every chip, and the chips at most
``SCALE_LOUD_DB`` (3 dB) below the median, each with its ``63 * 2 * PERIOD`` tests in the
bound (score needed 5.69 instead of 5.57). With the louder view alone, a removal aimed at
its chips before a 3 % speed change kept the mark in only 29 of 40 held-out clips at 38 dB;
with both, 40 of 40.

What the binding does to the keyless attacks: the residuals of an output, averaged over
repetitions or outputs, average ``pilot * c`` with a ``c`` that changes from chip to chip
and output to output - towards zero; and a pattern estimated from one output, written into
other audio, meets there a content sign unrelated to its own. Measured: docs/ROBUSTNESS.md.

Limits
------
Those of version 1 (:mod:`guardrail.watermark.audio`), and:

* **Removal from one output.** Subtracting an output's own chip residuals (the keyless
  ``chips`` estimate of itself), or the part of them on the louder chips, with about as
  much energy as the mark (28-34 dB) removes it: the estimate needs no key, because it
  flattens every chip's local contrast, the mark's included. The louder view raised the
  energy this needs some tenfold; neither binding nor views stop it (docs/ROBUSTNESS.md).
* ``K`` has ``KERNEL_COLS * KERNEL_ROWS`` keyed coefficients. An attacker who fitted them to
  many outputs (by the consistency of the demodulated residuals across outputs) could
  recover ``c`` and with it the pattern; that attack is not in the lab.
* Content whose coarse shape is mostly flat (steady noise, sustained tones) has few chips
  outside the dead zone; ``embed`` refuses audio whose own output would not be detected.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from . import _chips as chips
from .audio import N_SCALE_TESTS, N_TESTS, PERIOD, GuardrailAudioWatermark, _fold

__all__ = ["DEAD_EMBED", "DEAD_HI", "DEAD_LO", "FIELD_RANGE_DB", "GuardrailAudioWatermarkV2",
           "PILOT_VIEWS"]

SCHEME = "guardrail-audio-v2"
VERSION = "2"

#: Size of the keyed content filter (chip columns x chip rows).
KERNEL_COLS, KERNEL_ROWS = 5, 5
#: Content field (in units of its median magnitude): chips below ``DEAD_EMBED`` are not
#: marked; the detector's weight rises from 0 at ``DEAD_LO`` to 1 at ``DEAD_HI``.
DEAD_EMBED = 0.45
DEAD_LO, DEAD_HI = 0.67, 1.2
#: The median is taken over chips at most this far (dB) below the clip's 90th percentile.
FIELD_RANGE_DB = 40.0
#: The pilot is read in two views on the unscaled grid: every chip, and only the louder chips
#: - those whose smoothed level is at most ``LOUD_DB`` below the median of the chips within
#: ``FIELD_RANGE_DB`` of the loud ones. A keyless removal flattens the quiet chips, where a
#: given energy buys the largest change; the louder ones cost it far more (module notes).
PILOT_VIEWS = ("all", "loud")
LOUD_DB = 0.0
#: The scale search reads the pilot in views too: every chip, and the chips at most
#: ``SCALE_LOUD_DB`` below that median.
SCALE_VIEWS = ("all", "loud")
SCALE_LOUD_DB = 3.0


def ramp_free(k: np.ndarray) -> np.ndarray:
    """A keyed filter ``k`` (any number of axes) with no response to a constant or to a ramp
    along any axis (their least-squares fit removed), at unit norm."""
    axes = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in k.shape], indexing="ij")
    basis = np.stack([np.ones(k.size), *[(a - a.mean()).ravel() for a in axes]], 1)
    kv = k.ravel() - basis @ np.linalg.lstsq(basis, k.ravel(), rcond=None)[0]
    return (kv / np.linalg.norm(kv)).reshape(k.shape)


def _in_range(sub_logs: np.ndarray) -> np.ndarray:
    """The chips (smoothed log energies) at most ``FIELD_RANGE_DB`` below the loud ones (the
    90th percentile): those the field's scale and the louder views' median are taken over."""
    return sub_logs >= np.percentile(sub_logs, 90) - FIELD_RANGE_DB * np.log(10.0) / 10.0


class GuardrailAudioWatermarkV2(GuardrailAudioWatermark):
    """guardrail's default audio watermark: version 1 bound to the content (see the module
    notes). Same parameters and results as :class:`GuardrailAudioWatermark`.

    Examples
    --------
    >>> import numpy as np
    >>> from guardrail import Artifact, GenerationMetadata
    >>> from guardrail.testing import speechlike
    >>> art = Artifact("audio", speechlike(3.0), GenerationMetadata("m"), sample_rate=16000)
    >>> wm = GuardrailAudioWatermarkV2(b"k" * 32)
    >>> res = wm.detect(wm.embed(art, 0xC0FFEE))
    >>> res.detected, res.payload, res.scheme
    (True, '00c0ffee', 'guardrail-audio-v2')
    >>> wm.detect(art).detected
    False
    """

    scheme = SCHEME
    version = VERSION

    @cached_property
    def _kernel(self) -> np.ndarray:
        return ramp_free(self._rng("content-kernel").standard_normal((KERNEL_COLS, KERNEL_ROWS)))

    def _field(self, logs: np.ndarray, step: tuple[int, int] = (1, 1)) -> np.ndarray:
        """The content field ``K * L`` of smoothed log energies (chip columns x rows; or,
        with ``step`` = (frames, bins) per chip, anchors of the scale search's fine grid),
        in units of its median magnitude over the chips within ``FIELD_RANGE_DB`` of the
        loud ones (so that the dead zones mean the same for every key and every level)."""
        if logs.shape[0] == 0:
            return np.zeros_like(logs)
        (dt, df), (ht, hf) = step, (KERNEL_COLS // 2, KERNEL_ROWS // 2)
        logs = np.asarray(logs, dtype=np.float32)
        pad = np.pad(logs, ((ht * dt, ht * dt), (hf * df, hf * df)), mode="symmetric")
        n_t, n_f = logs.shape
        field = np.zeros(logs.shape, dtype=np.float32)
        tmp = np.empty_like(field)
        for a in range(KERNEL_COLS):
            for b in range(KERNEL_ROWS):
                np.multiply(pad[a * dt:a * dt + n_t, b * df:b * df + n_f],
                            np.float32(self._kernel[a, b]), out=tmp)
                field += tmp
        # the scale (a median) from one anchor per chip: the same chips as the chip grid's
        sub_logs, sub = logs[::dt, ::df], field[::dt, ::df]
        on = _in_range(sub_logs)
        scale = float(np.median(np.abs(sub[on]))) if on.any() else 0.0
        return field / scale if scale > 0.0 else np.zeros_like(field)

    def _field_of(self, energy: np.ndarray) -> np.ndarray:
        """The content field of chip energies (chip columns x rows)."""
        return self._field(chips.smooth_logs(energy, chips.rows_ok(chips.FS)))

    def _content_sign(self, energy: np.ndarray) -> np.ndarray:
        field = self._field_of(energy)
        pilot = (self._layout["pilot"] != 0)[np.arange(energy.shape[0]) % PERIOD]
        return np.where(pilot, np.sign(field) * (np.abs(field) >= DEAD_EMBED), 1.0)

    def _weight(self, field: np.ndarray) -> np.ndarray:
        ramp = np.clip((np.abs(field) - DEAD_LO) / (DEAD_HI - DEAD_LO), 0.0, 1.0)
        return np.sign(field) * ramp

    def _decision(self, z_max: float, decoded: int | None, *,
                  z_scaled: float | None = None) -> tuple[bool, float, int | None]:
        """As version 1, but the pilot must pass: a payload that passes its CRC is not
        evidence alone (the payload chips are not bound to the content, so a copied payload
        can decode), only the id of a detected mark."""
        detected, p, _ = super()._decision(z_max, None, z_scaled=z_scaled)
        return detected, p, decoded if detected else None

    @property
    def _n_tests(self) -> int:
        return N_TESTS * len(PILOT_VIEWS)

    @property
    def _n_scale_tests(self) -> int:
        return N_SCALE_TESTS * len(SCALE_VIEWS)

    @property
    def scale_loud_db(self) -> float:
        """The loudness margin of the scale search's louder view (:data:`SCALE_LOUD_DB`)."""
        return SCALE_LOUD_DB

    def _loud(self, logs: np.ndarray, step: tuple[int, int] = (1, 1),
              below_db: float | None = None) -> np.ndarray:
        """1 on the louder chips (at most ``below_db``, default :data:`LOUD_DB`, under the
        median) of smoothed log energies (chips, or the scale search's anchors with
        ``step``), else 0."""
        sub = logs[::step[0], ::step[1]]
        if sub.size == 0:
            return np.zeros_like(logs)
        on = _in_range(sub)
        below = LOUD_DB if below_db is None else below_db
        ref = float(np.median(sub[on])) - below * np.log(10.0) / 10.0
        return (logs >= ref).astype(logs.dtype)

    def _pilot_scores(self, energy: np.ndarray, r: np.ndarray, w: np.ndarray, P: np.ndarray
                      ) -> np.ndarray:
        """The best pilot z of the views (:data:`PILOT_VIEWS`) at each shift of the
        unscaled grid, each with the content weight; every view's z is exactly N(0, 1)
        without this key's mark (the views are key-independent), and ``_n_tests`` counts
        both views in the p-value."""
        logs = chips.smooth_logs(energy, chips.rows_ok(chips.FS))
        cw = self._weight(self._field(logs))
        views = {"all": w, "loud": w * self._loud(logs)}
        return np.max([self._pilot_z(_fold(chips.weighted(r, views[v]) * cw))
                       for v in PILOT_VIEWS], axis=0)

    def _worth_decoding(self, z_max: float, z_scaled: float | None = None) -> bool:
        """Only for a mark whose pilot passes: detection never rests on the payload here and
        ``_decision`` drops an undetected mark's id, so the results are those of decoding
        always, without the Viterbi and list decodes unmarked audio used to pay for (about a
        quarter of its detection time, scale search included)."""
        return self._decision(z_max, None, z_scaled=z_scaled)[0]

    def _fine_weights(self, logs: np.ndarray
                      ) -> tuple[tuple[np.ndarray, np.ndarray | None], ...]:
        """The detector's weights on the scale search's fine grid (an anchor at every frame
        and bin; a chip's neighbours are ``CHIP_FRAMES`` frames and ``CHIP_BINS`` bins
        away) and the anchors each view of :data:`SCALE_VIEWS` reads. Under a scale
        hypothesis the weights are read where the residuals are - the field of the audio as
        received, whose few-percent stretch the coarse field hardly notices."""
        step = (chips.CHIP_FRAMES, chips.CHIP_BINS)
        weight = self._weight(self._field(logs, step))
        return tuple((weight, None if v == "all" else self._loud(logs, step, SCALE_LOUD_DB))
                     for v in SCALE_VIEWS)
