"""Zero-shot text detectors on a causal LM: Fast-DetectGPT and Binoculars.

**Fast-DetectGPT** (Bao et al., ICLR 2024), analytic form with one model for sampling and
scoring: from one forward pass over the tokens ``x_1..x_n``,

.. math::

    d(x) = \\frac{\\sum_t \\log p(x_t) - \\sum_t \\mu_t}{\\sqrt{\\sum_t \\sigma_t^2}},\\quad
    \\mu_t = \\mathbb{E}_{\\tilde x \\sim p_t}[\\log p_t(\\tilde x)],\\;
    \\sigma_t^2 = \\mathrm{Var}_{\\tilde x \\sim p_t}[\\log p_t(\\tilde x)]

(higher = more likely machine-generated).

**Binoculars** (Hans et al., 2024): ``log PPL_performer(x) / X-PPL(observer, performer)``
(lower = more likely machine-generated; the criterion used here is its negative). Needs a
second model sharing the tokenizer.

The criterion is mapped to a probability by a one-feature logistic regression fitted on a
calibration set (:func:`calibrate`), saved as a trained detector of kind
``fast-detectgpt`` / ``binoculars``.
"""

from __future__ import annotations

from typing import Any

from .._types import Artifact, Modality
from ..errors import DependencyError, ModelLoadError
from ..textnorm import visible_text
from .base import NotPerformed

__all__ = ["CHARS_PER_TOKEN", "CHUNK_POSITIONS", "BinocularsScorer", "FastDetectGPTScorer"]

#: A scorer tokenises at most ``CHARS_PER_TOKEN * max_tokens`` characters from the start
#: of a text: far more than ``max_tokens`` tokens of any natural text, so the scored
#: window is the same as from the whole text, and a long text costs no more than that.
CHARS_PER_TOKEN = 32

#: Token positions whose full-vocabulary log-probabilities are held at once by a
#: criterion (64 x 49,152 float32 values is 12.6 MB per temporary).
CHUNK_POSITIONS = 64


def _model_name(model: Any) -> str:
    return str(getattr(getattr(model, "config", None), "_name_or_path", "") or
               type(model).__name__)


class FastDetectGPTScorer:
    """Computes the Fast-DetectGPT criterion with a causal LM.

    Parameters
    ----------
    model, tokenizer
        A transformers causal LM and its tokenizer (e.g. ``generator.model`` and
        ``generator.tokenizer`` of guardrail's text generator).
    min_tokens : int
        Shorter texts are "not performed".
    max_tokens : int
        Longer texts are truncated to this many tokens (only the first
        ``CHARS_PER_TOKEN * max_tokens`` characters are tokenised).
    """

    method = "fast-detectgpt"

    def __init__(self, model: Any, tokenizer: Any, *, min_tokens: int = 24,
                 max_tokens: int = 256, model_version: str | None = None) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.min_tokens, self.max_tokens = min_tokens, max_tokens
        self.model_version = model_version or _model_name(model)

    @classmethod
    def from_generator(cls, generator: Any, **kw: Any) -> FastDetectGPTScorer:
        """Use a text generator's ``model`` and ``tokenizer``."""
        model, tok = getattr(generator, "model", None), getattr(generator, "tokenizer", None)
        if model is None or tok is None:
            raise ModelLoadError(type(generator).__name__,
                                 "the text generator exposes no model/tokenizer to score with")
        info = getattr(generator, "info", None)
        ver = (f"{info.model_id}@{info.revision}" if info is not None and
               getattr(info, "revision", None) else getattr(info, "model_id", None))
        return cls(model, tok, model_version=ver, **kw)

    def load(self) -> None:
        """Models are passed in already loaded; nothing to do."""

    def _window(self, text: str) -> str:
        """The start of the visible ``text`` that can hold the scored window of tokens.

        The characters of :func:`guardrail.textnorm.visible_text` (the C2PA text wrapper,
        zero-width characters) are removed first: a text scores the same with or without
        its Content Credentials.
        """
        return visible_text(text)[: CHARS_PER_TOKEN * self.max_tokens]

    def _ids(self, text: str) -> Any:
        import torch

        ids = self.tokenizer(self._window(text), add_special_tokens=False, truncation=True,
                             max_length=self.max_tokens, return_tensors="pt")["input_ids"]
        bos = getattr(self.tokenizer, "bos_token_id", None)
        if bos is not None:
            ids = torch.cat([torch.tensor([[bos]]), ids], dim=1)
        return ids

    def check(self, artifact: Artifact | str) -> None:
        """:class:`NotPerformed` if the input is not text or too short."""
        text = artifact if isinstance(artifact, str) else artifact.content
        if isinstance(artifact, Artifact) and artifact.modality is not Modality.TEXT:
            raise NotPerformed("not a text")
        if not isinstance(text, str) or not text.strip():
            raise NotPerformed("empty text")
        n = len(self.tokenizer(self._window(text), add_special_tokens=False)["input_ids"])
        if n < self.min_tokens:
            raise NotPerformed(f"text has {n} tokens; the minimum is {self.min_tokens}")

    def _logits(self, model: Any, ids: Any) -> Any:
        """Next-token logits for positions ``1..n`` in the model's dtype, on the CPU."""
        import torch

        with torch.inference_mode():
            return model(input_ids=ids.to(model.device)).logits[0, :-1].cpu()

    def criterion(self, text: str) -> float:
        """The analytic sampling discrepancy of ``text`` (higher = more likely synthetic).

        The log-probabilities are computed in float32 over :data:`CHUNK_POSITIONS`
        positions at a time, so that no full-vocabulary float32 tensor of the whole text
        is ever held (each is ``positions x vocabulary``).
        """
        import torch

        ids = self._ids(text)
        logits = self._logits(self.model, ids)
        labels = ids[0, 1:]
        ll = mu = var = 0.0
        with torch.inference_mode():
            for start in range(0, labels.shape[0], CHUNK_POSITIONS):
                lp = torch.log_softmax(logits[start:start + CHUNK_POSITIONS].float(), dim=-1)
                p = lp.exp()
                ll += float(lp.gather(-1, labels[start:start + CHUNK_POSITIONS, None]).sum())
                m = (p * lp).sum(-1)
                p.mul_(lp.square_())
                var += float((p.sum(-1) - m.square()).sum())
                mu += float(m.sum())
                del lp, p
        return float((ll - mu) / max(var, 1e-12) ** 0.5)


