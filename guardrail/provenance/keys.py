"""Signing identities for Content Credentials: the development chain and its checks.

A C2PA signature must come from an *end-entity* X.509 certificate that a CA issued, with
the key usage ``digitalSignature``, an extended key usage that c2pa accepts and a key of a
supported type (the rules of c2pa-rs ``check_end_entity_certificate_profile``). A
certificate that breaks them is refused here, before anything is signed, with the reason
in plain words - instead of a signature that no verifier will accept.

* :func:`init_dev_chain` creates a development chain: root CA -> intermediate CA -> ES256
  (P-256) signer, plus ``trust-anchors.pem`` (the dev root) under which guardrail's own
  verifier reports ``TRUSTED``. Only the signer's private key is kept (mode 0600); the CA
  keys are discarded once the chain is issued, so nobody can issue more certificates
  under the dev root. Existing files are never overwritten.
* :func:`check_signing_certificate` checks a chain (and optionally its private key) the
  way c2pa will, and raises :class:`CertificateError` naming the problem.
* :class:`ProvenanceSigner` is the signing identity the signer functions use: a PEM key
  and chain, or a callback into a KMS/HSM (c2pa's ``Signer.from_callback``), with an
  optional RFC 3161 timestamp authority that is checked quickly before each use.

Development certificates are for development: production deployments sign with a
certificate from a CA on the C2PA trust list (or their own PKI) and turn
``provenance.trust_dev_root`` off.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import socket
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import KeyFileError, OutputError
from ..keys import write_secret_file

__all__ = [
    "ALGORITHMS",
    "CertificateError",
    "CertificateSummary",
    "DEV_CHAIN_DIR",
    "DevChainPaths",
    "ProvenanceSigner",
    "SigningError",
    "check_signing_certificate",
    "dev_chain_paths",
    "init_dev_chain",
]

#: Folder under ``keys_dir`` holding the development chain.
DEV_CHAIN_DIR = "c2pa"

#: Signing algorithms c2pa supports (lower-case names as in the config).
ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")

# Extended key usages c2pa-rs accepts for a C2PA signer (sdk/src/crypto/cose/valid_eku_oids.cfg).
_EKU_NAMES = {
    "1.3.6.1.5.5.7.3.4": "emailProtection",
    "1.3.6.1.5.5.7.3.36": "documentSigning",
    "1.3.6.1.5.5.7.3.8": "timeStamping",
    "1.3.6.1.5.5.7.3.9": "OCSPSigning",
    "1.3.6.1.4.1.311.76.59.1.9": "Microsoft C2PA signing",
}
_ANY_EKU = "2.5.29.37.0"
_TIMESTAMPING, _OCSP = "1.3.6.1.5.5.7.3.8", "1.3.6.1.5.5.7.3.9"

# Certificate signature algorithms c2pa accepts.
_SIG_OIDS = {
    "1.2.840.113549.1.1.11", "1.2.840.113549.1.1.12", "1.2.840.113549.1.1.13",  # RSA SHA-2
    "1.2.840.10045.4.3.2", "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4",  # ECDSA SHA-2
    "1.2.840.113549.1.1.10",  # RSASSA-PSS
    "1.3.101.112",  # Ed25519
}
_CURVE_FOR_ALG = {"es256": "secp256r1", "es384": "secp384r1", "es512": "secp521r1"}
_CURVE_LABEL = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


class CertificateError(KeyFileError):
    """A signing certificate (or its key) that c2pa would reject, with the reason."""


class SigningError(OutputError):
    """Content Credentials could not be made (timestamp authority down, KMS error, ...)."""


# -- summaries ----------------------------------------------------------------------------
@dataclass(frozen=True)
class CertificateSummary:
    """What a checked signing certificate is (public facts only).

    Attributes
    ----------
    subject, issuer : str
        RFC 4514 names.
    not_before, not_after : str
        Validity period, ISO 8601 UTC.
    key_type : str
        ``P-256``, ``P-384``, ``P-521``, ``RSA-3072``, ``Ed25519``, ...
    algorithm : str
        The signing algorithm the key is used with (``es256``, ...).
    extended_key_usages : tuple of str
        Names (or dotted OIDs) of the EKUs.
    chain_length : int
        Certificates in the chain, end entity included.
    fingerprint : str
        SHA-256 of the end-entity certificate (DER), hex.
    """

    subject: str
    issuer: str
    not_before: str
    not_after: str
    key_type: str
    algorithm: str
    extended_key_usages: tuple[str, ...]
    chain_length: int
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject, "issuer": self.issuer, "not_before": self.not_before,
            "not_after": self.not_after, "key_type": self.key_type, "algorithm": self.algorithm,
            "extended_key_usages": list(self.extended_key_usages),
            "chain_length": self.chain_length, "fingerprint": self.fingerprint,
        }


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


def _pem(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


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
    """
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
    chain_pem = _pem(signer) + _pem(inter)
    summary = check_signing_certificate(chain_pem.decode("ascii"),
                                        private_key_pem=_key_pem(signer_key).decode("ascii"))
    # key first: if it exists already, nothing else is touched
    write_secret_file(paths.signer_key, _key_pem(signer_key))
    _write_public_file(paths.signer_chain, chain_pem)
    _write_public_file(paths.root_cert, _pem(root))
    _write_public_file(paths.trust_anchors, _pem(root))
    del root_key, inter_key  # the CA keys are never written anywhere
    return DevChainPaths(**{**_fields(paths), "created": True, "certificate": summary})


