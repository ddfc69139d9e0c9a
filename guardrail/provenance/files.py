"""Content Credentials for a file made outside a guard.

A guard signs its own outputs (:class:`~guardrail.provenance.ProvenanceStage`);
:func:`sign_file` signs a file that a generator produced elsewhere, with the signing
identity, options and trust anchors of the ``[provenance]`` configuration.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import UnsupportedMediaError
from ..media import MEDIA_TYPES, atomic_write, check_output_path, sniff_media_type
from . import (
    ManifestInfo,
    ProvenanceSettings,
    result_to_dict,
    sign_bytes,
    sign_text,
    verify_bytes,
    verify_text,
    write_sidecar,
)

__all__ = ["sign_file"]

PathLike = str | os.PathLike[str]


def sign_file(config: Any, *, input: PathLike, output: PathLike,
              media_type: str | None = None, model_id: str = "unknown",
              model_revision: str | None = None, text_mode: str | None = None) -> dict[str, Any]:
    """Sign an existing file produced by a generator and write the signed copy.

    The manifest declares the file as made by a trained model (``model_id``). Text is
    signed as configured (``provenance.text_mode``) unless ``text_mode`` is given; in
    sidecar mode the manifest goes to ``<output>.c2pa``. The signed file is verified.

    Returns
    -------
    dict
        ``input``, ``output``, ``media_type``, ``sidecar`` (its path or ``None``),
        ``bytes_added`` and ``verification`` (the verification result as a dict).
    """
    src = Path(input).expanduser()
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise UnsupportedMediaError(f"{str(src)!r}: cannot read ({exc.strerror or exc})") \
            from None
    dest = check_output_path(output)
    settings = ProvenanceSettings.from_config(config)
    options = settings.sign_options()
    if text_mode:
        options = replace(options, text_mode=text_mode)
    signer = settings.signer()
    trust = settings.trust()
    mt = media_type or MEDIA_TYPES.get(src.suffix.lower(), (None, None))[0] \
        or sniff_media_type(data)
    if not mt:
        raise UnsupportedMediaError(f"{str(src)!r}: not a file type that can be signed")
    info = ManifestInfo(model_id=model_id, model_revision=model_revision,
                        training_mining=settings.training_mining(), title=src.name)
    sidecar = None
    if mt == "text/plain":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsupportedMediaError(f"{str(src)!r}: text is not valid UTF-8") from None
        signed_text = sign_text(text, signer=signer, manifest_info=info, options=options)
        signed = signed_text.text.encode("utf-8")
        result = verify_text(signed_text.text, trust=trust,
                             sidecar=signed_text.manifest if signed_text.mode == "sidecar"
                             else None)
        if signed_text.mode == "sidecar":  # the sidecar first: alone it is harmless
            sidecar = str(write_sidecar(dest, signed_text.manifest))
        atomic_write(dest, signed)
    else:
        signed = sign_bytes(data, mt, signer=signer, manifest_info=info, options=options)
        result = verify_bytes(signed, mt, trust=trust)
        atomic_write(dest, signed)
    return {"input": str(src), "output": str(dest), "media_type": mt, "sidecar": sidecar,
            "bytes_added": len(signed) - len(data), "verification": result_to_dict(result)}
