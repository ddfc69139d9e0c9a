"""Content Credentials (C2PA) for guardrail: sign every output, verify any file.

* :mod:`~guardrail.provenance.keys`: the development chain (:func:`init_dev_chain`),
  up-front certificate checks (:func:`check_signing_certificate`) and the signing
  identity (:class:`ProvenanceSigner`: PEM key or KMS/HSM callback, optional TSA).
* :mod:`~guardrail.provenance.sign`: :func:`sign_bytes` for PNG, JPEG, WebP, WAV, FLAC,
  MP3 and text, with the manifest described by :class:`ManifestInfo`.
* :mod:`~guardrail.provenance.text`: text embedded in invisible Unicode variation
  selectors (C2PA unstructured text) or with a ``.c2pa`` sidecar.
* :mod:`~guardrail.provenance.verify`: :func:`verify_bytes`, :func:`verify_path`,
  :func:`verify_text` -> :class:`~guardrail.ProvenanceResult`.
* :mod:`~guardrail.provenance.stages`: :class:`ProvenanceStage` (slot ``provenance``).

c2pa-python is imported on first use only, so ``import guardrail`` stays light.
"""

from .keys import (
    CertificateError,
    CertificateSummary,
    DevChainPaths,
    ProvenanceSigner,
    SigningError,
    check_signing_certificate,
    dev_chain_paths,
    init_dev_chain,
)
from .settings import ProvenanceSettings
from .sign import AI_SOURCE_TYPE, ManifestInfo, SignOptions, sign_bytes
from .stages import ProvenanceStage
from .text import SignedText, sign_text, strip_text_wrapper, write_sidecar
from .verify import TrustSettings, result_to_dict, verify_bytes, verify_path, verify_text

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
    "result_to_dict",
    "sign_bytes",
    "sign_text",
    "strip_text_wrapper",
    "verify_bytes",
    "verify_path",
    "verify_text",
    "write_sidecar",
]
