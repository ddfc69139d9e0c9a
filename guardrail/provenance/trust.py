"""Trust: which root certificates verification trusts, and whether it may use the network.

:class:`TrustSettings` is what :mod:`guardrail.provenance.verify` checks signers against.
From the configuration it is built by
:meth:`guardrail.provenance.settings.ProvenanceSettings.trust`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CertificateError
from .certs import encode_certificate, require_cryptography

__all__ = ["TrustSettings"]


@dataclass(frozen=True)
class TrustSettings:
    """What verification trusts, and whether it may use the network.

    Parameters
    ----------
    anchors_pem : str
        PEM bundle of trust anchors (root certificates). Empty: nothing is trusted, so
        the best possible state is ``VALID_UNTRUSTED``.
    sources : tuple of str
        Where the anchors came from (file names), for reports.
    remote_manifest_fetch : bool
        Fetch manifests stored remotely (off by default: verification is offline).
    remote_fetch_timeout_s : float
        Deadline for such a fetch.
    """

    anchors_pem: str = ""
    sources: tuple[str, ...] = ()
    remote_manifest_fetch: bool = False
    remote_fetch_timeout_s: float = 4.0

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike[str]], *,
                   remote_manifest_fetch: bool = False,
                   remote_fetch_timeout_s: float = 4.0) -> TrustSettings:
        """Trust the root certificates in the given PEM files.

        Raises
        ------
        CertificateError
            A file is missing or holds no PEM certificate.
        DependencyError
            cryptography is not installed.
        """
        require_cryptography()
        from cryptography import x509

        pems, sources = [], []
        for path in paths:
            p = Path(path).expanduser()
            try:
                data = p.read_bytes()
            except OSError as exc:
                raise CertificateError(
                    f"trust anchors {str(p)!r}: cannot read ({exc.strerror or exc})") from None
            try:
                certs = x509.load_pem_x509_certificates(data)
            except ValueError:
                raise CertificateError(
                    f"trust anchors {str(p)!r}: no PEM certificates found") from None
            pems.append("".join(encode_certificate(c).decode("ascii") for c in certs))
            sources.append(str(p))
        return cls(anchors_pem="".join(pems), sources=tuple(sources),
                   remote_manifest_fetch=remote_manifest_fetch,
                   remote_fetch_timeout_s=remote_fetch_timeout_s)

    def c2pa_settings(self) -> dict[str, Any]:
        """c2pa settings for reading: trust on, every network fetch off."""
        settings: dict[str, Any] = {
            "verify": {"verify_after_reading": True, "verify_trust": True,
                       "verify_timestamp_trust": True, "ocsp_fetch": False,
                       "remote_manifest_fetch": False},
        }
        if self.anchors_pem:
            settings["trust"] = {"trust_anchors": self.anchors_pem}
        return settings
