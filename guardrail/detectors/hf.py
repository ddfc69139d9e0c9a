"""Any Hugging Face classification model as a detector, by hub id or local path.

Loads are local only (``local_files_only=True``): a model that is neither a local folder
nor already in the Hugging Face cache fails fast with :class:`ModelLoadError` - nothing is
downloaded behind the operator's back. The probability of "synthetic" is the summed
softmax score of the labels that mean synthetic (``synthetic_labels``; by default any
label containing fake, ai, synthetic, generated, artificial, spoof, machine or deepfake).
The model's scores are taken as calibrated as shipped - measure its FPR with
``guardrail detectors eval`` and pass it as ``operating_fpr``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .._types import Artifact, Modality
from ..errors import DependencyError, ModelLoadError
from ..signal import resample
from .base import BaseDetector, NotPerformed, as_float_audio, as_rgb

__all__ = ["HFClassifierDetector"]

#: Characters of a text handed to a text-classification pipeline, which truncates to the
#: model's own window (512 tokens for most): more than any such window holds, so a long
#: text is not tokenised whole only to be truncated.
MAX_TEXT_CHARS = 32 * 1024

_SYNTH = re.compile(r"fake|\bai\b|^ai|synthetic|generated|artificial|spoof|machine|deepfake",
                    re.IGNORECASE)
_TASKS = {Modality.IMAGE: "image-classification", Modality.TEXT: "text-classification",
          Modality.AUDIO: "audio-classification"}


class HFClassifierDetector(BaseDetector):
    """A transformers classification pipeline wrapped as a detector.

    Parameters
    ----------
    model : str
        Hub id (already cached) or local folder.
    modality : Modality or str
        Image, text or audio (selects the pipeline task).
    synthetic_labels : sequence of str, optional
        Labels meaning "synthetic" (default: matched by name, see the module docstring).
    threshold, operating_fpr : float
        Operating point and its measured false-positive rate, if known.
    eager : bool
        Load at construction (default), so a missing model fails fast.
    """

    def __init__(self, model: str, modality: Modality | str, *,
                 synthetic_labels: Sequence[str] | None = None, threshold: float = 0.5,
                 operating_fpr: float | None = None, min_side: int = 32,
                 min_chars: int = 20, min_seconds: float = 0.5, eager: bool = True) -> None:
        super().__init__(threshold=threshold, operating_fpr=operating_fpr)
        self.model_id = str(model)
        self.modality = Modality.parse(modality)
        self.name = f"hf:{self.model_id}"
        self.synthetic_labels = list(synthetic_labels) if synthetic_labels else None
        self.min_side, self.min_chars, self.min_seconds = min_side, min_chars, min_seconds
        self.pipe: Any = None
        self._synth: list[str] = []
        if eager:
            self.load()
            self._loaded = True

    def load(self) -> None:
        if self.pipe is not None:
            return
        try:
            import transformers
        except ImportError as exc:
            raise DependencyError("Hugging Face detectors need transformers and torch") from exc
        kw = {"local_files_only": True}
        try:
            if self.modality is Modality.IMAGE:
                model = transformers.AutoModelForImageClassification.from_pretrained(
                    self.model_id, **kw)
                proc = {"image_processor": transformers.AutoImageProcessor.from_pretrained(
                    self.model_id, **kw)}
            elif self.modality is Modality.TEXT:
                model = transformers.AutoModelForSequenceClassification.from_pretrained(
                    self.model_id, **kw)
                proc = {"tokenizer": transformers.AutoTokenizer.from_pretrained(
                    self.model_id, **kw)}
            else:
                model = transformers.AutoModelForAudioClassification.from_pretrained(
                    self.model_id, **kw)
                proc = {"feature_extractor": transformers.AutoFeatureExtractor.from_pretrained(
                    self.model_id, **kw)}
            model.eval()
            self.pipe = transformers.pipeline(_TASKS[self.modality], model=model, device="cpu",
                                              **proc)
        except Exception as exc:  # noqa: BLE001 - any failure is reported as one load error
            raise ModelLoadError(
                self.model_id, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
                hint=f"give a local folder or a model already in the Hugging Face cache for "
                f"this {self.modality.value} detector; nothing is downloaded") from None
        labels = [str(v) for v in model.config.id2label.values()]
        if self.synthetic_labels:
            missing = [x for x in self.synthetic_labels if x not in labels]
            if missing:
                raise ModelLoadError(self.model_id, f"labels {missing} not in {labels}")
            self._synth = list(self.synthetic_labels)
        else:
            self._synth = [x for x in labels if _SYNTH.search(x)]
        if not self._synth or len(self._synth) == len(labels):
            raise ModelLoadError(self.model_id, f"cannot tell which of the labels {labels} "
                                 "mean synthetic", hint="set synthetic_labels")
        rev = getattr(model.config, "_commit_hash", None) or getattr(
            model.config, "transformers_version", None)
        self.model_version = f"{self.model_id}@{rev}" if rev else self.model_id

    def score(self, artifact: Artifact) -> tuple[float, str]:
        if self.modality is Modality.IMAGE:
            from PIL import Image

            inp: Any = Image.fromarray(as_rgb(artifact, min_side=self.min_side))
        elif self.modality is Modality.TEXT:
            text = artifact.content if isinstance(artifact.content, str) else ""
            if len(text.strip()) < self.min_chars:
                raise NotPerformed(f"text shorter than {self.min_chars} characters")
            inp = text[:MAX_TEXT_CHARS]  # the pipeline truncates to the model's tokens
        else:
            x, sr = as_float_audio(artifact, min_seconds=self.min_seconds)
            fe = self.pipe.feature_extractor
            want = getattr(fe, "sampling_rate", sr)
            if want != sr:
                x = resample(x, sr, want)
            inp = {"raw": x, "sampling_rate": want}
        kw: dict[str, Any] = {"top_k": None}
        if self.modality is Modality.TEXT:
            kw["truncation"] = True
        out = self.pipe(inp, **kw)
        if out and isinstance(out[0], list):
            out = out[0]
        p = sum(float(o["score"]) for o in out if o["label"] in self._synth)
        top = max(out, key=lambda o: o["score"])
        return p, (f"{self.model_id}: P({'+'.join(self._synth)}) = {p:.3f}; top label "
                   f"{top['label']!r}")
