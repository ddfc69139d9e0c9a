"""Shared fixtures: every test gets its own data and config folders, so no test reads a
user's configuration or writes to a user's record store. The model cache (converted
embedded models) is shared, as a cache should be."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guardrail import Config, ReportStore


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(var, str(home / var.lower()))
    for name in list(os.environ):
        if name.startswith("GUARDRAIL_") and name not in ("GUARDRAIL_PATHS__CACHE_DIR",):
            monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config.load(overrides={"paths": {"data_dir": str(tmp_path / "data")}})


@pytest.fixture
def store(tmp_path: Path) -> ReportStore:
    s = ReportStore(f"sqlite:///{tmp_path / 'reports.db'}")
    yield s
    s.close()
