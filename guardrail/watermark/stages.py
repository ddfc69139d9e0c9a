"""Guard stages for watermarks: embed (or arrange generation-time marking) and self-check.

* :class:`WatermarkStage` (slot ``watermark``): for text it hands the generator the
  watermarking config before decoding and checks that the generator applied it; for images
  and audio it draws a fresh watermark id and embeds it. The id and the scheme go into the
  call's evidence (``ctx.evidence.watermark``, a :class:`~guardrail.stages.WatermarkEvidence`),
  and from there into the report (the provenance stage names them too).
* :class:`WatermarkSelfCheck` (slot ``self_check``): decodes the *final encoded bytes*
  (PNG/JPEG/WebP/WAV/FLAC/MP3/text) and detects the mark; the stage fails when the mark does
  not verify or decodes to another id, and the slot's policy decides (block by default).

A scheme that cannot handle an input raises :class:`StageSkipped` with the reason (e.g. an
image under 64x64, an audio clip under 1 s), so the report says ``skipped`` - and the policy
still applies. When the scheme says that the id drawn does not fit but another may
(``CannotWatermark.payload_dependent``: in an audio clip of one or two seconds some ids
decode with a margin and others do not), the stage draws another id, up to
:data:`ID_ATTEMPTS`; the self-check therefore never meets a mark that decodes to no id.

A text whose mark the text itself cannot confirm has a policy of its own,
``[policy] unverifiable_text`` (flag by default): too short to test (``skipped``), or too
predictable for the mark to reach significance - the generated text, before encoding, fails
the test just as the final file does. The mark was applied while decoding either way. A mark
that the generated text carries but the encoded file lost is a self-check failure under the
slot's policy.
"""

from __future__ import annotations

import secrets
from typing import Any

from .._generator import GenerationHooks
from ..media import decode
from ..stages import (
    NotApplicable,
    Stage,
    StageContext,
    StageOutcome,
    StageSkipped,
    WatermarkEvidence,
    check_policy,
)
from .base import CannotWatermark, Watermarker

__all__ = ["ID_ATTEMPTS", "UnavailableStage", "WatermarkSelfCheck", "WatermarkStage"]

#: How many random ids the watermark stage tries when a scheme says the id drawn does not
#: fit this input but another may (a short audio clip: see :mod:`guardrail.watermark.audio`).
ID_ATTEMPTS = 4


def _key_id(wm: Any) -> str | None:
    return getattr(wm, "key_id", None)


def random_id(bits: int) -> int:
    """A fresh watermark id of ``bits`` bits from the OS's CSPRNG (0 for a scheme without a
    payload); the test suite replaces it with a per-test derivation, for reproducible runs."""
    return secrets.randbits(bits) if bits else 0


class WatermarkStage(Stage):
    """Embeds the watermark (images, audio) or has the generator embed it (text)."""

    slot = "watermark"
    name = "watermark"

    def __init__(self, watermarker: Watermarker, *, on_fail: str | None = None) -> None:
        super().__init__(on_fail=on_fail, modalities=[watermarker.modality])
        self.watermarker = watermarker

    def before_generate(self, ctx: StageContext) -> GenerationHooks | None:
        config = getattr(self.watermarker, "generation_config", None)
        return GenerationHooks(watermarking_config=config()) if callable(config) else None

    def run(self, ctx: StageContext) -> StageOutcome:
        wm = self.watermarker
        art = ctx.artifact
        if callable(getattr(wm, "generation_config", None)):
            applied = art.metadata.parameters.get("watermarking")
            if not applied:
                raise StageSkipped(
                    "the generator did not apply the generation-time watermark (it does not "
                    "accept GenerationHooks.watermarking_config)")
            desc = dict(wm.describe())
            rest = dict(desc)
            ctx.evidence.watermark = WatermarkEvidence(
                scheme=rest.pop("scheme", wm.scheme), version=rest.pop("version", wm.version),
                key_id=rest.pop("key_id", _key_id(wm)), fpr=rest.pop("fpr", wm.fpr),
                settings=rest)
            return StageOutcome(details=desc)
        marked, payload = self._embed(art)
        evidence = WatermarkEvidence(
            scheme=wm.scheme, version=wm.version, key_id=_key_id(wm), fpr=wm.fpr,
            payload=f"{payload:0{max(1, (wm.payload_bits + 3) // 4)}x}")
        ctx.evidence.watermark = evidence
        return StageOutcome(artifact=marked, details=evidence.to_dict())


    def _embed(self, art: Any) -> tuple[Any, int]:
        """Embed a fresh random id; when the scheme says that this id does not fit but
        another may (``CannotWatermark.payload_dependent``: a short audio clip), draw
        another, up to :data:`ID_ATTEMPTS` ids. Any other refusal is a skip at once."""
        wm = self.watermarker
        for attempt in range(1, ID_ATTEMPTS + 1):
            payload = random_id(wm.payload_bits)
            try:
                return wm.embed(art, payload), payload
            except CannotWatermark as exc:
                if not exc.payload_dependent:
                    raise StageSkipped(str(exc)) from None
                if attempt == ID_ATTEMPTS:
                    raise StageSkipped(f"{exc}; {ID_ATTEMPTS} ids were tried",
                                       ids_tried=ID_ATTEMPTS) from None
        raise AssertionError("unreachable")  # pragma: no cover


