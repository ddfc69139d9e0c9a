"""The provenance guard stage: sign the final bytes, then verify what was signed.

:class:`ProvenanceStage` (slot ``provenance``) runs after the output was watermarked,
encoded and self-checked. It signs ``ctx.artifact.data`` - the exact bytes that will be
released - with a manifest naming the model, the keyed prompt hash, the parameters, the
watermark (``ctx.evidence.watermark``) and the stage outcomes so far (``ctx.records``),
replaces the artifact's bytes with the signed ones, and verifies them before returning:

* ``TRUSTED``: passed.
* ``VALID_UNTRUSTED`` (the signer does not chain to a configured trust anchor): the
  signed bytes are kept, and the stage fails when ``require_trusted`` (default), so the
  slot's policy (``flag`` by default) marks it.
* anything else: the stage fails and the unsigned bytes are kept.

What was signed is recorded as ``ctx.evidence.provenance`` (a
:class:`~guardrail.stages.ProvenanceEvidence`), and the manifest store itself (base64) as
``ctx.evidence.extra["c2pa_manifest_store"]``: the record store moves it into its
``manifests`` table, from which ``guardrail serve`` answers the Soft Binding Resolution API. A text signed in sidecar mode keeps its
bytes; its manifest store is returned as the outcome's ``.c2pa`` file, which the guard
writes next to the output.

It raises :class:`~guardrail.stages.StageSkipped` (recorded as ``skipped``, the policy
applies) when no signing identity is configured or the media type cannot carry Content
Credentials. A timestamp authority that is down, or a KMS callback that fails, makes the
stage fail with the reason. Without stage records (a stage run outside a guard) the
manifest says they were not available.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from typing import Any

from .._types import Modality, ProvenanceState
from ..errors import (
    DependencyError,
    GuardrailError,
    KeyFileError,
    SigningError,
    UnsupportedMediaError,
)
from ..stages import ProvenanceEvidence, Stage, StageContext, StageOutcome, StageSkipped
from ._c2pa import SIGNABLE_MEDIA_TYPES, normalize_media_type
from .manifest import ManifestInfo, SignOptions
from .sign import sign_bytes_with_manifest
from .signer import ProvenanceSigner
from .trust import TrustSettings
from .verify import verify_bytes, verify_text

__all__ = ["MANIFEST_STORE_KEY", "ProvenanceStage"]

#: the evidence entry that carries the signed output's manifest store (base64)
MANIFEST_STORE_KEY = "c2pa_manifest_store"


def _records(ctx: StageContext) -> list[Mapping[str, Any]]:
    """The outcomes of the stages so far (a guarded call always has some)."""
    if not ctx.records:
        return [{"stage": "(earlier stages)", "status": "unavailable",
                 "reason": "the guard did not pass its stage records to the provenance stage"}]
    return [rec.to_dict() for rec in ctx.records]


class ProvenanceStage(Stage):
    """Signs every output with C2PA Content Credentials and verifies the result.

    Parameters
    ----------
    signer : ProvenanceSigner or None
        ``None``: the stage is always skipped with ``unavailable`` as the reason.
    trust : TrustSettings, optional
        Used to verify what was signed (default: no anchors, so never ``TRUSTED``).
    options : SignOptions, optional
    training_mining : mapping, optional
        CAWG training-and-mining entries (see :class:`~guardrail.provenance.ManifestInfo`).
    require_trusted : bool
        Fail when the signed output verifies as ``VALID_UNTRUSTED``.
    unavailable : str, optional
        Why there is no signer (shown when skipped).
    on_fail : str, optional
        Overrides the slot policy.
    """

    slot = "provenance"
    name = "c2pa"

    def __init__(
        self,
        signer: ProvenanceSigner | None,
        *,
        trust: TrustSettings | None = None,
        options: SignOptions | None = None,
        training_mining: Mapping[str, str] | None = None,
        require_trusted: bool = True,
        unavailable: str | None = None,
        on_fail: str | None = None,
    ) -> None:
        super().__init__(on_fail=on_fail)
        self.signer = signer
        self.trust = trust or TrustSettings()
        self.options = options or SignOptions()
        self.training_mining = dict(training_mining) if training_mining else None
        self.require_trusted = require_trusted
        self.unavailable = unavailable

    @classmethod
    def from_config(cls, config: Any, *, on_fail: str | None = None) -> ProvenanceStage:
        """Build the stage from ``[provenance]``; never raises for a missing key or a bad
        certificate - the stage is then skipped with the reason, so the policy applies."""
        from .settings import ProvenanceSettings

        settings = ProvenanceSettings.from_config(config)
        kw: dict[str, Any] = {"options": settings.sign_options(),
                              "training_mining": settings.training_mining(),
                              "require_trusted": settings.require_trusted, "on_fail": on_fail}
        try:
            kw["trust"] = settings.trust()
        except GuardrailError as exc:
            return cls(None, unavailable=f"trust anchors unusable: {exc}", **kw)
        if not settings.enabled:
            return cls(None, unavailable="provenance.enabled is false", **kw)
        try:
            signer = settings.signer()
        except GuardrailError as exc:  # no key, bad certificate, bad config
            return cls(None, unavailable=str(exc), **kw)
        return cls(signer, **kw)

    def run(self, ctx: StageContext) -> StageOutcome:
        if self.signer is None:
            raise StageSkipped(self.unavailable or "no signing key is configured")
        art = ctx.artifact
        if art is None or art.data is None:
            raise StageSkipped("there is no encoded output to sign")
        mt = normalize_media_type(art.media_type)
        if mt not in SIGNABLE_MEDIA_TYPES:
            raise StageSkipped(f"{art.media_type} cannot carry Content Credentials here "
                               f"(supported: {', '.join(SIGNABLE_MEDIA_TYPES)})")
        watermark = ctx.evidence.watermark
        info = ManifestInfo.from_metadata(
            art.metadata, watermark=watermark.to_dict() if watermark is not None else None,
            stages=_records(ctx), training_mining=self.training_mining)
        details: dict[str, Any] = {"media_type": mt, "signer": self.signer.certificate.subject
                                   if self.signer.certificate else None}
        t0 = time.perf_counter()
        sidecar: bytes | None = None
        new_content: Any = art.content
        try:
            if mt == "text/plain":
                from .text import sign_text

                signed_text = sign_text(art.data.decode("utf-8"), signer=self.signer,
                                        manifest_info=info, options=self.options)
                details["text_mode"] = signed_text.mode
                store = signed_text.manifest
                if signed_text.mode == "sidecar":
                    signed, sidecar = art.data, signed_text.manifest
                else:
                    signed, new_content = signed_text.text.encode("utf-8"), signed_text.text
            else:
                pixels = art.content if art.modality is Modality.IMAGE else None
                signed, store = sign_bytes_with_manifest(
                    art.data, mt, signer=self.signer, manifest_info=info,
                    options=self.options, pixels=pixels)
        except DependencyError as exc:
            raise StageSkipped(str(exc)) from None
        except UnicodeDecodeError:
            raise StageSkipped("the encoded text is not valid UTF-8") from None
        except (SigningError, UnsupportedMediaError, KeyFileError) as exc:
            details["sign_ms"] = round((time.perf_counter() - t0) * 1000, 3)
            return StageOutcome(passed=False, reason=f"signing failed: {exc}", details=details)
        details["sign_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        t1 = time.perf_counter()
        if mt == "text/plain":
            result = verify_text(signed.decode("utf-8"), trust=self.trust, sidecar=sidecar)
        else:
            result = verify_bytes(signed, mt, trust=self.trust)
        evidence = ProvenanceEvidence(
            state=result.state, media_type=mt, signer=details["signer"],
            manifest=(result.manifest or {}).get("label"), manifest_summary=result.manifest or {},
            ai_generated=result.ai_generated, failures=tuple(result.failures),
            bytes_added=len(signed) - len(art.data) if sidecar is None else len(sidecar),
            sign_ms=details["sign_ms"], verify_ms=round((time.perf_counter() - t1) * 1000, 3),
            text_mode=details.get("text_mode"))
        details = {k: v for k, v in evidence.to_dict().items() if k != "manifest_summary"}
        files = {".c2pa": sidecar} if sidecar is not None else {}
        if result.state in (ProvenanceState.TRUSTED, ProvenanceState.VALID_UNTRUSTED) and store:
            ctx.evidence.extra[MANIFEST_STORE_KEY] = base64.b64encode(store).decode("ascii")
        if result.state is ProvenanceState.TRUSTED:
            ctx.evidence.provenance = evidence
            return StageOutcome(artifact=art.evolve(data=signed, content=new_content),
                                details=details, files=files)
        if result.state is ProvenanceState.VALID_UNTRUSTED:
            ctx.evidence.provenance = evidence
            return StageOutcome(
                passed=not self.require_trusted, details=details, files=files,
                artifact=art.evolve(data=signed, content=new_content),
                reason=("signed, but the signer does not chain to a configured trust anchor "
                        "(add its root to provenance.trust_anchors)"))
        return StageOutcome(passed=False, details=details,
                            reason=f"the signed output does not verify ({result.state.value}): "
                                   f"{result.reason}")
