"""Generation-time text watermarks through transformers' own implementations.

Two schemes, selectable:

* ``kgw`` - the green-list watermark of Kirchenbauer et al. (transformers'
  ``WatermarkingConfig`` / ``WatermarkLogitsProcessor`` / ``WatermarkDetector``).
* ``synthid`` - SynthID-Text tournament sampling (transformers'
  ``SynthIDTextWatermarkingConfig`` / ``SynthIDTextWatermarkLogitsProcessor``).

Every secret parameter (KGW's hashing key; SynthID's per-layer keys and sampling-table seed)
is derived from the watermark key file with HMAC-SHA256, so the key never appears in a
config, a report or a log: reports carry :meth:`TextWatermarker.describe`, which names the
scheme, the key *id*, the context width, the tokenizer and the public parameters - all that
detection needs besides the key.

Detection needs only the text, the tokenizer and the key. It tests the visible text (the
C2PA wrapper and zero-width characters removed) and, when look-alike letters of other
scripts are present, also its ASCII skeleton (:func:`guardrail.textnorm.skeleton`), which
undoes a homoglyph attack; two readings double the p-value. Its decision is an exact test
against the null hypothesis "this text was not watermarked with this key", at the configured
false-positive rate (never a fixed z):

* KGW: with repeated n-grams counted once, each scored token is green with probability
  ``gamma`` under the null, so ``p = P(Binomial(n, gamma) >= green)``.
* SynthID: each g-value (one per unrepeated n-gram and layer) is an entry of the key's
  sampling table (65,536 random bits) at a hashed index, so under the null it is 1 with
  probability ``q``, the share of ones in *that* table, and ``p = P(Binomial(n * depth, q)
  >= sum g)`` (the mean-score detector of the SynthID paper, made into an exact test). A
  fair coin (``q = 0.5``) is right only on average over keys: a table's share of ones
  misses 0.5 by about 0.002 (0.496-0.502 over 20 keys), a bias that every g-value of every
  text shares, so with 0.5 one key's scores on human text were shifted by up to 0.4
  standard deviations (the share per key correlated 0.98 with the key's mean score over
  1,000 human texts; docs/WATERMARKS.md).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from .._types import Artifact, Modality, WatermarkResult
from ..keys import key_id
from ..textnorm import skeleton, visible_text
from .base import CannotWatermark, not_performed

__all__ = ["TEXT_SCHEMES", "TextWatermarkParams", "TextWatermarker"]

TEXT_SCHEMES = ("kgw", "synthid")


def _derive_int(secret: bytes, label: str, bits: int) -> int:
    digest = hmac.new(secret, f"guardrail-text-watermark:{label}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - bits)


@dataclass(frozen=True)
class TextWatermarkParams:
    """Public parameters of a text watermark (everything but the key).

    Parameters
    ----------
    scheme : {"kgw", "synthid"}
    greenlist_ratio, bias, seeding_scheme, context_width
        KGW parameters (``context_width`` tokens of context seed the green list).
    ngram_len, depth
        SynthID parameters (``ngram_len - 1`` tokens of context; ``depth`` tournament layers).
    min_tokens : int
        Fewer scored tokens than this: detection is "not performed", never "absent".
    max_tokens : int
        Detection scores at most this many tokens from the start of the text (and
        tokenises at most ``32 * max_tokens`` characters), so a long text costs no more.
    """

    scheme: str = "kgw"
    greenlist_ratio: float = 0.25
    bias: float = 4.0
    seeding_scheme: str = "lefthash"
    context_width: int = 1
    ngram_len: int = 5
    depth: int = 30
    min_tokens: int = 16
    max_tokens: int = 512

    def __post_init__(self) -> None:
        if self.scheme not in TEXT_SCHEMES:
            raise ValueError(f"text watermark scheme must be one of {TEXT_SCHEMES}, got {self.scheme!r}")


class TextWatermarker:
    """A keyed text watermark for one tokenizer / vocabulary.

    Parameters
    ----------
    key : bytes
        The watermark secret (from the key file).
    tokenizer : transformers tokenizer
        The generating model's tokenizer (detection re-tokenizes text with it).
    tokenizer_id : str
        Where the tokenizer comes from (recorded so that detection can reproduce it).
    vocab_size : int
        The model's vocabulary size (``model.config.vocab_size``): the green lists are
        permutations of this range.
    params : TextWatermarkParams
    fpr : float
        False-positive rate at which ``detected`` is decided.

    Examples
    --------
    >>> wm = TextWatermarker(key, tokenizer=tok, tokenizer_id="embedded:smollm2",
    ...                      vocab_size=model.config.vocab_size)          # doctest: +SKIP
    >>> out = model.generate(**enc, watermarking_config=wm.generation_config())  # doctest: +SKIP
    >>> wm.detect_text(tok.decode(out[0])).detected                      # doctest: +SKIP
    True
    """

    modality = Modality.TEXT
    version = "1"
    payload_bits = 0  # zero-bit: the mark says "ours, under this key", it carries no id

    def __init__(self, key: bytes, *, tokenizer: Any, tokenizer_id: str, vocab_size: int,
                 params: TextWatermarkParams | None = None, fpr: float = 1e-3,
                 bos_token_id: int | None = None, eos_token_id: int | None = None) -> None:
        if not 0 < fpr < 1:
            raise ValueError(f"fpr must be in (0, 1), got {fpr}")
        self.params = params or TextWatermarkParams()
        self.scheme = self.params.scheme
        self.tokenizer = tokenizer
        self.tokenizer_id = tokenizer_id
        self.vocab_size = int(vocab_size)
        self.fpr = float(fpr)
        self.key_id = key_id(key)
        self.bos_token_id = bos_token_id if bos_token_id is not None else getattr(
            tokenizer, "bos_token_id", None)
        self.eos_token_id = eos_token_id if eos_token_id is not None else getattr(
            tokenizer, "eos_token_id", None)
        # secret-derived parameters: kept private, never described
        self._hashing_key = _derive_int(key, "kgw-hashing-key", 48) | 1
        self._synthid_keys = [_derive_int(key, f"synthid-layer-{i}", 48)
                              for i in range(self.params.depth)]
        self._synthid_table_seed = _derive_int(key, "synthid-table-seed", 48)
        self._detector: Any = None
        self._processor: Any = None
        self._q: float | None = None

    def __repr__(self) -> str:
        return f"TextWatermarker(scheme={self.scheme!r}, key_id={self.key_id!r})"

    def with_key(self, key: bytes) -> TextWatermarker:
        """The same scheme, parameters, tokenizer and false-positive rate under ``key``
        (e.g. to measure the false-positive rate over several keys)."""
        return TextWatermarker(key, tokenizer=self.tokenizer, tokenizer_id=self.tokenizer_id,
                               vocab_size=self.vocab_size, params=self.params, fpr=self.fpr,
                               bos_token_id=self.bos_token_id, eos_token_id=self.eos_token_id)

    # -- generation ---------------------------------------------------------------------
    def generation_config(self) -> Any:
        """The transformers watermarking config to pass to ``model.generate``.

        Its processor is the faster equivalent of transformers' own
        (:mod:`guardrail.watermark.text_processors`): the same marks, less work per token.
        """
        from .text_processors import KGWConfig, SynthIDConfig

        p = self.params
        if p.scheme == "kgw":
            return KGWConfig(greenlist_ratio=p.greenlist_ratio, bias=p.bias,
                                      hashing_key=self._hashing_key,
                                      seeding_scheme=p.seeding_scheme,
                                      context_width=p.context_width)
        return SynthIDConfig(ngram_len=p.ngram_len, keys=self._synthid_keys,
                             sampling_table_seed=self._synthid_table_seed)

    def describe(self) -> dict[str, Any]:
        """Everything detection needs except the key itself (safe to record)."""
        p = self.params
        out: dict[str, Any] = {"scheme": p.scheme, "version": self.version, "key_id": self.key_id,
                               "tokenizer": self.tokenizer_id, "vocab_size": self.vocab_size,
                               "fpr": self.fpr, "min_tokens": p.min_tokens}
        if p.scheme == "kgw":
            out.update(greenlist_ratio=p.greenlist_ratio, bias=p.bias,
                       seeding_scheme=p.seeding_scheme, context_width=p.context_width)
        else:
            out.update(ngram_len=p.ngram_len, context_width=p.ngram_len - 1, depth=p.depth)
        return out

    # -- the Watermarker protocol --------------------------------------------------------
    def embed(self, artifact: Artifact, payload: int = 0) -> Artifact:
        raise CannotWatermark(
            "cannot embed: text is watermarked while it is decoded; pass "
            "generation_config() to the generator (the guard's watermark stage does this)")

    def detect(self, artifact: Artifact) -> WatermarkResult:
        if artifact.modality is not Modality.TEXT:
            return not_performed(self.scheme, self.version,
                                 f"cannot detect: {artifact.modality.value} is not text")
        return self.detect_text(str(artifact.content))

    # -- detection ------------------------------------------------------------------------
    def _ids(self, text: str) -> Any:
        n = self.params.max_tokens
        return self.tokenizer(text[: 32 * n], return_tensors="pt",
                              add_special_tokens=False)["input_ids"][:, :n]

    def counts(self, text: str) -> tuple[int, int]:
        """``(scored, hits)``: KGW scored tokens and green ones, or SynthID g-values and ones."""
        import torch

        ids = self._ids(text)
        if self.scheme == "kgw":
            if ids.shape[1] - self.params.context_width < 2:
                return 0, 0
            if self.params.seeding_scheme == "lefthash":
                from .text_processors import kgw_counts

                return kgw_counts(ids, hash_key=self._hashing_key, vocab_size=self.vocab_size,
                                  greenlist_ratio=self.params.greenlist_ratio,
                                  context_width=self.params.context_width,
                                  bos_token_id=self.bos_token_id)
            out = self._kgw_detector()(ids, return_dict=True)
            return int(out.num_tokens_scored[0]), int(out.num_green_tokens[0])
        proc = self._synthid_processor()
        if ids.shape[1] < self.params.ngram_len:
            return 0, 0
        with torch.no_grad():
            g = proc.compute_g_values(ids)  # (1, L - ngram_len + 1, depth)
            mask = proc.compute_context_repetition_mask(ids)  # (1, L - ngram_len + 1)
            if self.eos_token_id is not None:
                eos = proc.compute_eos_token_mask(ids, self.eos_token_id)[:, self.params.ngram_len - 1:]
                mask = mask & eos.bool()
        keep = mask[0].bool()
        n = int(keep.sum()) * g.shape[2]
        return n, int(g[0][keep].sum())

    def detect_text(self, text: str) -> WatermarkResult:
        """Test ``text`` for this watermark at the configured false-positive rate.

        The visible text is tested as it is and, when it differs, as its ASCII
        :func:`~guardrail.textnorm.skeleton` (look-alike Cyrillic / Greek letters and
        compatibility forms mapped to the ASCII letters they look like, which undoes a
        homoglyph attack). With two tests the smaller p-value is doubled (Bonferroni), so
        the false-positive rate stays at most the configured one.
        """
        text = visible_text(text or "")
        if not text.strip():
            return not_performed(self.scheme, self.version, "cannot detect: the text is empty",
                                 tokens=0)
        variants = [("", text)]
        ascii_text = skeleton(text)
        if ascii_text != text:
            variants.append((" (look-alike letters read as ASCII)", ascii_text))
        tests = [(note, *self._test(t)) for note, t in variants]
        performed = [t for t in tests if t[1] is not None]
        if not performed:
            tokens = max(t[4] for t in tests)
            return not_performed(
                self.scheme, self.version,
                f"cannot detect: {tokens} scorable tokens, fewer than the minimum of "
                f"{self.params.min_tokens} for a reliable test", tokens=tokens)
        note, p_value, z, reason, tokens = min(performed, key=lambda t: t[1])
        p_value = min(1.0, p_value * len(variants))
        if len(variants) > 1:
            reason += f"{note}; p-value doubled for the two readings tested"
        return WatermarkResult(detected=p_value <= self.fpr, scheme=self.scheme,
                               scheme_version=self.version, score=round(float(z), 4),
                               p_value=p_value, fpr=self.fpr, payload=None, tokens=tokens,
                               reason=reason)

    def _test(self, text: str) -> tuple[float | None, float, str, int]:
        """``(p_value, z, counts, tokens)`` of one reading; ``p_value`` None if too short."""
        from scipy.stats import binom

        n, hits = self.counts(text)
        per_token = 1 if self.scheme == "kgw" else self.params.depth
        tokens = n // per_token
        if tokens < self.params.min_tokens:
            return None, 0.0, "", tokens
        gamma = self.params.greenlist_ratio if self.scheme == "kgw" else self._null_g_rate()
        p_value = float(binom.sf(hits - 1, n, gamma))
        z = (hits - gamma * n) / ((n * gamma * (1 - gamma)) ** 0.5)
        return p_value, z, (f"{hits} of {n} "
                            f"{'green tokens' if self.scheme == 'kgw' else 'g-values'}"), tokens

    def _kgw_detector(self) -> Any:
        if self._detector is None:
            from transformers import PretrainedConfig, WatermarkDetector

            cfg = PretrainedConfig(vocab_size=self.vocab_size, bos_token_id=self.bos_token_id)
            self._detector = WatermarkDetector(model_config=cfg, device="cpu",
                                               watermarking_config=self.generation_config(),
                                               ignore_repeated_ngrams=True,
                                               max_cache_size=4096)
        return self._detector

    def _null_g_rate(self) -> float:
        """The probability of a SynthID g-value of 1 under the null: the share of ones in
        this key's sampling table (see the module notes)."""
        if self._q is None:
            self._q = float(self._synthid_processor().sampling_table.double().mean())
        return self._q

    def _synthid_processor(self) -> Any:
        if self._processor is None:
            import torch

            cfg = self.generation_config()
            self._processor = cfg.construct_processor(self.vocab_size, torch.device("cpu"))
        return self._processor
