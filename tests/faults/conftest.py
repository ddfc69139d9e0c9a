"""Fixtures of the fault suite: the seeds (made once per session through the real guard
and signer), their configuration, record store and trust settings."""

from __future__ import annotations

import pytest

pytest.importorskip("hypothesis", reason="the fault suite needs hypothesis (the dev extra)")
pytest.importorskip("c2pa", reason="the fault suite signs its seeds (the provenance extra)")

from guardrail import Config, ReportStore
from tests.faults.seeds import SeedSet, make_seeds


@pytest.fixture(scope="session")
def seedset(tmp_path_factory: pytest.TempPathFactory) -> SeedSet:
    return make_seeds(tmp_path_factory.mktemp("fault-seeds"))


@pytest.fixture(scope="session")
def seed_config(seedset: SeedSet) -> Config:
    return seedset.config()


@pytest.fixture(scope="session")
def seed_store(seed_config: Config) -> ReportStore:
    store = ReportStore(seed_config.store_url)
    yield store
    store.close()


@pytest.fixture(scope="session")
def seed_trust(seed_config: Config):
    from guardrail.provenance.settings import ProvenanceSettings

    return ProvenanceSettings.from_config(seed_config).trust()


class Env:
    """What the property tests share, with a short representation (hypothesis prints the
    arguments of a failing example)."""

    def __init__(self, seedset: SeedSet, config: Config, store: ReportStore, trust) -> None:
        self.seedset, self.config, self.store, self.trust = seedset, config, store, trust
        self._text_generator = None

    @property
    def text_generator(self):
        if self._text_generator is None:
            from tests.faults.strategies import TinyTextGenerator

            self._text_generator = TinyTextGenerator()
        return self._text_generator

    def __repr__(self) -> str:
        return f"Env({self.seedset!r})"

    def _repr_pretty_(self, p, cycle: bool) -> None:
        p.text(repr(self))


@pytest.fixture(scope="session")
def env(seedset: SeedSet, seed_config: Config, seed_store: ReportStore, seed_trust) -> Env:
    return Env(seedset, seed_config, seed_store, seed_trust)
