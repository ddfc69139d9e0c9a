"""``guardrail dashboard``: start the Streamlit dashboard on the record store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["APP", "cmd_dashboard", "dashboard_command"]

APP = Path(__file__).resolve().parent / "app.py"


def dashboard_command(*, port: int = 8501, headless: bool = True) -> list[str]:
    """The ``streamlit run`` command line (with this interpreter)."""
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.port", str(int(port)),
            "--server.headless", "true" if headless else "false",
            "--browser.gatherUsageStats", "false"]


def cmd_dashboard(config: Any, *, store_url: str | None = None, port: int = 8501,
                  headless: bool = True) -> int:
    """Run the dashboard until interrupted; returns streamlit's exit code.

    The store is ``store_url``, else ``config.store_url``; it reaches the app as
    ``GUARDRAIL_STORE_URL``.
    """
    env = dict(os.environ)
    env["GUARDRAIL_STORE_URL"] = store_url or config.store_url
    try:
        return subprocess.call(dashboard_command(port=port, headless=headless), env=env)
    except KeyboardInterrupt:
        return 130
