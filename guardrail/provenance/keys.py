"""Keys for Content Credentials: the development signing chain.

:func:`init_dev_chain` creates a development chain: root CA -> intermediate CA -> ES256
(P-256) signer, plus ``trust-anchors.pem`` (the dev root) under which guardrail's own
verifier reports ``TRUSTED``. Only the signer's private key is kept (mode 0600); the CA
keys are discarded once the chain is issued, so nobody can issue more certificates under
the dev root. Existing files are never overwritten. :func:`init_signing_chain` does the
same for ``guardrail keys init`` and describes the result like the other key files.

Development certificates are for development: production deployments sign with a
certificate from a CA on the C2PA trust list (or their own PKI) and turn
``provenance.trust_dev_root`` off.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import KeyFileError
from ..keys import write_secret_file
from ._c2pa import c2pa_module
from .certs import (
    CertificateSummary,
    check_signing_certificate,
    encode_certificate,
    encode_private_key,
    require_cryptography,
)

__all__ = [
    "DEV_CHAIN_DIR",
    "DevChainPaths",
    "dev_chain_paths",
    "init_dev_chain",
    "init_signing_chain",
]

#: Folder under ``keys_dir`` holding the development chain.
DEV_CHAIN_DIR = "c2pa"


@dataclass(frozen=True)
class DevChainPaths:
    """Files of a development chain (see :func:`init_dev_chain`)."""

    folder: Path
    signer_key: Path
    signer_chain: Path
    root_cert: Path
    trust_anchors: Path
    created: bool = False
    certificate: CertificateSummary | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder), "signer_key": str(self.signer_key),
            "signer_chain": str(self.signer_chain), "root_cert": str(self.root_cert),
            "trust_anchors": str(self.trust_anchors), "created": self.created,
            "certificate": self.certificate.to_dict() if self.certificate else None,
        }


def dev_chain_paths(keys_dir: str | os.PathLike[str]) -> DevChainPaths:
    """Where :func:`init_dev_chain` keeps (or would keep) the chain under ``keys_dir``."""
    folder = Path(keys_dir).expanduser() / DEV_CHAIN_DIR
    return DevChainPaths(folder=folder, signer_key=folder / "dev-signer.key",
                         signer_chain=folder / "dev-signer-chain.pem",
                         root_cert=folder / "dev-root.pem",
                         trust_anchors=folder / "trust-anchors.pem")


# -- certificate issuing ------------------------------------------------------------------
def _name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "guardrail (development only)"),
    ])


def _issue_certificate(
    *,
    subject: str,
    public_key: Any,
    issuer_key: Any,
    issuer_name: Any = None,
    issuer_public_key: Any = None,
    ca: bool = False,
    path_length: int | None = None,
    days: int = 730,
    not_before: dt.datetime | None = None,
    key_usage: bool = True,
    digital_signature: bool = True,
    ekus: Sequence[str] | None = ("1.3.6.1.5.5.7.3.4", "1.3.6.1.5.5.7.3.36"),
    basic_constraints: bool = True,
) -> Any:
    """Issue one X.509 v3 certificate (also used by the tests to make bad ones).

    ``issuer_name=None`` makes it self-signed. ``ekus=None`` omits the EKU extension.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.x509.oid import ObjectIdentifier

    start = not_before or (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5))
    name = _name(subject)
    builder = (x509.CertificateBuilder()
               .subject_name(name)
               .issuer_name(issuer_name if issuer_name is not None else name)
               .public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(start)
               .not_valid_after(start + dt.timedelta(days=days)))
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length),
                                        critical=True)
    if key_usage:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=digital_signature and not ca, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            key_cert_sign=ca, crl_sign=ca, encipher_only=False, decipher_only=False),
            critical=True)
    if ekus is not None and not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ObjectIdentifier(o) for o in ekus]), critical=False)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                                    critical=False)
    builder = builder.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_public_key if issuer_public_key is not None else issuer_key.public_key()),
        critical=False)
    algorithm = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(issuer_key, algorithm)


