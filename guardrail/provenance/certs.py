"""Signing certificates: the C2PA certificate profile, checked up front, and PEM files.

A C2PA signature must come from an *end-entity* X.509 certificate that a CA issued, with
the key usage ``digitalSignature``, an extended key usage that c2pa accepts and a key of a
supported type (the rules of c2pa-rs ``check_end_entity_certificate_profile``). A
certificate that breaks them is refused here, before anything is signed, with the reason
in plain words - instead of a signature that no verifier will accept.

* :func:`check_signing_certificate` checks a chain (and optionally its private key) the
  way c2pa will, and raises :class:`~guardrail.errors.CertificateError` naming the problem.
* :func:`read_certificate_file` and :func:`read_private_key_file` read PEM files (a key
  file that other users can read is refused); :func:`encode_certificate` and
  :func:`encode_private_key` write PEM.

cryptography is imported on first use only; without it these functions raise
:class:`~guardrail.errors.DependencyError` naming the ``provenance`` extra.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CertificateError, DependencyError, KeyFileError

__all__ = [
    "ALGORITHMS",
    "CertificateSummary",
    "check_signing_certificate",
    "encode_certificate",
    "encode_private_key",
    "read_certificate_file",
    "read_private_key_file",
    "require_cryptography",
]

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


def require_cryptography() -> None:
    """Import cryptography, or raise :class:`DependencyError` naming the extra to install."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise DependencyError("cryptography", "provenance",
                              purpose="X.509 certificates for Content Credentials") from None


def encode_certificate(cert: Any) -> bytes:
    """A certificate (``cryptography`` object) as PEM."""
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def encode_private_key(key: Any) -> bytes:
    """A private key (``cryptography`` object) as unencrypted PKCS#8 PEM."""
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


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
    DependencyError
        cryptography is not installed.
    """
    require_cryptography()
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

