"""Shared fixtures: every test gets its own data and config folders, so no test reads a
user's configuration or writes to a user's record store. The model cache (converted
embedded models) is shared, as a cache should be.

Every test's new secret keys and watermark ids are derived from its name, so a test that
depends on them (a detection after an attack is right for most keys and ids, not all: the
rates are measured by ``guardrail robustness`` over many) reads the same in every run."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from guardrail import Config, ReportStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def postgres_url() -> str | None:
    """A PostgreSQL URL for the store tests: ``GUARDRAIL_TEST_POSTGRES_URL``, or a throwaway
    local server started by ``.ci/postgres.sh`` when Debian's postgresql is installed and we
    are root; ``None`` otherwise."""
    url = os.environ.get("GUARDRAIL_TEST_POSTGRES_URL")
    if url:
        return url
    if os.geteuid() != 0 or not shutil.which("su") or not list(
            Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        return None
    res = subprocess.run(["bash", str(ROOT / ".ci" / "postgres.sh")], capture_output=True,
                         text=True, timeout=120)
    return res.stdout.strip().splitlines()[-1] if res.returncode == 0 and res.stdout.strip() else None


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(var, str(home / var.lower()))
    for name in list(os.environ):
        if name.startswith("GUARDRAIL_") and name not in ("GUARDRAIL_PATHS__CACHE_DIR",):
            monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture(autouse=True)
def reproducible_secrets(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """New keys and watermark ids of this test: distinct from each other, derived from the
    test's id (in this process; a child process draws its own)."""
    import guardrail.keys
    import guardrail.watermark.stages

    counter = itertools.count()

    def draw(n_bytes: int) -> bytes:
        seed = f"{request.node.nodeid}#{next(counter)}".encode()
        return hashlib.shake_256(seed).digest(n_bytes)

    monkeypatch.setattr(guardrail.keys, "random_secret_hex", lambda n: draw(n).hex())
    monkeypatch.setattr(guardrail.watermark.stages, "random_id",
                        lambda bits: int.from_bytes(draw(4), "big") % (1 << bits) if bits else 0)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config.load(overrides={"paths": {"data_dir": str(tmp_path / "data")}})


@pytest.fixture
def store(tmp_path: Path) -> ReportStore:
    s = ReportStore(f"sqlite:///{tmp_path / 'reports.db'}")
    yield s
    s.close()
