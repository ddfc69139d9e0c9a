"""The ``c2pa.soft-binding`` assertion of every manifest guardrail signs with a watermark.

The algorithm names and binding values come from :mod:`guardrail._softbinding`
(``io.guardrail.watermark.<what>.v<N>``, derived from the registered scheme name).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._softbinding import encode_value, watermark_alg, watermark_binding

__all__ = ["soft_binding_assertion"]


def soft_binding_assertion(watermark: Mapping[str, Any], *, described: str) -> dict[str, Any]:
    """The ``c2pa.soft-binding`` assertion for an embedded watermark.

    A mark without an id (text) is bound by its key's public id, so the assertion still
    names the algorithm and the key that detects it.
    """
    binding = watermark_binding(watermark)
    if binding is None:
        alg = watermark_alg(str(watermark.get("scheme") or ""))
        value = encode_value(f"key_id:{watermark.get('key_id') or ''}".encode())
    else:
        alg, value = binding
    return {"label": "c2pa.soft-binding",
            "data": {"alg": alg, "blocks": [{"scope": {}, "value": value}], "name": described}}
