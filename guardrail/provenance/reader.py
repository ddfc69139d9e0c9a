"""Reading Content Credentials: c2pa's Reader, remote manifests, and what a manifest says.

:func:`read_store` runs c2pa's ``Reader`` (offline: OCSP and remote-manifest fetching
off) and returns its JSON report; :func:`fetch_remote_manifest` fetches a manifest stored
remotely, within a deadline; :func:`summarize_store` turns the report into guardrail's
summary - signer and issuer, signing time and timestamp authority, claim generator,
actions, ingredients (with their own validation failures), guardrail's generation
assertion - and whether the asset declares generation by a trained model.
"""

from __future__ import annotations

import io
import json
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._c2pa import c2pa_context, c2pa_module, call_with_deadline
from .trust import TrustSettings

__all__ = [
    "AI_SOURCE_TYPES",
    "NON_AI_SOURCE_TYPES",
    "dedupe_codes",
    "fetch_remote_manifest",
    "read_store",
    "summarize_store",
]

#: IPTC digital source types that declare generation by a trained model.
AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
#: Types that declare another origin (capture, human creation, non-AI algorithms).
NON_AI_SOURCE_TYPES = frozenset({
    "digitalCapture", "computationalCapture", "negativeFilm", "positiveFilm", "print",
    "minorHumanEdits", "humanEdits", "digitalCreation", "digitalArt", "screenCapture",
    "virtualRecording", "composite", "compositeCapture", "algorithmicMedia",
    "dataDrivenMedia", "algorithmicallyEnhanced", "compositeSynthetic", "trainedAlgorithmicData",
})
# failure codes that only say "not trusted here"; the rest make a manifest invalid
_MAX_REMOTE_BYTES = 16 * 1024 * 1024


def dedupe_codes(codes: Iterable[str]) -> list[str]:
    """The non-empty codes, each once, in order."""
    return list(dict.fromkeys(c for c in codes if c))


def _source_type_name(value: Any) -> str:
    return str(value or "").strip().rstrip("/").rsplit("/", 1)[-1]


def _ai_from_actions(actions: Sequence[Mapping[str, Any]]) -> bool | None:
    names = [_source_type_name(a.get("digitalSourceType")) for a in actions
             if a.get("digitalSourceType")]
    if any(n in AI_SOURCE_TYPES for n in names):
        return True
    if names and all(n in NON_AI_SOURCE_TYPES for n in names):
        return False
    return None


def _recorded_failures(ingredient: Mapping[str, Any]) -> list[str]:
    """Failure codes recorded in an ingredient assertion when it was used."""
    codes = [str(v.get("code", "")) for v in ingredient.get("validation_status") or []
             if isinstance(v, Mapping)]
    recorded = ingredient.get("validation_results") or {}
    if isinstance(recorded, Mapping):
        active = recorded.get("activeManifest") or {}
        codes += [str(v.get("code", "")) for v in active.get("failure") or []
                  if isinstance(v, Mapping)]
    return dedupe_codes(codes)


