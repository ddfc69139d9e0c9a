"""Who may use the dashboard, and which server files it may read.

* **The access token.** A random secret in a key file (hex, at least 128 bits, mode 0600,
  the same rules as guardrail's other key files). A browser proves it knows the token once
  (the login page, or ``?token=`` in the link printed when the token was created) and then
  carries a cookie holding an HMAC of the token - never the token itself. Every comparison
  is constant-time (:func:`hmac.compare_digest`).
* **The verify folder.** The Verify page reads server files only inside one configured
  folder: :func:`read_confined` walks the name one component at a time from the folder's
  descriptor with ``O_NOFOLLOW``, so ``..``, absolute paths elsewhere and symbolic links
  (also one swapped in while the file is being opened) are refused.

Nothing here imports Streamlit: ``guardrail dashboard`` and the HTTP gate in
:mod:`dashboard.server` use it before any page exists.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import ipaddress
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from guardrail.errors import InputError
from guardrail.keys import load_or_create_secret, load_secret

__all__ = [
    "COOKIE_NAME",
    "SIDECAR_SUFFIX",
    "ConfinedFile",
    "cookie_matches",
    "cookie_value",
    "is_loopback",
    "load_token",
    "read_confined",
    "token_matches",
]

#: the cookie that carries the proof of the token
COOKIE_NAME = "guardrail_dashboard"
_COOKIE_CONTEXT = b"guardrail-dashboard-cookie-v1"
#: the sidecar suffix of text Content Credentials (``note.txt`` -> ``note.c2pa``)
SIDECAR_SUFFIX = ".c2pa"


def is_loopback(address: str | None) -> bool:
    """True for an address that only this machine can reach (``127.0.0.0/8``, ``::1``,
    ``localhost``). An empty address (every interface), a host name or a LAN address is
    not.

    Examples
    --------
    >>> [is_loopback(a) for a in ("127.0.0.1", "::1", "localhost", "0.0.0.0", "", "10.1.2.3")]
    [True, True, True, False, False, False]
    """
    if not address:
        return False
    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def load_token(path: str | os.PathLike[str], *, create: bool = True) -> tuple[str, bool]:
    """The access token in ``path`` (hex text) and whether it was created just now.

    A missing file is created with a new 256-bit token (mode 0600) when ``create``.

    Raises
    ------
    guardrail.errors.KeyFileError
        The file is missing (and not created), readable by other users, not hex, or
        shorter than 128 bits.
    """
    path = Path(path).expanduser()
    existed = path.exists()
    secret = load_or_create_secret(path) if create else load_secret(path)
    return secret.hex(), not existed


def cookie_value(token: str) -> str:
    """What the login cookie holds: an HMAC-SHA256 of a fixed label keyed by the token, so
    a leaked cookie does not reveal the token."""
    return hmac.new(token.encode("ascii"), _COOKIE_CONTEXT, hashlib.sha256).hexdigest()


def _same(expected: str, presented: str | None) -> bool:
    if not presented or not isinstance(presented, str):
        return False
    return hmac.compare_digest(expected.encode("utf-8"),
                               presented.encode("utf-8", errors="surrogateescape"))


def token_matches(token: str, presented: str | None) -> bool:
    """Whether ``presented`` is the token (constant-time; surrounding blanks ignored)."""
    if not isinstance(presented, str):
        return False
    return _same(token.lower(), presented.strip().lower())


def cookie_matches(token: str, presented: str | None) -> bool:
    """Whether ``presented`` is the login cookie for ``token`` (constant-time)."""
    return _same(cookie_value(token), presented)


# -- the verify folder ---------------------------------------------------------------------
@dataclass(frozen=True)
class ConfinedFile:
    """A file read from inside the verify folder.

    Attributes
    ----------
    name : str
        Its path relative to the folder.
    data : bytes
        Its content.
    sidecar : bytes or None
        The content of its ``.c2pa`` sidecar next to it (text Content Credentials), if any.
    """

    name: str
    data: bytes
    sidecar: bytes | None = None


def _relative_parts(root: Path, name: str) -> list[str]:
    text = name.strip()
    if not text:
        raise InputError("no file name given")
    if "\x00" in text:
        raise InputError("the file name contains a NUL character")
    path = PurePosixPath(os.path.expanduser(text))
    if path.is_absolute():
        try:
            path = path.relative_to(PurePosixPath(root))
        except ValueError:
            raise InputError(f"{text!r} is outside the verify folder {str(root)!r}; only "
                             "files inside that folder can be verified by name") from None
    parts = [p for p in path.parts if p not in ("", ".")]
    if ".." in parts:
        raise InputError(f"{text!r} contains '..'; give a name inside the verify folder "
                         f"{str(root)!r}")
    if not parts:
        raise InputError(f"{text!r} names the verify folder itself, not a file in it")
    return parts


def _open_at(parts: list[str], root_fd: int, shown: str) -> int:
    """Open ``parts`` below ``root_fd`` one component at a time, never following a link."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    fd = os.dup(root_fd)
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | nofollow | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            try:
                nxt = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                where = "/".join(parts[:i + 1])
                if exc.errno == errno.ENOENT:
                    raise InputError(f"no file {shown!r} in the verify folder") from None
                if exc.errno in (errno.ELOOP, errno.EMLINK) or (
                        not last and exc.errno == errno.ENOTDIR and _is_link(fd, part)):
                    raise InputError(f"{where!r} is a symbolic link; the verify folder's "
                                     "files are read without following links") from None
                if exc.errno == errno.ENOTDIR:
                    raise InputError(f"{where!r} is not a folder") from None
                raise InputError(f"cannot open {shown!r}: {exc.strerror}") from None
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def _is_link(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode)
    except OSError:
        return False


