"""One row per scanned file: the Parquet schema and the row built from a verification.

The row is built from :meth:`guardrail.verify.VerifyResult.to_dict` (the JSON contract of
``guardrail verify --json``), read generically: the flat columns pick out the fields a
collection is queried by, and the ``verify`` column keeps the whole JSON, so fields that
verification adds later are in every row without a change here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["COLUMNS", "error_row", "row_from_verify", "schema"]

#: the columns of a scan's Parquet file, in order, with their Arrow types (by name)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("path", "string"),               # as listed: an absolute local path or a URL
    ("size", "int64"),                # bytes; null when the file could not be read
    ("sha256", "string"),             # of the bytes verified; null when not read
    ("media_type", "string"),
    ("modality", "string"),
    ("label", "string"),              # the verdict label of ``guardrail verify``
    ("summary", "string"),
    ("provenance_state", "string"),   # TRUSTED | VALID_UNTRUSTED | INVALID | ABSENT | ERROR
    ("signer", "string"),
    ("ai_declared", "bool"),          # the credentials declare AI generation
    ("watermark_scheme", "string"),
    ("watermark_detected", "bool"),   # null: not performed
    ("watermark_id", "string"),
    ("watermark_p_value", "double"),
    ("record_id", "string"),          # the record recovered through the watermark
    ("record_match", "double"),       # its content-match score
    ("detectors", "detectors"),       # list of {detector, probability, decision}
    ("detector_synthetic", "bool"),   # any detector decided "synthetic"
    ("error", "string"),              # why the scan itself failed for this file
    ("verify", "string"),             # the whole ``guardrail verify --json`` object
)


#: a Python object's memory address in a message (``<_io.BytesIO object at 0x7f...>``)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+>")


def _scrub(text: str) -> str:
    """``text`` without memory addresses, so that a row is the same on every run."""
    return _ADDRESS.sub(">", text)


def schema() -> Any:
    """The :data:`COLUMNS` as a ``pyarrow.Schema``."""
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "bool": pa.bool_(),
             "double": pa.float64(),
             "detectors": pa.list_(pa.struct([("detector", pa.string()),
                                              ("probability", pa.float64()),
                                              ("decision", pa.bool_())]))}
    return pa.schema([(name, types[kind]) for name, kind in COLUMNS])


def _get(d: Mapping[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, Mapping):
            return None
        d = d.get(key)
    return d


def _float(x: Any) -> float | None:
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None


def _bool(x: Any) -> bool | None:
    return None if x is None else bool(x)


def _str(x: Any) -> str | None:
    return None if x is None else str(x)


def row_from_verify(path: str, size: int | None, sha256: str | None,
                    result: Mapping[str, Any], *, error: str | None = None) -> dict[str, Any]:
    """The row of one file from its verification JSON (``VerifyResult.to_dict()``).

    ``result["file"]`` is replaced by ``path`` (a file fetched from a URL is verified from
    a local copy); every other field is kept as verification wrote it, less the memory
    addresses that some decoders' messages carry (a row is the same on every run).
    """
    d = dict(result)
    d["file"] = path
    wm = d.get("watermark") if isinstance(d.get("watermark"), Mapping) else None
    recovered = d.get("recovered") if isinstance(d.get("recovered"), Mapping) else None
    dets = [{"detector": _str(x.get("detector")), "probability": _float(x.get("probability")),
             "decision": None if x.get("decision") is None else bool(x.get("decision"))}
            for x in (d.get("detectors") or []) if isinstance(x, Mapping)]
    wm_payload = _get(wm, "payload")
    return {
        "path": path, "size": size, "sha256": sha256,
        "media_type": _str(d.get("media_type")), "modality": _str(d.get("modality")),
        "label": _str(_get(d, "verdict", "label")),
        "summary": _scrub(_str(_get(d, "verdict", "summary")) or "") or None,
        "provenance_state": _str(_get(d, "provenance", "state")),
        "signer": _str(_get(d, "provenance", "signer")),
        "ai_declared": _bool(_get(d, "provenance", "ai_generated")),
        "watermark_scheme": _str(_get(wm, "scheme")),
        "watermark_detected": _bool(_get(wm, "detected")),
        "watermark_id": _str(wm_payload) if wm_payload not in (None, "") else None,
        "watermark_p_value": _float(_get(wm, "p_value")),
        "record_id": _str(_get(recovered, "report_id")),
        "record_match": _float(_get(recovered, "content_match")),
        "detectors": dets,
        "detector_synthetic": any(x["decision"] for x in dets) if dets else None,
        "error": error,
        "verify": _scrub(json.dumps(d, sort_keys=True, ensure_ascii=False, default=str)),
    }


def error_row(path: str, error: str, *, size: int | None = None,
              sha256: str | None = None) -> dict[str, Any]:
    """The row of a file the scan could not verify at all (``label``: "Could not be
    verified", ``error``: why)."""
    return {name: None for name, _ in COLUMNS} | {
        "path": path, "size": size, "sha256": sha256, "label": "Could not be verified",
        "summary": f"Could not be verified: {error}", "detectors": [], "error": error}
