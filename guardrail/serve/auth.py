"""API keys, scopes and rate limits of ``guardrail serve``.

A key is a token ``grk_<key id>_<secret>`` (the secret: 32 random bytes, URL-safe base64)
shown once when it is created. The record store keeps its public key id, name, scopes and
the SHA-256 of the whole token - never the token - so a stolen database does not give
working keys (the token has 256 bits of entropy: a plain hash is enough, no slow KDF).
A request presents it as ``Authorization: Bearer <token>`` (or ``X-API-Key``); the hash is
compared in constant time. A request without a key may do what ``[serve]
anonymous_scopes`` allows. Answers say only "authentication required" (401) or "not
permitted" (403).

Each key (anonymous requests: each client address) has a token bucket
(``rate_limit_per_second``, ``rate_limit_burst``); an empty bucket answers 429 with
``Retry-After``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from .. import _records
from ..config import SERVE_SCOPES
from ..errors import InputError, ReportNotFound
from ..store import ReportStore
from .problems import Problem

__all__ = ["Principal", "RateLimiter", "create_key", "hash_token", "list_keys", "revoke_key"]

_TOKEN = re.compile(r"^grk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
#: how long a looked-up key is trusted before the store is asked again (a revocation
#: takes effect in every worker within this time)
KEY_CACHE_SECONDS = 5.0


def hash_token(token: str) -> str:
    """SHA-256 of a token, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_key(store: ReportStore, name: str, scopes: Sequence[str]) -> tuple[str, dict]:
    """Create an API key; returns ``(token, key record as a dict)``. The token is not
    stored anywhere: show it once.

    Raises
    ------
    InputError
        An unknown scope, no scope, or an empty name.
    """
    scopes = list(dict.fromkeys(s.strip() for s in scopes if s.strip()))
    bad = [s for s in scopes if s not in SERVE_SCOPES]
    if bad or not scopes:
        raise InputError(f"scopes must be some of {', '.join(SERVE_SCOPES)}; got "
                         f"{', '.join(bad) if bad else 'none'}")
    name = name.strip()
    if not name or len(name) > 128:
        raise InputError("a key needs a name of 1 to 128 characters")
    key_id = secrets.token_hex(8)
    token = f"grk_{key_id}_{secrets.token_urlsafe(32)}"
    rec = store.records(_records.insert_api_key, key_id, name, hash_token(token), scopes,
                        write=True)
    return token, rec.to_dict()


def list_keys(store: ReportStore) -> list[dict]:
    """Every key, revoked ones too (never a token or a hash)."""
    return [k.to_dict() for k in store.records(_records.list_api_keys)]


def revoke_key(store: ReportStore, key_id: str) -> None:
    """Revoke a key by its id.

    Raises
    ------
    ReportNotFound
        No active key has this id.
    """
    if not store.records(_records.revoke_api_key, key_id.strip(), write=True):
        raise ReportNotFound(f"no active API key {key_id.strip()!r}")


@dataclass(frozen=True)
class Principal:
    """Who is asking: a key (its public id and scopes) or anonymous (a client address)."""

    key_id: str | None
    scopes: frozenset[str]
    client: str

    @property
    def bucket(self) -> str:
        return f"key:{self.key_id}" if self.key_id else f"addr:{self.client}"


class Authenticator:
    """Resolves a presented token to its key record, with a short per-worker cache."""

    def __init__(self, store: ReportStore, anonymous_scopes: Sequence[str]) -> None:
        self.store = store
        self.anonymous = frozenset(anonymous_scopes)
        self._cache: dict[str, tuple[float, _records.ApiKeyRecord | None]] = {}
        self._lock = threading.Lock()

    def lookup(self, token: str) -> _records.ApiKeyRecord | None:
        """The active key this token belongs to, or ``None`` (blocking: call it off the
        event loop)."""
        m = _TOKEN.match(token)
        if not m:
            return None
        key_id = m.group(1)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key_id)
        if hit is None or now - hit[0] > KEY_CACHE_SECONDS:
            rec = self.store.records(_records.get_api_key, key_id)
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[key_id] = (now, rec)
        else:
            rec = hit[1]
        if rec is None or rec.revoked_at is not None:
            return None
        if not hmac.compare_digest(rec.token_hash, hash_token(token)):
            return None
        return rec

    @staticmethod
    def token_from(authorization: str | None, api_key: str | None) -> str | None:
        if api_key:
            return api_key.strip()
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
            return ""  # present but not a bearer token: invalid
        return None

    def check(self, principal: Principal, scope: str) -> None:
        """401 (no key, and anonymous requests may not) or 403 (a key without ``scope``)."""
        if scope in principal.scopes:
            return
        if principal.key_id is None:
            raise Problem(401, "unauthorized", "authentication required",
                          headers={"WWW-Authenticate": "Bearer"})
        raise Problem(403, "forbidden", "not permitted")


class RateLimiter:
    """Token buckets by principal (at most ``max_buckets``, least recently used dropped)."""

    def __init__(self, rate: float, burst: int, max_buckets: int = 10_000) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_buckets = max_buckets
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, name: str) -> None:
        """Take one token for ``name``; 429 with ``Retry-After`` when the bucket is empty."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        tokens, last = self._buckets.pop(name, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[name] = (tokens, now)
            wait = max(1, int((1.0 - tokens) / self.rate + 0.999))
            raise Problem(429, "rate-limited", "too many requests",
                          headers={"Retry-After": str(wait)})
        self._buckets[name] = (tokens - 1.0, now)
        while len(self._buckets) > self.max_buckets:
            self._buckets.popitem(last=False)