def _read_fd(fd: int, shown: str, max_bytes: int) -> bytes:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{shown!r} is not a regular file")
    if info.st_size > max_bytes:
        raise InputError(f"{shown!r} is {info.st_size:,} bytes; the limit is {max_bytes:,} "
                         "([limits] max_file_bytes)")
    with os.fdopen(os.dup(fd), "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputError(f"{shown!r} grew beyond the limit of {max_bytes:,} bytes while read")
    return data


def read_confined(root: str | os.PathLike[str], name: str, *, max_bytes: int) -> ConfinedFile:
    """Read the file ``name`` (relative to ``root``, or absolute inside it) and its
    ``.c2pa`` sidecar, refusing anything outside ``root``.

    Parameters
    ----------
    root
        The verify folder (resolved here; the operator's configuration is trusted).
    name
        What the user typed.
    max_bytes
        Larger files are refused before they are read.

    Raises
    ------
    guardrail.errors.InputError
        A name with ``..``, an absolute path outside ``root``, a symbolic link anywhere
        below ``root``, a missing file, something that is not a regular file, or a file over
        ``max_bytes``. The message names the problem.
    """
    base = Path(root).expanduser().resolve()
    parts = _relative_parts(base, name)
    shown = "/".join(parts)
    try:
        root_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise InputError(f"the verify folder {str(base)!r} cannot be opened: "
                         f"{exc.strerror}") from None
    try:
        fd = _open_at(parts, root_fd, shown)
        try:
            data = _read_fd(fd, shown, max_bytes)
        finally:
            os.close(fd)
        sidecar = None
        side_parts = [*parts[:-1], PurePosixPath(parts[-1]).with_suffix(SIDECAR_SUFFIX).name]
        if side_parts != parts:
            try:
                side_fd = _open_at(side_parts, root_fd, "/".join(side_parts))
            except InputError:
                side_fd = None  # no (usable) sidecar: the credentials are then absent
            if side_fd is not None:
                try:
                    sidecar = _read_fd(side_fd, "/".join(side_parts), max_bytes)
                except InputError:
                    sidecar = None
                finally:
                    os.close(side_fd)
    finally:
        os.close(root_fd)
    return ConfinedFile(name=shown, data=data, sidecar=sidecar)
