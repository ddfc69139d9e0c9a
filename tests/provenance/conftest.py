"""Shared fixtures for the Content Credentials tests: two development chains (one trusted,
one not), small media samples of every signable type, and a PNG chunk toolkit."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("c2pa", reason="c2pa-python is not installed (pip install 'guardrail[provenance]')")

from guardrail.provenance import (
    ManifestInfo,
    ProvenanceSigner,
    TrustSettings,
    init_dev_chain,
)


@pytest.fixture(scope="session")
def dev_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys = tmp_path_factory.mktemp("keys")
    init_dev_chain(keys)
    return keys


@pytest.fixture(scope="session")
def signer(dev_keys: Path) -> ProvenanceSigner:
    return ProvenanceSigner.from_dev_chain(dev_keys)


@pytest.fixture(scope="session")
def trust(dev_keys: Path) -> TrustSettings:
    return TrustSettings.from_files([dev_keys / "c2pa" / "trust-anchors.pem"])


@pytest.fixture(scope="session")
def other_signer(tmp_path_factory: pytest.TempPathFactory) -> ProvenanceSigner:
    """A signer from a second, unrelated development chain (not trusted by ``trust``)."""
    keys = tmp_path_factory.mktemp("other-keys")
    init_dev_chain(keys)
    return ProvenanceSigner.from_dev_chain(keys)


@pytest.fixture
def info() -> ManifestInfo:
    return ManifestInfo(
        model_id="embedded:digits", model_revision="rev-123",
        prompt_hash="hmac-sha256:abcdefabcdef:" + "1" * 64,
        parameters={"num_inference_steps": 4, "guidance": 1.5}, seed=7,
        watermark={"scheme": "guardrail-image", "version": "1", "key_id": "k-0001",
                   "payload": "00ff00ff"},
        stages=[{"stage": "watermark", "status": "ok"}],
        training_mining={"ai_generative_training": "notAllowed", "ai_inference": "allowed"})
