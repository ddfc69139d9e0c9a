"""``guardrail dashboard``: serve the Streamlit dashboard on the record store (the verb is
registered as a ``guardrail.cli`` entry point).

The server (:mod:`dashboard.server`) runs as a child process in its own process group.
SIGTERM, SIGINT and SIGHUP sent to ``guardrail dashboard`` are passed on to that group;
a server still running :data:`STOP_TIMEOUT` seconds later is killed. On Linux the child
also dies with its parent (``PR_SET_PDEATHSIG``), so even ``kill -9`` of
``guardrail dashboard`` leaves no server behind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from guardrail._children import parent_death_signal
from guardrail.cli import add_parser, load_config
from guardrail.config import Config
from guardrail.errors import ConfigError

from .access import is_loopback, load_token
from .server import APP, STORE_ENV

__all__ = ["APP", "STOP_TIMEOUT", "cmd_dashboard", "dashboard_env", "register", "run_server",
           "server_command"]

#: seconds the server gets to stop after SIGTERM/SIGINT before its group is killed
STOP_TIMEOUT = 10.0
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class _Stop(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def server_command() -> list[str]:
    """The server's command line (with this interpreter)."""
    return [sys.executable, "-m", "dashboard.server"]


def dashboard_env(config: Config, *, store_url: str | None = None, address: str | None = None,
                  port: int | None = None, token_file: str | os.PathLike[str] | None = None,
                  verify_dir: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> tuple[dict[str, str], str | None]:
    """The server's environment, and the login link when a token file was created now.

    The settings reach the server as its configuration: ``$GUARDRAIL_CONFIG``, the data
    folder, and ``GUARDRAIL_DASHBOARD__ADDRESS``/``PORT``/``TOKEN_FILE``/``VERIFY_DIR``;
    the store as ``$GUARDRAIL_STORE_URL``. Arguments left ``None`` keep the configured
    ``[dashboard]`` values.

    Raises
    ------
    ConfigError
        A port outside 1-65535, a verify folder that is not a folder, or an address beyond
        this machine without a token file.
    guardrail.errors.KeyFileError
        A token file that others can read, or that does not hold a hex token of 128 bits
        or more.
    """
    dash = config.section("dashboard")
    address = str(address if address is not None else dash["address"]).strip()
    port = int(port if port is not None else dash["port"])
    token_file = token_file if token_file is not None else dash["token_file"]
    verify_dir = verify_dir if verify_dir is not None else dash["verify_dir"]
    if not 1 <= port <= 65535:
        raise ConfigError(f"dashboard port {port} is not between 1 and 65535")
    if not address:
        raise ConfigError("dashboard address is empty; give one, e.g. --address 127.0.0.1")
    link = None
    if token_file:
        token_file = Path(token_file).expanduser().absolute()
        token, created = load_token(token_file)
        if created:
            host = socket.gethostname() if address in ("0.0.0.0", "::") else address
            host = f"[{host}]" if ":" in host else host
            link = f"http://{host}:{port}/?token={token}"
    elif not is_loopback(address):
        raise ConfigError(
            f"refusing to serve the dashboard on {address!r} without an access token: pass "
            "--token-file FILE (a new token is created there if the file is missing) or set "
            "[dashboard] token_file; or serve on 127.0.0.1 behind a reverse proxy with TLS "
            "and authentication (README, Dashboard)")
    if verify_dir:
        verify_dir = Path(verify_dir).expanduser().resolve()
        if not verify_dir.is_dir():
            raise ConfigError(f"dashboard verify folder {str(verify_dir)!r} is not a folder")
    env = dict(os.environ if environ is None else environ)
    env[STORE_ENV] = store_url or config.store_url
    if config.source:
        env["GUARDRAIL_CONFIG"] = str(Path(config.source).absolute())
    env["GUARDRAIL_PATHS__DATA_DIR"] = str(config.data_dir.absolute())
    env["GUARDRAIL_DASHBOARD__ADDRESS"] = address
    env["GUARDRAIL_DASHBOARD__PORT"] = str(port)
    env["GUARDRAIL_DASHBOARD__TOKEN_FILE"] = str(token_file or "")
    env["GUARDRAIL_DASHBOARD__VERIFY_DIR"] = str(verify_dir or "")
    return env, link


def _kill_group(proc: subprocess.Popen[Any], signum: int) -> None:
    """Send ``signum`` to the child's process group while the child is not yet reaped
    (its group id cannot have been reused then)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)


def run_server(env: Mapping[str, str]) -> int:
    """Run the server child until it exits or this process gets SIGTERM/SIGINT/SIGHUP.

    Returns the child's exit code, or ``128 + signal`` when stopped by a signal. The
    child's process group has been told to stop (and killed if it did not within
    :data:`STOP_TIMEOUT`) when this returns.
    """
    handlers = {s: signal.getsignal(s) for s in _FORWARDED}
    proc = subprocess.Popen(server_command(), env=dict(env), process_group=0,
                            preexec_fn=parent_death_signal())
    waiting = [True]

    def on_signal(signum: int, _frame: Any) -> None:
        if waiting[0]:
            waiting[0] = False
            raise _Stop(signum)
        _kill_group(proc, signal.SIGKILL)  # a second signal while stopping: at once

    try:
        try:
            for s in _FORWARDED:
                signal.signal(s, on_signal)
            code = proc.wait()
            waiting[0] = False
            return code
        except _Stop as stop:
            waiting[0] = False
            _kill_group(proc, signal.SIGTERM if stop.signum == signal.SIGHUP else stop.signum)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _kill_group(proc, signal.SIGKILL)
            return 128 + stop.signum
    finally:
        waiting[0] = False
        _kill_group(proc, signal.SIGKILL)  # only if the child is still running
        proc.wait()
        for s, handler in handlers.items():
            signal.signal(s, handler)


def cmd_dashboard(config: Config, *, store_url: str | None = None, address: str | None = None,
                  port: int | None = None, token_file: str | os.PathLike[str] | None = None,
                  verify_dir: str | os.PathLike[str] | None = None) -> int:
    """Serve the dashboard until stopped; the exit code (``130`` after SIGINT, ``143``
    after SIGTERM).

    See :func:`dashboard_env` for the arguments and what is refused.
    """
    env, link = dashboard_env(config, store_url=store_url, address=address, port=port,
                              token_file=token_file, verify_dir=verify_dir)
    token_file = env["GUARDRAIL_DASHBOARD__TOKEN_FILE"]
    address = env["GUARDRAIL_DASHBOARD__ADDRESS"]
    shown = f"[{address}]" if ":" in address else address
    print(f"guardrail dashboard: serving the record store on "
          f"http://{shown}:{env['GUARDRAIL_DASHBOARD__PORT']}/ (Ctrl-C stops it)", flush=True)
    if link:
        print(f"Created the access token file {token_file} (mode 0600). Open the dashboard "
              f"with this link (shown this once; the token stays in the file):\n  {link}",
              flush=True)
    elif token_file:
        print(f"Access token: {token_file} (every browser logs in once with it).", flush=True)
    if not is_loopback(address):
        print("The dashboard speaks plain HTTP: beyond this machine, serve it through a "
              "reverse proxy with TLS (README, Dashboard).", file=sys.stderr, flush=True)
    return run_server(env)


def _handle(args: argparse.Namespace) -> int:
    return int(cmd_dashboard(load_config(args), store_url=args.store, address=args.address,
                             port=args.port, token_file=args.token_file,
                             verify_dir=args.verify_dir))


def register(subparsers: Any) -> None:
    """Add ``guardrail dashboard``."""
    db = add_parser(subparsers, "dashboard",
                    help="open the read-only dashboard (Streamlit) on the record store")
    db.add_argument("--address", metavar="ADDR",
                    help="interface to listen on (default [dashboard] address: 127.0.0.1); "
                         "any non-loopback address needs --token-file")
    db.add_argument("--port", type=int, help="port to serve on (default [dashboard] port: 8501)")
    db.add_argument("--token-file", metavar="FILE",
                    help="access token file (hex, mode 0600), created with a new token if "
                         "missing; every browser must log in with the token")
    db.add_argument("--verify-dir", metavar="DIR",
                    help="the one folder whose files the Verify page may read by name "
                         "(default: uploads only)")
    db.set_defaults(func=_handle)
