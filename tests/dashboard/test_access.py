"""The dashboard's access rules: the token and its cookie, and the verify folder that the
Verify page may read (nothing outside it, no links, no special files)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dashboard.access import (
    cookie_matches,
    cookie_value,
    is_loopback,
    load_token,
    read_confined,
    token_matches,
)
from guardrail.errors import InputError, KeyFileError

LIMIT = 1 << 20


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False), (None, False),
    ("192.168.1.10", False), ("dashboard.example.org", False)])
def test_is_loopback(address: str | None, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_token_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "dashboard.key"
    token, created = load_token(path)
    assert created and len(token) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_token(path) == (token, False)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="accessible to other users"):
        load_token(path)


def test_a_missing_token_file_is_not_created_when_asked_not_to(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        load_token(tmp_path / "none.key", create=False)
    assert not (tmp_path / "none.key").exists()


def test_token_and_cookie_comparisons() -> None:
    token = "ab" * 32
    assert token_matches(token, token) and token_matches(token, f" {token.upper()}\n")
    assert not token_matches(token, token[:-1]) and not token_matches(token, None)
    assert not token_matches(token, "é" * 64)
    cookie = cookie_value(token)
    assert token not in cookie  # the cookie does not carry the token
    assert cookie_matches(token, cookie)
    assert not cookie_matches(token, token) and not cookie_matches("cd" * 32, cookie)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "inbox"
    (root / "sub").mkdir(parents=True)
    (root / "note.txt").write_text("a note")
    (root / "note.c2pa").write_bytes(b"manifest")
    (root / "sub" / "deep.txt").write_text("deep")
    (tmp_path / "secret.txt").write_text("outside")
    return root


def test_files_inside_the_folder_are_read(folder: Path) -> None:
    got = read_confined(folder, "note.txt", max_bytes=LIMIT)
    assert (got.name, got.data, got.sidecar) == ("note.txt", b"a note", b"manifest")
    assert read_confined(folder, "sub/deep.txt", max_bytes=LIMIT).data == b"deep"
    assert read_confined(folder, "./sub/./deep.txt", max_bytes=LIMIT).sidecar is None
    assert read_confined(folder, str(folder / "sub" / "deep.txt"), max_bytes=LIMIT).data == b"deep"


@pytest.mark.parametrize(("name", "message"), [
    ("../secret.txt", "contains '..'"),
    ("sub/../../secret.txt", "contains '..'"),
    ("sub/..", "contains '..'"),
    ("/etc/passwd", "outside the verify folder"),
    ("", "no file name"),
    (".", "the verify folder itself"),
    ("missing.txt", "no file 'missing.txt'"),
    ("sub", "not a regular file"),
    ("note.txt/x", "not a folder"),
])
def test_names_that_leave_the_folder_are_refused(folder: Path, name: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        read_confined(folder, name, max_bytes=LIMIT)


def test_an_absolute_path_outside_is_refused_even_when_it_exists(folder: Path) -> None:
    with pytest.raises(InputError, match="outside the verify folder"):
        read_confined(folder, str(folder.parent / "secret.txt"), max_bytes=LIMIT)


def test_symbolic_links_are_never_followed(folder: Path) -> None:
    (folder / "escape.txt").symlink_to(folder.parent / "secret.txt")
    (folder / "outdir").symlink_to(folder.parent)
    (folder / "inside.txt").symlink_to(folder / "note.txt")  # even one that stays inside
    for name in ("escape.txt", "outdir/secret.txt", "inside.txt"):
        with pytest.raises(InputError, match="symbolic link"):
            read_confined(folder, name, max_bytes=LIMIT)


def test_special_files_and_large_files_are_refused(folder: Path) -> None:
    os.mkfifo(folder / "pipe")
    with pytest.raises(InputError, match="not a regular file"):  # and does not block
        read_confined(folder, "pipe", max_bytes=LIMIT)
    (folder / "big.bin").write_bytes(b"x" * 101)
    with pytest.raises(InputError, match="101 bytes; the limit is 100"):
        read_confined(folder, "big.bin", max_bytes=100)


def test_a_sidecar_link_is_ignored(folder: Path) -> None:
    (folder / "other.txt").write_text("other")
    (folder / "other.c2pa").symlink_to(folder.parent / "secret.txt")
    assert read_confined(folder, "other.txt", max_bytes=LIMIT).sidecar is None
