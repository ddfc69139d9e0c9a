"""Content Credentials (C2PA) for guardrail: sign every output, verify any file.

Signing:

* :mod:`~guardrail.provenance.certs`: up-front certificate checks
  (:func:`check_signing_certificate`) and PEM files.
* :mod:`~guardrail.provenance.keys`: the development chain (:func:`init_dev_chain`).
* :mod:`~guardrail.provenance.signer`: the signing identity (:class:`ProvenanceSigner`:
  PEM key or KMS/HSM callback, optional TSA).
* :mod:`~guardrail.provenance.manifest`: what a manifest says (:class:`ManifestInfo`,
  :class:`SignOptions`) and c2pa's Builder.
* :mod:`~guardrail.provenance.sign`: :func:`sign_bytes` for PNG, JPEG, WebP, WAV, FLAC,
  MP3 and text.
* :mod:`~guardrail.provenance.text`: text embedded in invisible Unicode variation
  selectors (C2PA unstructured text) or with a ``.c2pa`` sidecar.

Verifying:

* :mod:`~guardrail.provenance.trust`: what verification trusts (:class:`TrustSettings`).
* :mod:`~guardrail.provenance.reader`: c2pa's Reader and what a manifest says.
* :mod:`~guardrail.provenance.verdict`: the state decided from c2pa's report.
* :mod:`~guardrail.provenance.verify`: :func:`verify_bytes`, :func:`verify_path`,
  :func:`verify_text` -> :class:`~guardrail.ProvenanceResult`.

:mod:`~guardrail.provenance.settings` reads the ``[provenance]`` configuration,
:mod:`~guardrail.provenance.stages` holds :class:`ProvenanceStage` (slot ``provenance``),
and :mod:`~guardrail.provenance.files` signs a file made outside a guard.
The errors (:class:`~guardrail.errors.CertificateError`,
:class:`~guardrail.errors.SigningError`) are in :mod:`guardrail.errors`.

c2pa-python and cryptography are imported on first use only, so ``import guardrail``
stays light.
"""

from ..errors import CertificateError, SigningError
from .certs import CertificateSummary, check_signing_certificate
from .keys import DevChainPaths, dev_chain_paths, init_dev_chain, init_signing_chain
from .manifest import AI_SOURCE_TYPE, ManifestInfo, SignOptions
from .settings import ProvenanceSettings
from .sign import sign_bytes
from .signer import ProvenanceSigner
from .stages import ProvenanceStage
from .text import SignedText, sign_text, strip_text_wrapper, write_sidecar
from .trust import TrustSettings
from .verify import result_to_dict, verify_bytes, verify_path, verify_text

__all__ = [
    "AI_SOURCE_TYPE",
    "CertificateError",
    "CertificateSummary",
    "DevChainPaths",
    "ManifestInfo",
    "ProvenanceSettings",
    "ProvenanceSigner",
    "ProvenanceStage",
    "SignOptions",
    "SignedText",
    "SigningError",
    "TrustSettings",
    "check_signing_certificate",
    "dev_chain_paths",
    "init_dev_chain",
    "init_signing_chain",
    "result_to_dict",
    "sign_bytes",
    "sign_text",
    "strip_text_wrapper",
    "verify_bytes",
    "verify_path",
    "verify_text",
    "write_sidecar",
]
