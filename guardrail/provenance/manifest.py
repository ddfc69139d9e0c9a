"""Manifests: what the Content Credentials of an output say, and c2pa's Builder that signs them.

:class:`ManifestInfo` describes one generated output; :func:`build_manifest_definition`
turns it into the c2pa-python manifest definition (see :mod:`guardrail.provenance.sign`
for the assertions); :func:`run_builder` signs a definition onto the bytes of an asset
(or, with ``no_embed``, into a standalone manifest store) with a
:class:`~guardrail.provenance.signer.ProvenanceSigner`.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .._types import GenerationMetadata, _jsonable
from ..errors import SigningError
from ._c2pa import c2pa_context, c2pa_module, call_with_deadline
from .signer import ProvenanceSigner, signer_error_message
from .softbinding import soft_binding_assertion

__all__ = [
    "AI_SOURCE_TYPE",
    "GENERATION_LABEL",
    "ManifestInfo",
    "SignOptions",
    "THUMBNAIL_POLICIES",
    "TRAINING_MINING_USES",
    "build_manifest_definition",
    "run_builder",
    "signing_settings",
]

#: IPTC digital source type for media made by a trained model.
AI_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
#: Label of guardrail's own assertion.
GENERATION_LABEL = "org.guardrail.generation"
#: Thumbnail policies: none; small (guardrail's own JPEG); full (c2pa's 1024-px default).
THUMBNAIL_POLICIES = ("none", "small", "full")
#: Values of a CAWG training-and-data-mining entry ("" omits the entry).
TRAINING_MINING_USES = ("allowed", "notAllowed", "constrained", "")
_TRAINING_MINING_KEYS = ("ai_training", "ai_generative_training", "ai_inference", "data_mining")

_GUARDRAIL_VERSION = "0.1.0"


@functools.cache
def _guardrail_version() -> str:
    try:
        from importlib.metadata import version

        return version("guardrail")
    except Exception:  # noqa: BLE001 - metadata missing in odd installs
        return _GUARDRAIL_VERSION


@dataclass(frozen=True)
class ManifestInfo:
    """What the manifest says about one generated output.

    Parameters
    ----------
    model_id : str
        The generator (hub id, path or ``embedded:NAME``); the ``softwareAgent``.
    model_revision : str, optional
        Commit hash / version / file digest of the weights.
    prompt_hash : str
        Keyed prompt hash (``hmac-sha256:...``); the prompt itself is never written.
    parameters : mapping
        Generation parameters (JSON-able values; others are converted to text).
    seed : int, optional
    watermark : mapping, optional
        The watermark evidence (``scheme``, ``version``, ``key_id``, ``payload``) when a
        watermark was embedded; adds ``c2pa.watermarked`` and ``c2pa.soft-binding``.
    stages : sequence of mapping
        The guard's stage outcomes so far (``stage``, ``status``, ``reason``).
    training_mining : mapping, optional
        CAWG entries, e.g. ``{"ai_generative_training": "notAllowed"}``; ``None`` or all
        empty omits the assertion. ``constraint_info`` (text) is added to constrained ones.
    digital_source_type : str
        IPTC URI; default ``trainedAlgorithmicMedia``.
    created_at : str, optional
        ISO 8601 time of generation (default: now).
    title : str, optional
    """

    model_id: str
    model_revision: str | None = None
    prompt_hash: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None
    watermark: Mapping[str, Any] | None = None
    stages: Sequence[Mapping[str, Any]] = ()
    training_mining: Mapping[str, str] | None = None
    digital_source_type: str = AI_SOURCE_TYPE
    created_at: str | None = None
    title: str | None = None

    @classmethod
    def from_metadata(cls, metadata: GenerationMetadata, **kw: Any) -> ManifestInfo:
        """From an artifact's :class:`~guardrail.GenerationMetadata` (plus keyword fields)."""
        return cls(model_id=metadata.model_id, model_revision=metadata.model_revision,
                   prompt_hash=metadata.prompt_hash, parameters=dict(metadata.parameters),
                   seed=metadata.seed, **kw)


@dataclass(frozen=True)
class SignOptions:
    """How manifests are made.

    Parameters
    ----------
    thumbnail : {"small", "none", "full"}
        ``small`` (default): a JPEG of ``thumbnail_long_edge`` px made by guardrail,
        ~3 KB, ~1-4 ms; ``none``; ``full``: c2pa's own 1024-px thumbnail (~80 ms,
        ~100 KB for a 1024-px image).
    thumbnail_long_edge : int
    thumbnail_quality : int
        JPEG quality of the small thumbnail.
    claim_generator : str
        Name written as the claim generator (with guardrail's version).
    text_mode : {"embedded", "sidecar"}
        For text: the manifest in invisible Unicode variation selectors at the end of
        the text (default), or a separate ``.c2pa`` manifest store.
    """

    thumbnail: str = "small"
    thumbnail_long_edge: int = 256
    thumbnail_quality: int = 70
    claim_generator: str = "guardrail"
    text_mode: str = "embedded"

    def __post_init__(self) -> None:
        if self.thumbnail not in THUMBNAIL_POLICIES:
            raise ValueError(f"thumbnail must be one of {THUMBNAIL_POLICIES}, "
                             f"got {self.thumbnail!r}")
        if self.text_mode not in ("embedded", "sidecar"):
            raise ValueError(f"text_mode must be 'embedded' or 'sidecar', got {self.text_mode!r}")
        if not 16 <= int(self.thumbnail_long_edge) <= 2048:
            raise ValueError("thumbnail_long_edge must be between 16 and 2048")