class WatermarkSelfCheck(Stage):
    """Detects the mark on the final encoded bytes; fails if it does not verify."""

    slot = "self_check"
    name = "watermark_self_check"

    def __init__(self, watermarker: Watermarker, *, on_fail: str | None = None,
                 unverifiable_text: str | None = None) -> None:
        super().__init__(on_fail=on_fail, modalities=[watermarker.modality])
        self.watermarker = watermarker
        check_policy(unverifiable_text, "unverifiable_text")
        # policy for a text whose mark the text itself cannot confirm (None: on_fail)
        self.unverifiable_text = unverifiable_text

    def run(self, ctx: StageContext) -> StageOutcome:
        art = ctx.artifact
        expected = ctx.evidence.watermark
        if expected is None:
            raise NotApplicable("no watermark was embedded in this output (see the watermark stage)")
        decoded = decode(art.data, art.media_type, name="final output", metadata=art.metadata)
        res = self.watermarker.detect(decoded)
        details = {"scheme": res.scheme, "detected": res.detected, "p_value": res.p_value,
                   "score": res.score, "payload": res.payload, "fpr": res.fpr}
        if res.detected is None:
            short = res.tokens is not None  # a text too short to test
            raise StageSkipped(res.reason or "detection not performed",
                               policy=self.unverifiable_text if short else None,
                               **details, too_short=short)
        if not res.detected:
            p_gen = self._generated_text_fails_too(art)
            if p_gen is not None:
                return StageOutcome(
                    passed=False, policy=self.unverifiable_text,
                    details={**details, "weak": True, "generated_p_value": p_gen},
                    reason=f"the watermark is too weak to verify in this text (p={res.p_value:.3g}"
                           f" over {res.tokens} tokens, above the false-positive rate "
                           f"{res.fpr:g}); the generated text fails the test too (p={p_gen:.3g}),"
                           f" so the encoding lost nothing: a short or predictable text")
            return StageOutcome(passed=False, details=details,
                                reason=f"the watermark does not verify on the encoded "
                                       f"{art.media_type} (p={res.p_value:.3g})")
        want = expected.payload
        if want is not None and res.payload != want:
            return StageOutcome(passed=False, details=details,
                                reason=f"the watermark decodes to id {res.payload}, not {want}")
        return StageOutcome(details=details)

    def _generated_text_fails_too(self, art: Any) -> float | None:
        """For a text whose mark did not verify: the p-value of the generated text itself
        when it fails the test too (a weak mark, not one lost in encoding)."""
        if not hasattr(self.watermarker, "detect_text") or not isinstance(art.content, str):
            return None
        gen = self.watermarker.detect_text(art.content)
        return float(gen.p_value) if gen.detected is False and gen.p_value is not None else None


class UnavailableStage(Stage):
    """Stands in for a stage that cannot be built here (no key file, missing package): it is always skipped, with the reason, so its policy applies."""

    def __init__(self, slot: str, reason: str, *, modalities: Any = None,
                 on_fail: str | None = None) -> None:
        self.slot = slot
        self.name = f"{slot}_unavailable"
        super().__init__(on_fail=on_fail, modalities=modalities)
        self.reason = reason
        self.unavailable = reason

    def run(self, ctx: StageContext) -> StageOutcome:
        raise StageSkipped(self.reason)