def _actions_of(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for assertion in manifest.get("assertions") or []:
        label = str(assertion.get("label", ""))
        if label.startswith("c2pa.actions"):
            data = assertion.get("data") or {}
            out.extend(dict(a) for a in data.get("actions") or [] if isinstance(a, Mapping))
    return out


def _assertion(manifest: Mapping[str, Any], label: str) -> Any:
    for assertion in manifest.get("assertions") or []:
        if assertion.get("label") == label:
            return assertion.get("data")
    return None


def _agent(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: value[k] for k in ("name", "version") if k in value} or dict(value)
    return value


def summarize_store(store: Mapping[str, Any]) -> tuple[dict[str, Any], bool | None]:
    """Everything but the failure codes, from c2pa's JSON report."""
    label = store.get("active_manifest")
    manifests = store.get("manifests") or {}
    am = manifests.get(label) or {}
    results = store.get("validation_results") or {}
    active = results.get("activeManifest") or {}
    sig = am.get("signature_info") or {}
    tsa, tsa_trusted = None, None
    for item in [*(active.get("success") or []), *(active.get("informational") or []),
                 *(active.get("failure") or [])]:
        code = str(item.get("code", ""))
        if code.startswith("timeStamp."):
            explanation = str(item.get("explanation", ""))
            if ": " in explanation and tsa is None:
                tsa = explanation.split(": ", 1)[1]
            if code == "timeStamp.trusted":
                tsa_trusted = True
            elif code == "timeStamp.untrusted":
                tsa_trusted = False
    actions = _actions_of(am)
    ai = _ai_from_actions(actions)
    if ai is None:  # an edit of a generated asset: look at its parent's manifest
        for ing in am.get("ingredients") or []:
            parent = manifests.get(ing.get("active_manifest") or "") or {}
            if ing.get("relationship") == "parentOf" and parent:
                ai = _ai_from_actions(_actions_of(parent))
                break
    deltas: dict[str, list[dict[str, Any]]] = {}
    for delta in results.get("ingredientDeltas") or []:
        uri = str(delta.get("ingredientAssertionURI", ""))
        fails = (delta.get("validationDeltas") or {}).get("failure") or []
        deltas[uri] = [{"code": f.get("code"), "explanation": f.get("explanation")}
                       for f in fails]
    ingredients = []
    for ing in am.get("ingredients") or []:
        ing_label = str(ing.get("label", ""))
        fails = next((v for uri, v in deltas.items()
                      if ing_label and uri.endswith(f"{label}/c2pa.assertions/{ing_label}")), [])
        ingredients.append({
            "title": ing.get("title"), "format": ing.get("format"),
            "relationship": ing.get("relationship"), "label": ing_label or None,
            "has_manifest": bool(ing.get("active_manifest")),
            "failures": dedupe_codes(f["code"] for f in fails),
            "recorded_failures": _recorded_failures(ing),
        })
    # what earlier claim generators recorded about the ingredients they used, anywhere in
    # the provenance chain (an invalid ingredient does not invalidate the active manifest)
    history = []
    for m_label, m in manifests.items():
        for ing in m.get("ingredients") or []:
            codes = _recorded_failures(ing)
            if codes:
                history.append({"manifest": m_label, "ingredient": ing.get("title"),
                                "failures": codes})
    generators = [_agent(g) for g in am.get("claim_generator_info") or []]
    wm = _assertion(am, "c2pa.soft-binding")
    tm = _assertion(am, "cawg.training-mining")
    return {
        "label": label,
        "title": am.get("title"),
        "claim_generator": generators or am.get("claim_generator"),
        "signer": {"common_name": sig.get("common_name"), "issuer": sig.get("issuer"),
                   "serial_number": sig.get("cert_serial_number"), "algorithm": sig.get("alg")},
        "signing_time": sig.get("time"),
        "timestamp_authority": tsa,
        "timestamp_trusted": tsa_trusted,
        "actions": [{k: (_agent(v) if k == "softwareAgent" else v) for k, v in a.items()}
                    for a in actions],
        "ingredients": ingredients,
        "ingredient_history_failures": history,
        "assertions": [a.get("label") for a in am.get("assertions") or []],
        "generation": _assertion(am, "org.guardrail.generation"),
        "text_digest": _assertion(am, "org.guardrail.text"),
        "soft_binding": wm,
        "training_mining": (tm or {}).get("entries") if isinstance(tm, Mapping) else None,
        "validation": {
            "c2pa_state": store.get("validation_state"),
            "failure": [{"code": f.get("code"), "explanation": f.get("explanation")}
                        for f in active.get("failure") or []],
            "informational": dedupe_codes(str(i.get("code", ""))
                                          for i in active.get("informational") or []),
        },
        "manifests_in_store": len(manifests),
    }, ai


def read_store(fmt: str | None, data: bytes, manifest_data: bytes | None,
               trust: TrustSettings, *, detailed: bool = False, timeout_s: float | None = None
               ) -> tuple[dict[str, Any], bool | None]:
    """c2pa's JSON report (plus ``_detailed``: the detailed report, when asked) and
    whether the manifest was embedded in the asset.

    c2pa reads ``data`` (bytes already read within the file-size limit) from memory. With
    ``timeout_s`` the read runs under that deadline (:class:`TimeoutError` past it; the
    native call is abandoned, not killed).
    """
    c2pa = c2pa_module()
    ctx = c2pa_context(trust.c2pa_settings())

    def read() -> tuple[dict[str, Any], bool | None]:
        reader = c2pa.Reader(fmt, io.BytesIO(data), manifest_data, context=ctx)
        try:
            store = json.loads(reader.json())
            extra = json.loads(reader.detailed_json()) if detailed else None
            try:
                embedded = bool(reader.is_embedded())
            except c2pa.C2paError:
                embedded = None
        finally:
            reader.close()
        if extra is not None:
            store["_detailed"] = extra
        return store, embedded

    return call_with_deadline(read, timeout_s, what="reading the Content Credentials")


def fetch_remote_manifest(url: str, timeout_s: float) -> bytes:
    """The manifest store at ``url`` (http(s) only, at most 16 MB), within ``timeout_s``.

    Raises :class:`ValueError`, :class:`OSError` or :class:`TimeoutError` when it cannot
    be fetched.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url}")

    def get() -> bytes:
        req = urllib.request.Request(url, headers={"Accept": "application/c2pa"})
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            data = resp.read(_MAX_REMOTE_BYTES + 1)
        if len(data) > _MAX_REMOTE_BYTES:
            raise ValueError("the remote manifest is larger than 16 MB")
        return data

    return call_with_deadline(get, timeout_s, what="fetching the remote manifest")
