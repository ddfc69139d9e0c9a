"""``guardrail dashboard``: start the Streamlit dashboard on the record store (the verb is
registered as a ``guardrail.cli`` entry point)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from guardrail.cli import add_parser, load_config

__all__ = ["APP", "cmd_dashboard", "dashboard_command", "register"]

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


def _handle(args: argparse.Namespace) -> int:
    return int(cmd_dashboard(load_config(args), store_url=args.store, port=args.port))


def register(subparsers: Any) -> None:
    """Add ``guardrail dashboard``."""
    db = add_parser(subparsers, "dashboard",
                    help="open the read-only dashboard (Streamlit) on the record store")
    db.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    db.set_defaults(func=_handle)
