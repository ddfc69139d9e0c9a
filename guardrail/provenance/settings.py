"""The ``[provenance]`` configuration section, validated, with its paths resolved.

Its defaults are in ``guardrail/defaults.toml``, and :class:`guardrail.Config` refuses
unknown keys and values of the wrong type; this module checks the values only the
provenance package knows (thumbnail policies, signing algorithms, training-and-mining
uses) and builds the signer and the trust settings. Relative paths in it are resolved
against the config file's folder, like the other paths of the configuration.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import ConfigError, KeyFileError
from .certs import ALGORITHMS, read_certificate_file
from .keys import dev_chain_paths
from .manifest import THUMBNAIL_POLICIES, TRAINING_MINING_USES, SignOptions
from .signer import ProvenanceSigner
from .trust import TrustSettings

__all__ = ["ProvenanceSettings"]


def _validate(data: Mapping[str, Any]) -> None:
    if data["thumbnail"] not in THUMBNAIL_POLICIES:
        raise ConfigError(f"provenance.thumbnail = {data['thumbnail']!r}; choose one of "
                          f"{', '.join(THUMBNAIL_POLICIES)}")
    if data["text_mode"] not in ("embedded", "sidecar"):
        raise ConfigError(f"provenance.text_mode = {data['text_mode']!r}; choose embedded "
                          "or sidecar")
    if data["algorithm"] and str(data["algorithm"]).lower() not in ALGORITHMS:
        raise ConfigError(f"provenance.algorithm = {data['algorithm']!r}; choose one of "
                          f"{', '.join(ALGORITHMS)} (or empty: from the key)")
    for key, use in data["training_mining"].items():
        if key != "constraint_info" and use not in TRAINING_MINING_USES:
            raise ConfigError(f"provenance.training_mining.{key} = {use!r}; choose allowed, "
                              "notAllowed, constrained or \"\" (omit)")
    if not 16 <= int(data["thumbnail_long_edge"]) <= 2048:
        raise ConfigError("provenance.thumbnail_long_edge must be between 16 and 2048")


@dataclass(frozen=True)
class ProvenanceSettings:
    """Validated ``[provenance]`` settings plus the folders they refer to.

    Build it with :meth:`from_config`.
    """

    data: Mapping[str, Any]
    keys_dir: Path
    base_dir: Path | None = None

    @classmethod
    def from_config(cls, config: Config) -> ProvenanceSettings:
        """The ``[provenance]`` section of ``config``.

        Raises
        ------
        ConfigError
            A value the provenance package cannot use (the message names the setting).
        """
        data = config.section("provenance")
        _validate(data)
        base = Path(config.source).expanduser().parent if config.source else None
        return cls(data=data, keys_dir=Path(config.keys_dir).expanduser(), base_dir=base)

    # -- helpers --------------------------------------------------------------------------
    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        if not p.is_absolute() and self.base_dir is not None:
            p = self.base_dir / p
        return p

    @property
    def enabled(self) -> bool:
        return bool(self.data["enabled"])

    @property
    def require_trusted(self) -> bool:
        return bool(self.data["require_trusted"])

    def sign_options(self) -> SignOptions:
        return SignOptions(thumbnail=self.data["thumbnail"],
                           thumbnail_long_edge=int(self.data["thumbnail_long_edge"]),
                           claim_generator=str(self.data["claim_generator"] or "guardrail"),
                           text_mode=self.data["text_mode"])

    def training_mining(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.data["training_mining"].items()}

    def signer(self) -> ProvenanceSigner:
        """The configured signing identity.

        Raises
        ------
        KeyFileError
            No certificate/key configured and no development chain (the message says
            how to create one), or a key file that others can read.
        CertificateError
            A certificate c2pa would reject (the message says why).
        """
        d = self.data
        algorithm = str(d["algorithm"]).lower() or None
        tsa = str(d["tsa_url"]) or None
        timeout = float(d["tsa_timeout_s"])
        if d["signer_callback"]:
            if not d["cert_chain"]:
                raise ConfigError("provenance.signer_callback needs provenance.cert_chain "
                                  "(the certificate chain of the KMS/HSM key)")
            callback = _import_callable(str(d["signer_callback"]))
            return ProvenanceSigner(chain_pem=read_certificate_file(self.path(d["cert_chain"])),
                                    callback=callback, algorithm=algorithm, tsa_url=tsa,
                                    tsa_timeout_s=timeout)
        if d["cert_chain"] or d["private_key"]:
            if not (d["cert_chain"] and d["private_key"]):
                raise ConfigError("set both provenance.cert_chain and provenance.private_key "
                                  "(or neither, to use the development chain)")
            return ProvenanceSigner.from_files(self.path(d["cert_chain"]),
                                               self.path(d["private_key"]), algorithm=algorithm,
                                               tsa_url=tsa, tsa_timeout_s=timeout)
        paths = dev_chain_paths(self.keys_dir)
        if not paths.signer_key.exists():
            raise KeyFileError(
                "no signing certificate is configured (provenance.cert_chain / "
                f"provenance.private_key) and there is no development chain in "
                f"{str(paths.folder)!r}; create one with `guardrail keys init`")
        return ProvenanceSigner.from_files(paths.signer_chain, paths.signer_key,
                                           algorithm=algorithm, tsa_url=tsa,
                                           tsa_timeout_s=timeout)

    def trust_files(self) -> list[Path]:
        files = []
        dev = dev_chain_paths(self.keys_dir).trust_anchors
        if self.data["trust_dev_root"] and dev.is_file():
            files.append(dev)
        files.extend(self.path(p) for p in self.data["trust_anchors"] or [])
        return files

    def trust(self) -> TrustSettings:
        """The trust anchors (the dev root, if trusted and present, then
        ``provenance.trust_anchors``) and the remote-manifest settings."""
        return TrustSettings.from_files(
            self.trust_files(), remote_manifest_fetch=bool(self.data["remote_manifest_fetch"]),
            remote_fetch_timeout_s=float(self.data["remote_fetch_timeout_s"]))


def _import_callable(spec: str) -> Callable[[bytes], bytes]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"provenance.signer_callback = {spec!r}; expected 'module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"provenance.signer_callback = {spec!r} cannot be imported: {exc}") \
            from None
    if not callable(obj):
        raise ConfigError(f"provenance.signer_callback = {spec!r} is not callable")
    return obj
