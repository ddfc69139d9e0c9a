"""Key files: created with mode 0600 in a 0700 folder, checked on every read.

Secrets never appear in logs, reports or error messages; only a short key id (a hash
of the key) is recorded, so a report says which key was used without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from .errors import KeyFileError

__all__ = [
    "PROMPT_KEY_FILE",
    "PromptHasher",
    "init_secret",
    "key_id",
    "load_or_create_secret",
    "load_secret",
    "write_secret_file",
]

log = logging.getLogger(__name__)

#: File name of the prompt-hashing key under ``keys_dir``.
PROMPT_KEY_FILE = "prompt-hash.key"


def key_id(secret: bytes) -> str:
    """A short public identifier of a secret (first 12 hex digits of its SHA-256)."""
    return hashlib.sha256(b"guardrail-key-id:" + secret).hexdigest()[:12]


def write_secret_file(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically, never following a symlink."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, flags, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path exists: never clobber a key by accident
            os.unlink(tmp)
    except FileExistsError:
        raise KeyFileError(f"key file {str(path)!r} already exists; refusing to overwrite") from None
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {str(path)!r}: {exc.strerror}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def load_secret(path: Path) -> bytes:
    """Read a secret key file, refusing one that others can read."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {str(path)!r} does not exist; create keys with `guardrail keys init`"
        ) from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"key file {str(path)!r} is accessible to other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}")
    try:
        data = path.read_bytes().strip()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {str(path)!r}: {exc.strerror}") from None
    try:
        secret = bytes.fromhex(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise KeyFileError(f"key file {str(path)!r} is not a hex-encoded key") from None
    if len(secret) < 16:
        raise KeyFileError(f"key file {str(path)!r} holds a key shorter than 128 bits")
    return secret


def random_secret_hex(nbytes: int) -> str:
    """``nbytes`` of fresh key material from the OS's CSPRNG, hex-encoded: the one place new
    secret keys are drawn (the test suite replaces it with a per-test derivation, so that a
    test's keys, and what depends on them, are the same in every run)."""
    return secrets.token_hex(nbytes)


def load_or_create_secret(path: Path, *, nbytes: int = 32) -> bytes:
    """Load the secret at ``path``, creating a random one (mode 0600) if it is missing."""
    path = Path(path)
    if not path.exists():
        try:
            write_secret_file(path, random_secret_hex(nbytes).encode("ascii") + b"\n")
            log.info("created key file %s (mode 0600)", path)
        except KeyFileError:
            if not path.exists():  # another worker may have created it just now
                raise
    return load_secret(path)


class PromptHasher:
    """Keyed hash of prompts (HMAC-SHA256), so that reports can link equal prompts
    without storing them, and nobody without the key can test guesses against them.

    Examples
    --------
    >>> h = PromptHasher(b"0" * 32)
    >>> h("a cat").startswith("hmac-sha256:")
    True
    """

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self.key_id = key_id(secret)

    @classmethod
    def from_keys_dir(cls, keys_dir: Path) -> PromptHasher:
        """The hasher keyed by ``<keys_dir>/prompt-hash.key`` (created if it is missing)."""
        return cls(load_or_create_secret(Path(keys_dir) / PROMPT_KEY_FILE))

    def __call__(self, prompt: str) -> str:
        digest = hmac.new(self._secret, prompt.encode("utf-8"), hashlib.sha256).hexdigest()
        return f"hmac-sha256:{self.key_id}:{digest}"

    def __repr__(self) -> str:  # never show the secret
        return f"PromptHasher(key_id={self.key_id!r})"


def init_secret(path: Path, *, purpose: str) -> dict[str, Any]:
    """Create the secret key file ``path`` if it is missing (mode 0600); never overwrite it.

    Returns
    -------
    dict
        ``purpose``, ``file``, ``key_id`` (public) and whether the file was ``created``.
    """
    path = Path(path)
    existed = path.exists()
    secret = load_or_create_secret(path)
    return {"purpose": purpose, "file": str(path), "key_id": key_id(secret),
            "created": not existed}
