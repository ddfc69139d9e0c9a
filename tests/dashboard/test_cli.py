"""``cmd_dashboard`` starts ``streamlit run dashboard/app.py`` with the store URL."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from dashboard import cli
from guardrail import Config


def test_cmd_dashboard_runs_streamlit(monkeypatch: pytest.MonkeyPatch, config: Config) -> None:
    calls: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(subprocess, "call", lambda cmd, **kw: calls.append((cmd, kw)) or 0)
    assert cli.cmd_dashboard(config, store_url="sqlite:///x.db", port=8600) == 0
    (cmd, kw), = calls
    assert cmd[:4] == [sys.executable, "-m", "streamlit", "run"]
    assert cmd[4].endswith("dashboard/app.py")
    assert cmd[cmd.index("--server.port") + 1] == "8600"
    assert cmd[cmd.index("--server.headless") + 1] == "true"
    assert kw["env"]["GUARDRAIL_STORE_URL"] == "sqlite:///x.db"
    calls.clear()
    cli.cmd_dashboard(config, headless=False)
    assert calls[0][1]["env"]["GUARDRAIL_STORE_URL"] == config.store_url
    assert calls[0][0][calls[0][0].index("--server.headless") + 1] == "false"