def _write_public_file(path: Path, data: bytes) -> None:
    """Write a public file (certificate) with mode 0644, never replacing an existing one."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        raise KeyFileError(f"{str(path)!r} already exists; refusing to overwrite") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write {str(path)!r}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def init_dev_chain(keys_dir: str | os.PathLike[str], *, days: int = 730) -> DevChainPaths:
    """Create the development signing chain under ``<keys_dir>/c2pa`` (never overwriting).

    Creates a root CA and an intermediate CA (P-256, CA keys discarded after use) and an
    ES256 end-entity certificate with ``digitalSignature`` and the EKUs
    ``emailProtection`` + ``documentSigning``. Files: ``dev-signer.key`` (mode 0600),
    ``dev-signer-chain.pem`` (signer + intermediate), ``dev-root.pem`` and
    ``trust-anchors.pem`` (the dev root: the trust configuration under which guardrail's
    verifier reports ``TRUSTED``).

    Parameters
    ----------
    keys_dir : path
        The key folder (``config.keys_dir``); created with mode 0700 if missing.
    days : int, optional
        Validity of the signer certificate. Without a timestamp authority, Content
        Credentials stop validating once it expires.

    Returns
    -------
    DevChainPaths
        With ``created=False`` when a complete chain already existed (it is kept as is).

    Raises
    ------
    KeyFileError
        When only part of a chain exists (nothing is overwritten) or files cannot be
        written.
    DependencyError
        cryptography is not installed.
    """
    require_cryptography()
    from cryptography.hazmat.primitives.asymmetric import ec

    paths = dev_chain_paths(keys_dir)
    files = [paths.signer_key, paths.signer_chain, paths.root_cert, paths.trust_anchors]
    present = [p for p in files if p.exists() or p.is_symlink()]
    if len(present) == len(files):
        chain = paths.signer_chain.read_text(encoding="ascii", errors="replace")
        summary = check_signing_certificate(chain)
        return DevChainPaths(**{**_fields(paths), "created": False, "certificate": summary})
    if present:
        missing = [p.name for p in files if p not in present]
        raise KeyFileError(
            f"incomplete development chain in {str(paths.folder)!r}: "
            f"{', '.join(p.name for p in present)} exist(s) but {', '.join(missing)} "
            "is missing; nothing was overwritten - move the folder away to create a new chain")
    paths.folder.mkdir(parents=True, exist_ok=True, mode=0o700)

    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _issue_certificate(subject="guardrail development root CA",
                              public_key=root_key.public_key(), issuer_key=root_key,
                              ca=True, path_length=1, days=max(days, 3650))
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = _issue_certificate(subject="guardrail development intermediate CA",
                               public_key=inter_key.public_key(), issuer_key=root_key,
                               issuer_name=root.subject, ca=True, path_length=0,
                               days=max(days, 3650))
    signer_key = ec.generate_private_key(ec.SECP256R1())
    signer = _issue_certificate(subject="guardrail development signer",
                                public_key=signer_key.public_key(), issuer_key=inter_key,
                                issuer_name=inter.subject, days=days)
    chain_pem = encode_certificate(signer) + encode_certificate(inter)
    key_pem = encode_private_key(signer_key)
    summary = check_signing_certificate(chain_pem.decode("ascii"),
                                        private_key_pem=key_pem.decode("ascii"))
    # key first: if it exists already, nothing else is touched
    write_secret_file(paths.signer_key, key_pem)
    _write_public_file(paths.signer_chain, chain_pem)
    _write_public_file(paths.root_cert, encode_certificate(root))
    _write_public_file(paths.trust_anchors, encode_certificate(root))
    del root_key, inter_key  # the CA keys are never written anywhere
    return DevChainPaths(**{**_fields(paths), "created": True, "certificate": summary})


def _fields(paths: DevChainPaths) -> dict[str, Any]:
    return {"folder": paths.folder, "signer_key": paths.signer_key,
            "signer_chain": paths.signer_chain, "root_cert": paths.root_cert,
            "trust_anchors": paths.trust_anchors}


def init_signing_chain(keys_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Create the development signing chain if it is missing, described as a key entry.

    Returns
    -------
    dict
        ``purpose``, ``file`` (the signer key), ``chain``, ``trust_anchors``, ``key_id``
        (the start of the signer certificate's fingerprint) and ``created``.

    Raises
    ------
    DependencyError
        c2pa-python or cryptography is not installed (the message names the
        ``provenance`` extra); nothing is created then.
    KeyFileError
        As :func:`init_dev_chain`.
    """
    c2pa_module()
    require_cryptography()
    chain = init_dev_chain(keys_dir)
    cert = chain.certificate
    return {"purpose": "C2PA signing (development chain: root CA -> intermediate -> ES256 signer)",
            "file": str(chain.signer_key), "chain": str(chain.signer_chain),
            "trust_anchors": str(chain.trust_anchors),
            "key_id": cert.fingerprint[:12] if cert else None, "created": chain.created}