class BinocularsScorer(FastDetectGPTScorer):
    """Binoculars: perplexity / cross-perplexity between an observer and a performer.

    Parameters
    ----------
    observer : model
        E.g. the text generator's model.
    performer : model or str
        A second causal LM (or its local path / cached hub id) with the same tokenizer.
    """

    method = "binoculars"

    def __init__(self, observer: Any, performer: Any, tokenizer: Any, **kw: Any) -> None:
        super().__init__(observer, tokenizer, **kw)
        self.performer_spec = performer
        self.performer: Any = None if isinstance(performer, str) else performer
        self.model_version = f"{self.model_version}+{_model_name(performer) if self.performer is not None else performer}"

    def load(self) -> None:
        if self.performer is not None:
            return
        try:
            from transformers import AutoModelForCausalLM
        except ImportError as exc:
            raise DependencyError("Binoculars needs transformers and torch") from exc
        try:
            self.performer = AutoModelForCausalLM.from_pretrained(
                self.performer_spec, local_files_only=True).eval()
        except Exception as exc:  # noqa: BLE001 - reported as one load error
            raise ModelLoadError(str(self.performer_spec), str(exc),
                                 hint="a local folder or cached hub id (nothing is downloaded)"
                                 ) from None
        if self.performer.config.vocab_size != self.model.config.vocab_size:
            raise ModelLoadError(str(self.performer_spec),
                                 "Binoculars needs two models with the same tokenizer")

    def criterion(self, text: str) -> float:
        """``-(log PPL_performer / X-PPL)``: higher = more likely synthetic."""
        import torch

        self.load()
        ids = self._ids(text)
        obs = self._logits(self.model, ids)
        perf = self._logits(self.performer, ids)
        labels = ids[0, 1:]
        nll = x_ent = 0.0
        with torch.inference_mode():
            for start in range(0, labels.shape[0], CHUNK_POSITIONS):
                end = start + CHUNK_POSITIONS
                lp_perf = torch.log_softmax(perf[start:end].float(), dim=-1)
                nll -= float(lp_perf.gather(-1, labels[start:end, None]).sum())
                x_ent -= float((torch.softmax(obs[start:end].float(), dim=-1) * lp_perf).sum())
        n = max(int(labels.shape[0]), 1)
        return float(-((nll / n) / max(x_ent / n, 1e-12)))
