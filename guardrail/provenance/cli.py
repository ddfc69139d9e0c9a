"""Bodies of the ``guardrail provenance ...`` commands.

Each function takes the loaded :class:`~guardrail.Config` and plain values (what argparse
produced) and returns a JSON-able dict (the ``--json`` output); the CLI module only adds
the argument parsing and prints. Errors are :class:`~guardrail.errors.GuardrailError`
subclasses with the CLI's exit codes.

=================================  ====================================================
``keys init`` (C2PA part)         :func:`cmd_init_dev`
``provenance check-cert``          :func:`cmd_check_cert`
``provenance sign IN OUT``         :func:`cmd_sign`
``provenance verify FILE``         :func:`cmd_verify` (exit code: :func:`verify_exit_code`)
``provenance bench``               :func:`cmd_bench`
=================================  ====================================================
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._types import ProvenanceState
from ..errors import UnsupportedMediaError

__all__ = [
    "cmd_bench",
    "cmd_check_cert",
    "cmd_init_dev",
    "cmd_sign",
    "cmd_verify",
    "format_verify",
    "verify_exit_code",
]

PathLike = str | os.PathLike[str]


def cmd_init_dev(config: Any) -> dict[str, Any]:
    """Create the development signing chain in ``<keys_dir>/c2pa`` (never overwriting).

    Returns the file paths, whether they were created now, and the signer certificate.
    """
    from .keys import init_dev_chain

    paths = init_dev_chain(config.keys_dir)
    out = paths.to_dict()
    out["note"] = ("development only: outputs signed with this chain verify as TRUSTED only "
                   "where trust-anchors.pem is trusted (provenance.trust_dev_root)")
    return out


def cmd_check_cert(config: Any, *, chain: PathLike | None = None, key: PathLike | None = None,
                   algorithm: str | None = None) -> dict[str, Any]:
    """Check a signing certificate (default: the configured one) the way c2pa will.

    Raises :class:`~guardrail.provenance.CertificateError` (exit 12) naming the problem.
    """
    from .keys import check_signing_certificate, read_certificate_file, read_private_key_file
    from .settings import ProvenanceSettings

    if chain is None:
        signer = ProvenanceSettings.from_config(config).signer()
        summary = signer.certificate
        tsa = signer.tsa_url
    else:
        summary = check_signing_certificate(
            read_certificate_file(chain),
            private_key_pem=read_private_key_file(key) if key else None, algorithm=algorithm)
        tsa = None
    return {"ok": True, "certificate": summary.to_dict() if summary else None,
            "timestamp_authority": tsa}


def cmd_sign(config: Any, *, input: PathLike, output: PathLike,
             media_type: str | None = None, model_id: str = "unknown",
             model_revision: str | None = None, text_mode: str | None = None) -> dict[str, Any]:
    """Sign an existing file produced by a generator (outside a guard) and write it.

    The manifest declares the file as made by a trained model (``model_id``). Text is
    signed as configured (``provenance.text_mode``) unless ``text_mode`` is given; in
    sidecar mode the manifest goes to ``<output>.c2pa``. The signed file is verified and
    the result returned.
    """
    from dataclasses import replace

    from ..media import MEDIA_TYPES, atomic_write, check_output_path, sniff_media_type
    from .settings import ProvenanceSettings
    from .sign import ManifestInfo, sign_bytes
    from .text import sign_text, write_sidecar
    from .verify import result_to_dict, verify_bytes, verify_text

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


def cmd_verify(config: Any, *, path: PathLike, sidecar: PathLike | None = None,
               trust_anchors: Sequence[PathLike] = (), no_dev_root: bool = False,
               remote_manifest_fetch: bool | None = None) -> dict[str, Any]:
    """Verify a file's Content Credentials; never raises for a bad file (state ERROR).

    ``trust_anchors`` are PEM bundles trusted in addition to the configured ones;
    ``no_dev_root`` stops trusting the development root for this call.
    """
    from dataclasses import replace

    from .settings import ProvenanceSettings
    from .verify import TrustSettings, result_to_dict, verify_path

    settings = ProvenanceSettings.from_config(config)
    files = [f for f in settings.trust_files()
             if not (no_dev_root and f.name == "trust-anchors.pem"
                     and f.parent == settings.keys_dir / "c2pa")]
    files += [Path(p).expanduser() for p in trust_anchors]
    trust = TrustSettings.from_files(
        files, remote_manifest_fetch=bool(settings.data["remote_manifest_fetch"]),
        remote_fetch_timeout_s=float(settings.data["remote_fetch_timeout_s"]))
    if remote_manifest_fetch is not None:
        trust = replace(trust, remote_manifest_fetch=remote_manifest_fetch)
    result = verify_path(path, trust=trust, sidecar=sidecar)
    out = result_to_dict(result)
    out["path"] = str(Path(path).expanduser())
    out["trust_anchors"] = list(trust.sources)
    return out


def verify_exit_code(result: dict[str, Any]) -> int:
    """Suggested exit code for ``provenance verify``: 0 only for TRUSTED.

    VALID_UNTRUSTED, INVALID and ABSENT exit 3 (the file does not meet the policy "trusted
    Content Credentials"); ERROR exits 4 (the file could not be checked).
    """
    state = result.get("state")
    if state == ProvenanceState.TRUSTED.value:
        return 0
    if state == ProvenanceState.ERROR.value:
        return 4
    return 3


def format_verify(result: dict[str, Any]) -> str:
    """A short human-readable report of :func:`cmd_verify`'s result."""
    m = result.get("manifest") or {}
    lines = [f"{result.get('path', '')}: {result['state']}", f"  {result.get('reason')}"]
    if result.get("failures"):
        lines.append(f"  failures: {', '.join(result['failures'])}")
    if result.get("signer"):
        signer = m.get("signer") or {}
        lines.append(f"  signer: {result['signer']} (issuer {signer.get('issuer')})")
    if m.get("signing_time") or m.get("timestamp_authority"):
        lines.append(f"  signed: {m.get('signing_time')} (timestamp: "
                     f"{m.get('timestamp_authority') or 'none'})")
    ai = result.get("ai_generated")
    lines.append(f"  AI-generated: {'yes' if ai else 'no' if ai is False else 'not declared'}")
    for a in m.get("actions") or []:
        agent = a.get("softwareAgent")
        if isinstance(agent, dict):
            agent = agent.get("name")
        line = f"  action: {a.get('action')}"
        if agent:
            line += f" by {agent}"
        if a.get("digitalSourceType"):
            line += f" ({str(a['digitalSourceType']).rsplit('/', 1)[-1]})"
        lines.append(line)
    for ing in m.get("ingredients") or []:
        fails = f" failures: {', '.join(ing['failures'])}" if ing.get("failures") else ""
        lines.append(f"  ingredient: {ing.get('title')} ({ing.get('relationship')}){fails}")
    return "\n".join(lines)


def cmd_bench(config: Any, *, iterations: int = 20,
              out: PathLike | None = None) -> dict[str, Any]:
    """Run the C2PA benchmark; with ``out``, write its section of docs/BENCHMARKS.md."""
    from .bench import render_markdown, run_provenance_benchmark

    result = run_provenance_benchmark(iterations=iterations)
    if out is not None:
        from ..bench import write_section

        write_section(Path(out), "provenance", render_markdown(result))
        result["written"] = str(out)
    return result
