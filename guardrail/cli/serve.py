"""``guardrail serve``: the HTTP service, and ``guardrail serve keys`` for its API keys."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..config import SERVE_SCOPES
from ..errors import DependencyError
from ..store import ReportStore
from ._common import EXIT_OK, add_parser, emit_json, load_config

__all__ = ["register"]


def _require_serve_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import multipart  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise DependencyError(f"guardrail serve needs {exc.name}: pip install "
                              "'guardrail[serve]'") from None


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the service until SIGTERM or Ctrl-C (requests in flight are finished)."""
    _require_serve_extra()
    import uvicorn

    from ..serve.logs import configure_logging
    from ..serve.settings import ServeSettings

    cfg = load_config(args)
    settings = ServeSettings.from_config(cfg, address=args.address, port=args.port,
                                         workers=args.workers)
    settings.check_exposure()  # ConfigError (exit 8) before anything listens
    ReportStore(cfg.store_url).close()  # create or migrate the store once, before the workers
    # every worker process builds its application from the same configuration
    env = {"GUARDRAIL_STORE__URL": cfg.store_url,
           "GUARDRAIL_PATHS__DATA_DIR": str(cfg.data_dir),
           "GUARDRAIL_SERVE__ADDRESS": settings.address,
           "GUARDRAIL_SERVE__PORT": str(settings.port),
           "GUARDRAIL_SERVE__WORKERS": str(settings.workers)}
    if getattr(args, "config", None):
        env["GUARDRAIL_CONFIG"] = str(Path(args.config).absolute())
    os.environ.update(env)
    configure_logging()
    uvicorn.run("guardrail.serve.app:create_app_from_env", factory=True,
                host=settings.address, port=settings.port, workers=settings.workers,
                log_config=None, access_log=False, server_header=False,
                timeout_graceful_shutdown=30)
    return EXIT_OK


def _store(args: argparse.Namespace) -> ReportStore:
    return ReportStore(load_config(args).store_url)


def cmd_keys_create(args: argparse.Namespace) -> int:
    """Create a key and print its token once."""
    from ..serve.auth import create_key

    with _store(args) as store:
        token, rec = create_key(store, args.name, args.scope)
    if args.json:
        emit_json({**rec, "token": token})
    else:
        print(f"key {rec['key_id']} ({rec['name']}; scopes {' '.join(rec['scopes'])})")
        print(f"token: {token}")
        print("the token is shown only now: the store keeps its SHA-256 hash")
    return EXIT_OK


def cmd_keys_list(args: argparse.Namespace) -> int:
    """List the keys (never a token)."""
    from ..serve.auth import list_keys

    with _store(args) as store:
        keys = list_keys(store)
    if args.json:
        emit_json(keys)
    else:
        for k in keys:
            state = "active " if k["active"] else "revoked"
            print(f"{k['key_id']}  {state}  {k['created_at']}  {k['name']}  "
                  f"[{' '.join(k['scopes'])}]")
    return EXIT_OK


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    """Revoke a key (every worker refuses it within seconds)."""
    from ..serve.auth import revoke_key

    with _store(args) as store:
        revoke_key(store, args.key_id)
    if args.json:
        emit_json({"key_id": args.key_id, "revoked": True})
    else:
        print(f"revoked {args.key_id}")
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``guardrail serve`` and ``guardrail serve keys create|list|revoke``."""
    s = add_parser(subparsers, "serve",
                   help="HTTP service: verify, C2PA soft-binding lookup, guarded generation")
    s.add_argument("--address", help="interface to listen on (default: [serve] address)")
    s.add_argument("--port", type=int, help="port (default: [serve] port)")
    s.add_argument("--workers", type=int, help="worker processes (default: [serve] workers)")
    s.set_defaults(func=cmd_serve)
    sub = s.add_subparsers(dest="serve_verb", metavar="VERB")
    keys = add_parser(sub, "keys", help="API keys of the service")
    ksub = keys.add_subparsers(dest="keys_verb", metavar="VERB", required=True)
    kc = add_parser(ksub, "create", help="create a key; its token is shown once")
    kc.add_argument("--name", required=True, help="who or what uses the key")
    kc.add_argument("--scope", action="append", required=True, choices=SERVE_SCOPES,
                    help="repeatable")
    kc.add_argument("--json", action="store_true")
    kc.set_defaults(func=cmd_keys_create)
    kl = add_parser(ksub, "list", help="list the keys (never a token)")
    kl.add_argument("--json", action="store_true")
    kl.set_defaults(func=cmd_keys_list)
    kr = add_parser(ksub, "revoke", help="revoke a key by its id")
    kr.add_argument("key_id")
    kr.add_argument("--json", action="store_true")
    kr.set_defaults(func=cmd_keys_revoke)
