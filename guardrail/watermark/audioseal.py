"""Adapter for Meta's AudioSeal (PyPI ``audioseal``): the Watermarker protocol on top of a
generator and a detector checkpoint that the user provides as *local files*.

AudioSeal (Roman et al., 2024) is a pair of neural networks: a generator that adds an
imperceptible, sample-localised watermark carrying a 16-bit message to 16 kHz speech, and
a detector that gives, per sample, the probability that the sample is watermarked plus the
message bits. guardrail never downloads the weights: get ``generator_base.pth`` and
``detector_base.pth`` from the ``facebook/audioseal`` model repository on a machine that can,
copy them here and pass their paths (or set ``GUARDRAIL_AUDIOSEAL_GENERATOR`` and
``GUARDRAIL_AUDIOSEAL_DETECTOR``). Checkpoints are loaded with the package's own loader
(``AudioSeal.load_generator`` / ``load_detector``), which unpickles them: load only files you
trust.

What the adapter adds
---------------------
* Any sample rate from 8 to 96 kHz and any channel count: the mix is resampled to 16 kHz,
  the generator's watermark is resampled back and added to every channel (the mid channel
  carries it), and the detector reads the 16 kHz mix.
* A checked payload: the 16 message bits are ``payload_bits = 16 - check_bits`` bits of id
  and a CRC of ``check_bits`` (4, 6 or 8: every single-bit error is caught, with 8 also every
  odd number of errors; other wrong decodes pass with probability about
  ``2 ** -check_bits``),
  XORed with a mask derived from ``key`` when one is given (so that only key holders read
  the id). A decoded id is reported only when its CRC matches. ``check_bits=0`` gives the
  raw 16-bit message, *unverified*.
* A decision at a false-positive rate: AudioSeal's score (the fraction of frames the
  detector calls watermarked) has no analytic null distribution. :meth:`calibrate` sets the
  threshold from the scores of unmarked clips (a conformal bound: the reported p-value is
  ``(1 + #{calibration scores >= score}) / (n + 1)``, valid when the clips are exchangeable
  with what is checked). Until then ``detected`` uses ``threshold`` (0.5, AudioSeal's own
  default) and the results carry ``fpr=None`` and ``p_value=None``: the rate is unknown.

Silent clips (below -60 dBFS RMS), clips shorter than 0.5 s and unsupported rates or shapes
raise :class:`CannotWatermark` from ``embed`` and give ``detected=None`` from ``detect``.

Tested here only with tiny randomly initialised models built from the package's own config
classes (the code path, not the detection quality): the published weights cannot be fetched
on this machine.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .._types import Artifact, Modality, WatermarkResult
from ..errors import DependencyError, ModelLoadError
from ..signal import resample
from .audio import SAMPLE_RATES
from .base import CannotWatermark, check_audio, check_payload, mix, not_performed, payload_hex

__all__ = ["AudioSealWatermark", "ENV_DETECTOR", "ENV_GENERATOR"]

SCHEME = "audioseal"
VERSION = "1"
#: Environment variables naming the checkpoint files when no path is given.
ENV_GENERATOR = "GUARDRAIL_AUDIOSEAL_GENERATOR"
ENV_DETECTOR = "GUARDRAIL_AUDIOSEAL_DETECTOR"
#: AudioSeal's working rate and message size (the published 16-bit models).
FS = 16000
NBITS = 16
MIN_SECONDS = 0.5
SILENCE_DBFS = -60.0
#: CRC polynomials (without the top term) per check width: CRC-4-ITU, CRC-6-ITU, CRC-8.
_CRC_POLYS = {4: 0x3, 6: 0x3, 8: 0x07}
_HOW = ("download generator_base.pth and detector_base.pth from the facebook/audioseal model "
        "repository on a machine with access, copy them to this machine and pass their paths "
        f"(AudioSealWatermark(generator=..., detector=...)) or set {ENV_GENERATOR} and "
        f"{ENV_DETECTOR}")


def _import_audioseal() -> Any:
    try:
        import audioseal  # noqa: F401
        import torch  # noqa: F401
        from audioseal import AudioSeal
    except ImportError:
        raise DependencyError("audioseal", "audio", purpose="the AudioSeal watermark") from None
    return AudioSeal


class AudioSealWatermark:
    """Meta's AudioSeal behind the Watermarker protocol.

    Parameters
    ----------
    generator, detector : str or Path, optional
        Local checkpoint files (``generator_base.pth``, ``detector_base.pth`` or compatible).
        Default: the paths in ``GUARDRAIL_AUDIOSEAL_GENERATOR`` / ``..._DETECTOR``. Only
        the one that is used must exist (``embed`` needs the generator, ``detect`` the
        detector); they are loaded on first use.
    fpr : float
        The false-positive rate :meth:`calibrate` sets the threshold for.
    key : bytes, optional
        Masks the message, so that only key holders read the id (detection itself is
        keyless in AudioSeal: anyone with the detector sees that a mark is there).
    check_bits : {8, 6, 4, 0}
        Bits of the 16-bit message spent on the CRC; ``payload_bits`` is the rest.
    alpha : float
        Strength: the generator's watermark is multiplied by ``alpha`` (AudioSeal's own
        ``alpha``, 1 by default).
    threshold : float
        Decision threshold on the detector's score before calibration.
    device : str
        Torch device of the models.

    Raises
    ------
    ValueError
        For out-of-range options.
    """

    scheme = SCHEME
    version = VERSION
    modality = Modality.AUDIO

    def __init__(self, generator: str | os.PathLike[str] | None = None,
                 detector: str | os.PathLike[str] | None = None, *, fpr: float = 1e-4,
                 key: bytes | None = None, check_bits: int = 8, alpha: float = 1.0,
                 threshold: float = 0.5, device: str = "cpu") -> None:
        if not 0.0 < float(fpr) < 1.0:
            raise ValueError(f"fpr must be in (0, 1), got {fpr}")
        if int(check_bits) not in (0, *_CRC_POLYS):
            raise ValueError(f"check_bits must be one of 0, 4, 6, 8, got {check_bits}")
        if not 0.0 < float(alpha) <= 10.0:
            raise ValueError(f"alpha must be in (0, 10], got {alpha}")
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if key is not None and (not isinstance(key, (bytes, bytearray)) or not key):
            raise ValueError("key must be non-empty bytes or None")
        self._paths = {"generator": generator or os.environ.get(ENV_GENERATOR) or None,
                       "detector": detector or os.environ.get(ENV_DETECTOR) or None}
        self.fpr = float(fpr)
        self.check_bits = int(check_bits)
        self.payload_bits = NBITS - self.check_bits
        self.alpha = float(alpha)
        self.threshold = float(threshold)
        self.device = device
        self._key = bytes(key) if key is not None else None
        self._models: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._calibration: np.ndarray | None = None

    def __repr__(self) -> str:  # never show the key
        return (f"AudioSealWatermark(generator={self._paths['generator']!r}, "
                f"detector={self._paths['detector']!r}, check_bits={self.check_bits}, "
                f"calibrated={self.calibrated})")

    @property
    def calibrated(self) -> bool:
        """Whether :meth:`calibrate` has set the threshold for ``fpr``."""
        return self._calibration is not None

    # ------------------------------------------------------------------ models
    def _model(self, which: str) -> Any:
        """The generator or detector, loaded once from its local checkpoint."""
        with self._lock:
            if which in self._models:
                return self._models[which]
            AudioSeal = _import_audioseal()
            name = f"audioseal {which}"
            path = self._paths[which]
            env = ENV_GENERATOR if which == "generator" else ENV_DETECTOR
            if path is None:
                raise ModelLoadError(name, f"no checkpoint path was given (argument {which}= "
                                     f"or {env})", hint=_HOW)
            path = Path(path).expanduser()
            if not path.is_file():
                raise ModelLoadError(name, f"no checkpoint file at {str(path)!r}", hint=_HOW)
            loader = AudioSeal.load_generator if which == "generator" else AudioSeal.load_detector
            try:
                model = loader(str(path), nbits=NBITS, device=self.device)
            except Exception as exc:  # noqa: BLE001 - any failure of the package's loader
                raise ModelLoadError(name, f"{str(path)!r} is not a usable AudioSeal {which} "
                                     f"checkpoint ({type(exc).__name__}: {exc})",
                                     hint=_HOW) from None
            model.eval()
            nbits = getattr(getattr(model, "msg_processor", None), "nbits", None) \
                if which == "generator" else getattr(model, "nbits", None)
            if nbits not in (None, NBITS):
                raise ModelLoadError(name, f"the checkpoint carries {nbits}-bit messages; "
                                     f"this adapter needs {NBITS}", hint=_HOW)
            self._models[which] = model
            return model

    # ------------------------------------------------------------------ message
    def _mask(self) -> np.ndarray:
        if self._key is None:
            return np.zeros(NBITS, dtype=np.uint8)
        d = hmac.new(self._key, b"guardrail-audioseal/mask", hashlib.sha256).digest()
        return np.unpackbits(np.frombuffer(d[:2], dtype=np.uint8))

    def _tag(self, payload: int) -> int:
        """CRC of the id, ``check_bits`` wide (initial register all ones)."""
        if self.check_bits == 0:
            return 0
        poly = _CRC_POLYS[self.check_bits]
        top, mask = 1 << (self.check_bits - 1), (1 << self.check_bits) - 1
        reg = mask
        for i in range(self.payload_bits - 1, -1, -1):
            fb = bool(reg & top) ^ bool((payload >> i) & 1)
            reg = (reg << 1) & mask
            if fb:
                reg ^= poly
        return reg

    def _message(self, payload: int) -> np.ndarray:
        word = (payload << self.check_bits) | self._tag(payload)
        bits = np.array([(word >> (NBITS - 1 - i)) & 1 for i in range(NBITS)], dtype=np.uint8)
        return bits ^ self._mask()

    def _payload(self, bits: np.ndarray) -> int | None:
        word = 0
        for b in np.asarray(bits, dtype=np.uint8) ^ self._mask():
            word = (word << 1) | int(b)
        payload = word >> self.check_bits
        tag = word & ((1 << self.check_bits) - 1)
        return payload if tag == self._tag(payload) else None

    # ------------------------------------------------------------------ embed / detect
    def embed(self, artifact: Artifact, payload: int) -> Artifact:
        """Return a new artifact carrying ``payload`` (same rate, shape and channels).

        Raises
        ------
        CannotWatermark
            Unsupported, too short or silent input, or a payload out of range.
        DependencyError, ModelLoadError
            ``audioseal`` is not installed, or the generator checkpoint is missing or
            unusable (the message says how to provide it).
        """
        payload = check_payload(payload, self.payload_bits)
        x, sr = self._audio(artifact, "embed")
        import torch

        model = self._model("generator")
        x16 = resample(mix(x), sr, FS)
        msg = torch.from_numpy(self._message(payload).astype(np.int64))[None, :]
        with torch.inference_mode():
            wav = torch.from_numpy(x16)[None, None, :].to(self.device)
            wm = model.get_watermark(wav, message=msg.to(self.device))
        delta = resample(wm.reshape(-1).float().cpu().numpy() * self.alpha, FS, sr)
        delta = np.pad(delta, (0, max(0, x.shape[0] - delta.shape[0])))[: x.shape[0]]
        out = np.clip(x + delta[:, None], -1.0, 1.0).astype(np.float32)
        if np.asarray(artifact.content).ndim == 1:
            out = out[:, 0]
        return artifact.evolve(content=out, data=None, media_type=None)

    def score(self, artifact: Artifact) -> tuple[float, np.ndarray] | str:
        """AudioSeal's score (fraction of frames detected as watermarked) and the message
        bits; or the reason the audio cannot be checked."""
        try:
            x, sr = self._audio(artifact, "detect")
        except CannotWatermark as exc:
            return str(exc)
        import torch

        model = self._model("detector")
        x16 = resample(mix(x), sr, FS)
        with torch.inference_mode():
            wav = torch.from_numpy(x16)[None, None, :].to(self.device)
            prob, message = model.detect_watermark(wav)
        return float(prob.reshape(-1)[0]), message.reshape(-1).cpu().numpy().astype(np.uint8)

    def detect(self, artifact: Artifact) -> WatermarkResult:
        """Run the detector; ``detected`` is decided at the calibrated threshold.

        Returns ``detected=None`` (with the reason) for audio that cannot be checked.

        Raises
        ------
        DependencyError, ModelLoadError
            ``audioseal`` is not installed, or the detector checkpoint is missing.
        """
        found = self.score(artifact)
        if isinstance(found, str):
            return not_performed(SCHEME, VERSION, found)
        s, bits = found
        detected = s >= self.threshold
        p = None
        if self._calibration is not None:
            cal = self._calibration
            p = float((1 + np.count_nonzero(cal >= s)) / (cal.size + 1))
        value = self._payload(bits) if detected else None
        payload = None
        if value is not None:
            payload = payload_hex(value, self.payload_bits)
        return WatermarkResult(detected=bool(detected), scheme=SCHEME, scheme_version=VERSION,
                               score=s, p_value=p,
                               fpr=self.fpr if self._calibration is not None else None,
                               payload=payload)

    def calibrate(self, unmarked: Iterable[Artifact]) -> float:
        """Set the threshold for ``fpr`` from unmarked clips; return it.

        The threshold is the ``ceil((1 - fpr) (n + 1))``-th smallest of the ``n`` scores
        (a conformal bound), so at least ``1 / fpr - 1`` usable clips are needed.

        Raises
        ------
        ValueError
            Too few usable clips for the configured ``fpr``.
        """
        scores = []
        for a in unmarked:
            found = self.score(a)
            if not isinstance(found, str):
                scores.append(found[0])
        n = len(scores)
        k = int(np.ceil((1.0 - self.fpr) * (n + 1)))
        if k > n:
            need = int(np.ceil(1.0 / self.fpr)) - 1
            raise ValueError(f"calibrating at fpr={self.fpr:g} needs at least {need} usable "
                             f"unmarked clips, got {n}")
        cal = np.sort(np.asarray(scores, dtype=np.float64))
        # strictly above the k-th score: ties at the threshold count as unmarked
        self.threshold = float(np.nextafter(cal[k - 1], np.inf))
        self._calibration = cal
        return self.threshold

    @staticmethod
    def _audio(artifact: Artifact, verb: str) -> tuple[np.ndarray, int]:
        """Validated ``samples x channels`` float32 audio and its rate; refuses silence."""
        x, sr = check_audio(artifact, verb, scheme=SCHEME, min_seconds=MIN_SECONDS,
                            sample_rates=SAMPLE_RATES)
        if 10 * np.log10(float(np.mean(x.astype(np.float64) ** 2)) + 1e-30) < SILENCE_DBFS:
            raise CannotWatermark(f"cannot {verb}: the audio is silent (below "
                                  f"{SILENCE_DBFS:g} dBFS RMS); silence cannot carry a mark")
        return x, sr