def _fields(paths: DevChainPaths) -> dict[str, Any]:
    return {"folder": paths.folder, "signer_key": paths.signer_key,
            "signer_chain": paths.signer_chain, "root_cert": paths.root_cert,
            "trust_anchors": paths.trust_anchors}


# -- certificate checks -------------------------------------------------------------------
def _load_chain(chain_pem: str | bytes) -> list[Any]:
    from cryptography import x509

    data = chain_pem.encode("ascii", "replace") if isinstance(chain_pem, str) else chain_pem
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CertificateError("no PEM certificate found in the signing chain "
                               "(expected '-----BEGIN CERTIFICATE-----' blocks)")
    try:
        return list(x509.load_pem_x509_certificates(data))
    except ValueError as exc:
        raise CertificateError(f"the signing chain is not valid PEM: {exc}") from None


def _key_type(public_key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return _CURVE_LABEL.get(public_key.curve.name, f"{public_key.curve.name} (EC)")
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA-{public_key.key_size}"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(public_key).__name__


def _check_key_for_algorithm(public_key: Any, algorithm: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    have = _key_type(public_key)
    if algorithm in _CURVE_FOR_ALG:
        want = _CURVE_LABEL[_CURVE_FOR_ALG[algorithm]]
        if not (isinstance(public_key, ec.EllipticCurvePublicKey)
                and public_key.curve.name == _CURVE_FOR_ALG[algorithm]):
            raise CertificateError(
                f"the signing certificate holds a {have} key, but the algorithm "
                f"{algorithm} needs a {want} key: set provenance.algorithm to match the "
                "key, or get a certificate for a key of the right type")
    elif algorithm.startswith("ps"):
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise CertificateError(
                f"the signing certificate holds a {have} key, but the algorithm "
                f"{algorithm} needs an RSA key")
        if public_key.key_size < 2048:
            raise CertificateError(
                f"the signing certificate holds a {public_key.key_size}-bit RSA key; C2PA "
                "requires at least 2048 bits")
    elif algorithm == "ed25519":
        if not isinstance(public_key, ed25519.Ed25519PublicKey):
            raise CertificateError(
                f"the signing certificate holds a {have} key, but the algorithm ed25519 "
                "needs an Ed25519 key")
    else:
        raise CertificateError(
            f"unknown signing algorithm {algorithm!r}; choose one of: {', '.join(ALGORITHMS)}")


def _ext(cert: Any, cls: Any) -> Any:
    from cryptography import x509

    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:  # a malformed extension
        raise CertificateError(f"the signing certificate has a malformed extension: {exc}") \
            from None


def check_signing_certificate(
    chain_pem: str | bytes,
    *,
    private_key_pem: str | bytes | None = None,
    algorithm: str | None = None,
    at: dt.datetime | None = None,
) -> CertificateSummary:
    """Check a signing chain the way c2pa will, before anything is signed with it.

    Parameters
    ----------
    chain_pem : str or bytes
        PEM certificates: the end-entity (signing) certificate first, then its
        intermediates (the root may be omitted).
    private_key_pem : str or bytes, optional
        When given, it must be the private key of the end-entity certificate.
    algorithm : str, optional
        The signing algorithm (``es256``, ...); default: inferred from the key
        (P-256 -> es256, P-384 -> es384, P-521 -> es512, RSA -> ps256, Ed25519 -> ed25519).
    at : datetime, optional
        When the certificate must be valid (default: now).

    Returns
    -------
    CertificateSummary

    Raises
    ------
    CertificateError
        Naming what c2pa would reject: no extended key usage (or none c2pa accepts),
        expired or not yet valid, self-signed, a CA certificate used as the signer, a
        missing ``digitalSignature`` key usage, a key of the wrong type or size, a chain
        whose certificates do not issue one another, a key that does not match.
    """
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization

    certs = _load_chain(chain_pem)
    ee = certs[0]
    who = f"the signing certificate ({ee.subject.rfc4514_string()})"
    if ee.version is not x509.Version.v3:
        raise CertificateError(f"{who} is not an X.509 v3 certificate")
    now = at or dt.datetime.now(dt.UTC)
    if now < ee.not_valid_before_utc:
        raise CertificateError(
            f"{who} is not valid yet: it becomes valid on "
            f"{ee.not_valid_before_utc.isoformat()} (check the machine's clock)")
    if now > ee.not_valid_after_utc:
        raise CertificateError(
            f"{who} expired on {ee.not_valid_after_utc.isoformat()}; renew it (for the "
            "development chain: move <keys_dir>/c2pa away and run it again)")
    if ee.signature_algorithm_oid.dotted_string not in _SIG_OIDS:
        raise CertificateError(
            f"{who} is signed with {ee.signature_algorithm_oid.dotted_string}, which C2PA does "
            "not accept (use ECDSA, RSA or RSA-PSS with SHA-256/384/512, or Ed25519)")
    bc = _ext(ee, x509.BasicConstraints)
    if bc is not None and bc.ca:
        raise CertificateError(
            f"{who} is a CA certificate (basic constraints CA=true); C2PA signs with an "
            "end-entity certificate issued by a CA, never with the CA itself")
    if ee.issuer == ee.subject:
        self_signed = True
        try:
            ee.verify_directly_issued_by(ee)
        except (ValueError, TypeError, InvalidSignature):
            self_signed = False
        if self_signed:
            raise CertificateError(
                f"{who} is self-signed; C2PA requires a certificate issued by a CA "
                "(for development run `guardrail keys init`)")
    ku = _ext(ee, x509.KeyUsage)
    if ku is None or not ku.digital_signature:
        raise CertificateError(
            f"{who} lacks the key usage digitalSignature, which C2PA requires")
    if ku.key_cert_sign:
        raise CertificateError(f"{who} has the key usage keyCertSign, which a signer must not")
    eku = _ext(ee, x509.ExtendedKeyUsage)
    if eku is None:
        raise CertificateError(
            f"{who} has no extended key usage; C2PA requires one of: "
            f"{', '.join(_EKU_NAMES.values())} (e.g. an S/MIME or document-signing certificate)")
    oids = [o.dotted_string for o in eku]
    if _ANY_EKU in oids:
        raise CertificateError(f"{who} has the extended key usage anyExtendedKeyUsage, "
                               "which C2PA forbids")
    if not any(o in _EKU_NAMES for o in oids):
        raise CertificateError(
            f"{who} has none of the extended key usages C2PA accepts "
            f"({', '.join(_EKU_NAMES.values())}); it has: {', '.join(oids)}")
    if (_TIMESTAMPING in oids or _OCSP in oids) and len(oids) > 1:
        raise CertificateError(
            f"{who} mixes timeStamping/OCSPSigning with other extended key usages, "
            "which C2PA forbids")
    if _ext(ee, x509.AuthorityKeyIdentifier) is None:
        raise CertificateError(f"{who} has no authority key identifier, which C2PA requires")

    public_key = ee.public_key()
    alg = (algorithm or _default_algorithm(public_key)).lower()
    _check_key_for_algorithm(public_key, alg)
    # the chain: each certificate is issued by the next, and the issuers are CAs
    for child, parent in zip(certs, certs[1:], strict=False):
        pbc = _ext(parent, x509.BasicConstraints)
        if pbc is None or not pbc.ca:
            raise CertificateError(
                f"the chain is out of order or incomplete: {parent.subject.rfc4514_string()} "
                "is not a CA certificate (put the signing certificate first, then its issuers)")
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise CertificateError(
                f"the chain is broken: {child.subject.rfc4514_string()} was not issued by "
                f"{parent.subject.rfc4514_string()}") from None
        if now > parent.not_valid_after_utc:
            raise CertificateError(
                f"the issuing CA {parent.subject.rfc4514_string()} expired on "
                f"{parent.not_valid_after_utc.isoformat()}")
    if private_key_pem is not None:
        key = _load_private_key(private_key_pem)
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        if (key.public_key().public_bytes(serialization.Encoding.DER, spki)
                != public_key.public_bytes(serialization.Encoding.DER, spki)):
            raise CertificateError(
                "the private key does not belong to the signing certificate "
                "(provenance.private_key and provenance.cert_chain do not match)")
    from cryptography.hazmat.primitives import hashes

    return CertificateSummary(
        subject=ee.subject.rfc4514_string(), issuer=ee.issuer.rfc4514_string(),
        not_before=ee.not_valid_before_utc.isoformat(),
        not_after=ee.not_valid_after_utc.isoformat(), key_type=_key_type(public_key),
        algorithm=alg, extended_key_usages=tuple(_EKU_NAMES.get(o, o) for o in oids),
        chain_length=len(certs), fingerprint=ee.fingerprint(hashes.SHA256()).hex())


def _default_algorithm(public_key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {v: k for k, v in _CURVE_FOR_ALG.items()}.get(public_key.curve.name, "es256")
    if isinstance(public_key, rsa.RSAPublicKey):
        return "ps256"
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    return "es256"


def _load_private_key(pem: str | bytes) -> Any:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertificateError(
            "the private key is encrypted; guardrail reads unencrypted PEM keys (mode 0600) "
            "- for keys that must stay encrypted or in hardware, use a signing callback "
            "(provenance.signer_callback) into your KMS/HSM") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"the private key is not a valid PEM private key "
                               f"({type(exc).__name__})") from None


def read_private_key_file(path: str | os.PathLike[str]) -> str:
    """Read a PEM private key, refusing a file that other users can read."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise KeyFileError(
            f"signing key {str(p)!r} does not exist; for development run "
            "`guardrail keys init`, or set provenance.private_key") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"signing key {str(p)!r} is accessible to other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {p}")
    try:
        return p.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read signing key {str(p)!r}: {exc}") from None


def read_certificate_file(path: str | os.PathLike[str]) -> str:
    """Read a PEM certificate (chain) file."""
    p = Path(path).expanduser()
    try:
        return p.read_text(encoding="ascii")
    except FileNotFoundError:
        raise CertificateError(f"certificate file {str(p)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CertificateError(f"cannot read certificate file {str(p)!r}: {exc}") from None


# -- timestamp authority ------------------------------------------------------------------
_TSA_OK: dict[str, float] = {}
_TSA_LOCK = threading.Lock()
_TSA_CACHE_S = 60.0


def check_tsa_reachable(url: str, *, timeout_s: float = 5.0) -> None:
    """Fail fast, with a clear message, when the timestamp authority cannot be reached.

    A TCP connection to the TSA's host and port is attempted (within ``timeout_s``); a
    success is remembered for a minute. Raises :class:`SigningError` otherwise.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SigningError(f"timestamp authority URL {url!r} is not an http(s) URL")
    with _TSA_LOCK:
        if time.monotonic() - _TSA_OK.get(url, -1e9) < _TSA_CACHE_S:
            return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    t0 = time.monotonic()
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (
            exc.strerror or type(exc).__name__)
        raise SigningError(
            f"timestamp authority {url} is unreachable ({why} after "
            f"{time.monotonic() - t0:.1f} s); nothing was signed. Fix the network or the "
            "URL, or set provenance.tsa_url = \"\" to sign without a trusted timestamp") from None
    with _TSA_LOCK:
        _TSA_OK[url] = time.monotonic()


# -- the signer ---------------------------------------------------------------------------
_C2PA_ALGS = {"es256": "ES256", "es384": "ES384", "es512": "ES512", "ps256": "PS256",
              "ps384": "PS384", "ps512": "PS512", "ed25519": "ED25519"}


class ProvenanceSigner:
    """A C2PA signing identity: a certificate chain and a private key or a signing callback.

    Parameters
    ----------
    chain_pem : str
        The end-entity certificate, then its intermediates (PEM).
    private_key_pem : str, optional
        The end-entity private key (PEM, unencrypted). Exactly one of ``private_key_pem``
        and ``callback`` must be given.
    callback : callable, optional
        ``callback(data: bytes) -> bytes`` returning the signature of ``data`` made by a
        KMS/HSM with the end-entity key (ECDSA signatures as DER or raw ``r||s``).
    algorithm : str, optional
        ``es256`` (default for P-256 keys), ``es384``, ``es512``, ``ps256``..., ``ed25519``.
    tsa_url : str, optional
        RFC 3161 timestamp authority; checked for reachability before signing.
    tsa_timeout_s : float, optional
        How long the reachability check and the signing call may take with a TSA.
    check : bool, optional
        Run :func:`check_signing_certificate` now (default); errors are raised here.

    Notes
    -----
    The private key is kept in memory only for handing to c2pa; it never appears in
    ``repr``, logs or errors. Native c2pa signers are cached per thread (PEM keys) or made
    for each signature (callbacks), so one ``ProvenanceSigner`` can be shared by threads.
    """

    def __init__(
        self,
        *,
        chain_pem: str,
        private_key_pem: str | None = None,
        callback: Callable[[bytes], bytes] | None = None,
        algorithm: str | None = None,
        tsa_url: str | None = None,
        tsa_timeout_s: float = 5.0,
        check: bool = True,
    ) -> None:
        if (private_key_pem is None) == (callback is None):
            raise ValueError("give exactly one of private_key_pem and callback")
        if algorithm is not None and algorithm.lower() not in ALGORITHMS:
            raise CertificateError(
                f"unknown signing algorithm {algorithm!r}; choose one of: {', '.join(ALGORITHMS)}")
        self.chain_pem = chain_pem
        self._key_pem = private_key_pem
        self._callback = callback
        self.tsa_url = tsa_url or None
        self._local = threading.local()
        self.tsa_timeout_s = float(tsa_timeout_s)
        if check:
            self.certificate: CertificateSummary | None = check_signing_certificate(
                chain_pem, private_key_pem=private_key_pem, algorithm=algorithm)
            self.algorithm = self.certificate.algorithm
        else:
            self.certificate = None
            self.algorithm = (algorithm or "es256").lower()

    @classmethod
    def from_files(cls, chain_path: str | os.PathLike[str], key_path: str | os.PathLike[str],
                   *, algorithm: str | None = None, tsa_url: str | None = None,
                   tsa_timeout_s: float = 5.0) -> ProvenanceSigner:
        """A signer from a PEM chain file and a PEM key file (mode 0600 enforced)."""
        return cls(chain_pem=read_certificate_file(chain_path),
                   private_key_pem=read_private_key_file(key_path), algorithm=algorithm,
                   tsa_url=tsa_url, tsa_timeout_s=tsa_timeout_s)

    @classmethod
    def from_dev_chain(cls, keys_dir: str | os.PathLike[str], *,
                       tsa_url: str | None = None) -> ProvenanceSigner:
        """The development signer created by :func:`init_dev_chain` under ``keys_dir``."""
        paths = dev_chain_paths(keys_dir)
        return cls.from_files(paths.signer_chain, paths.signer_key, tsa_url=tsa_url)

    @property
    def key_id(self) -> str:
        """A short public id of the signing certificate (not of the key)."""
        digest = hashlib.sha256(self.chain_pem.encode("ascii", "replace")).hexdigest()
        return (self.certificate.fingerprint if self.certificate else digest)[:12]

    def __repr__(self) -> str:  # never show the key
        kind = "callback" if self._callback is not None else "pem-key"
        return (f"ProvenanceSigner(subject={getattr(self.certificate, 'subject', '?')!r}, "
                f"algorithm={self.algorithm!r}, key={kind}, tsa={self.tsa_url!r})")

    def preflight(self) -> None:
        """Checks that must pass before each signature (the TSA is reachable)."""
        if self.tsa_url:
            check_tsa_reachable(self.tsa_url, timeout_s=self.tsa_timeout_s)

    @contextlib.contextmanager
    def native(self) -> Iterator[tuple[Any, list[BaseException]]]:
        """A ``c2pa.Signer`` for one signature, and the list that will hold the exception
        the signing callback raised during it (if any).

        PEM-key signers are cached per thread (creating one costs ~1 ms); callback signers
        are made for each signature.
        """
        from ._c2pa import c2pa_module

        c2pa = c2pa_module()
        alg = getattr(c2pa.C2paSigningAlg, _C2PA_ALGS[self.algorithm])
        errors: list[BaseException] = []
        if self._callback is None:
            cached = getattr(self._local, "signer", None)
            if cached is None or not cached.is_valid:
                info = c2pa.C2paSignerInfo(alg, self.chain_pem.encode("ascii"),
                                           self._key_pem.encode("ascii"), self.tsa_url)
                cached = c2pa.Signer.from_info(info)
                self._local.signer = cached
            yield cached, errors
            return
        user_callback = self._callback

        def call(data: bytes) -> bytes:
            try:
                sig = user_callback(data)
            except Exception as exc:  # noqa: BLE001 - reported after the sign call
                errors.append(exc)
                return b""
            if not isinstance(sig, (bytes, bytearray)) or not sig:
                errors.append(SigningError("the signing callback returned no signature"))
                return b""
            return bytes(sig)

        signer = c2pa.Signer.from_callback(call, alg, self.chain_pem, self.tsa_url)
        try:
            yield signer, errors
        finally:
            signer.close()


def signer_error_message(exc: BaseException, signer: ProvenanceSigner,
                         callback_errors: Sequence[BaseException] = ()) -> str:
    """Turn a c2pa signing failure into a message in the user's terms."""
    text = str(exc)
    if callback_errors:
        cb = callback_errors[0]
        return f"the signing callback failed: {type(cb).__name__}: {cb}"
    if signer.tsa_url and ("http" in text.lower() or "resolver" in text.lower()
                           or "time stamp" in text.lower() or "timestamp" in text.lower()):
        return (f"the timestamp authority {signer.tsa_url} did not answer properly ({text}); "
                "nothing was signed")
    return f"c2pa could not sign: {text}"