# -- the manifest -------------------------------------------------------------------------
def _training_mining(entries: Mapping[str, str] | None) -> dict[str, Any] | None:
    if not entries:
        return None
    info = str(entries.get("constraint_info", "") or "")
    out: dict[str, Any] = {}
    for key in _TRAINING_MINING_KEYS:
        use = str(entries.get(key, "") or "")
        if not use:
            continue
        if use not in TRAINING_MINING_USES:
            raise ValueError(f"training_mining.{key} = {use!r}; choose allowed, notAllowed, "
                             "constrained or an empty string")
        entry: dict[str, Any] = {"use": use}
        if use == "constrained" and info:
            entry["constraint_info"] = info
        out[f"cawg.{key}"] = entry
    return {"entries": out} if out else None


def _stage_summary(stages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in stages:
        item = {"stage": str(s.get("stage", "")), "status": str(_jsonable(s.get("status", "")))}
        if s.get("reason"):
            item["reason"] = str(s["reason"])[:300]
        out.append(item)
    return out


def build_manifest_definition(
    info: ManifestInfo,
    *,
    claim_generator: str = "guardrail",
    thumbnail_identifier: str | None = None,
    extra_assertions: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The c2pa-python manifest definition (a dict) for ``info``."""
    version = _guardrail_version()
    agent: dict[str, Any] = {"name": info.model_id}
    if info.model_revision:
        agent["version"] = str(info.model_revision)
    when = info.created_at or datetime.now(UTC).isoformat(timespec="seconds")
    actions: list[dict[str, Any]] = [{
        "action": "c2pa.created",
        "digitalSourceType": info.digital_source_type,
        "softwareAgent": agent,
        "when": when,
    }]
    assertions: list[dict[str, Any]] = []
    wm = dict(info.watermark) if info.watermark else None
    if wm and wm.get("scheme"):
        scheme = str(wm["scheme"])
        wm_version = str(wm.get("version") or "1")
        described = f"{scheme} v{wm_version}"
        if wm.get("key_id"):
            described += f", key id {wm['key_id']}"
        actions.append({
            "action": "c2pa.watermarked",
            "softwareAgent": {"name": claim_generator, "version": version},
            "parameters": {"description": f"invisible watermark {described}"},
        })
        # the watermark id (payload) under guardrail's reverse-DNS algorithm name
        assertions.append(soft_binding_assertion(wm, described=described))
    generation: dict[str, Any] = {
        "model_id": info.model_id,
        "model_revision": info.model_revision,
        "prompt_hash": info.prompt_hash,
        "parameters": _jsonable(dict(info.parameters)),
        "seed": info.seed,
        "stages": _stage_summary(info.stages),
    }
    if wm:
        generation["watermark"] = {k: _jsonable(wm.get(k)) for k in
                                   ("scheme", "version", "key_id", "payload") if k in wm}
    assertions.insert(0, {"label": "c2pa.actions.v2", "data": {"actions": actions}})
    assertions.append({"label": GENERATION_LABEL, "data": generation})
    tm = _training_mining(info.training_mining)
    if tm:
        assertions.append({"label": "cawg.training-mining", "data": tm})
    assertions.extend(dict(a) for a in extra_assertions)
    definition: dict[str, Any] = {
        "claim_generator_info": [{"name": claim_generator, "version": version}],
        "title": info.title or "generated output",
        "assertions": assertions,
    }
    if thumbnail_identifier:
        definition["thumbnail"] = {"format": "image/jpeg", "identifier": thumbnail_identifier}
    return definition


# -- signing ------------------------------------------------------------------------------
def signing_settings(options: SignOptions) -> dict[str, Any]:
    """c2pa settings used for signing (see :mod:`guardrail.provenance.sign` on speed)."""
    return {
        "builder": {"thumbnail": {"enabled": options.thumbnail == "full"}},
        "verify": {"verify_after_sign": True, "remote_manifest_fetch": False,
                   "ocsp_fetch": False},
    }


def run_builder(
    definition: Mapping[str, Any],
    media_type: str,
    data: bytes,
    *,
    signer: ProvenanceSigner,
    options: SignOptions,
    resources: Mapping[str, bytes] | None = None,
    no_embed: bool = False,
) -> tuple[bytes, bytes]:
    """Sign ``data`` with ``definition``; return (signed asset bytes, manifest store bytes).

    Raises
    ------
    SigningError
        The timestamp authority is unreachable, the KMS callback failed, or c2pa refused.
    """
    c2pa = c2pa_module()
    ctx = c2pa_context(signing_settings(options))
    signer.preflight()

    def sign() -> tuple[bytes, bytes]:
        callback_errors: list[BaseException] = []
        try:
            with signer.native() as (native, callback_errors):
                builder = c2pa.Builder(dict(definition), context=ctx)
                for name, blob in (resources or {}).items():
                    builder.add_resource(name, io.BytesIO(blob))
                if no_embed:
                    builder.set_no_embed()
                out = io.BytesIO()
                manifest = builder.sign(native, media_type, io.BytesIO(data), out)
                return out.getvalue(), bytes(manifest)
        except c2pa.C2paError as exc:
            raise SigningError(signer_error_message(exc, signer, callback_errors)) from None

    timeout = signer.tsa_timeout_s * 2 if signer.tsa_url else None
    try:
        return call_with_deadline(sign, timeout, what="signing with a timestamp")
    except TimeoutError as exc:
        raise SigningError(f"{exc}: the timestamp authority {signer.tsa_url} did not answer "
                           "in time; nothing was signed") from None
