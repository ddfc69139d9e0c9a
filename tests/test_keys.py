import os
import stat
from pathlib import Path

import pytest

from guardrail.errors import KeyFileError
from guardrail.keys import PromptHasher, load_or_create_secret, load_secret, write_secret_file


def test_created_key_file_is_private_and_stable(tmp_path: Path):
    path = tmp_path / "keys" / "k.key"
    secret = load_or_create_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert load_or_create_secret(path) == secret  # not regenerated
    assert len(secret) == 32


def test_key_readable_by_others_is_refused(tmp_path: Path):
    path = tmp_path / "k.key"
    load_or_create_secret(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_secret(path)


def test_existing_key_is_never_overwritten(tmp_path: Path):
    path = tmp_path / "k.key"
    write_secret_file(path, b"00" * 32 + b"\n")
    with pytest.raises(KeyFileError, match="already exists"):
        write_secret_file(path, b"11" * 32 + b"\n")
    assert load_secret(path) == bytes(32)
    assert [p.name for p in tmp_path.iterdir()] == ["k.key"]  # no temporary left behind


@pytest.mark.parametrize("content", [b"zz-not-hex\n", b"abcd\n", b""])
def test_malformed_key_files(tmp_path: Path, content: bytes):
    path = tmp_path / "k.key"
    write_secret_file(path, content)
    with pytest.raises(KeyFileError):
        load_secret(path)


def test_prompt_hasher_is_keyed_and_never_shows_the_secret():
    a, b = PromptHasher(b"a" * 32), PromptHasher(b"b" * 32)
    assert a("cat") == a("cat")
    assert a("cat") != a("dog")
    assert a("cat") != b("cat")  # a different key gives a different hash
    assert a("cat").startswith(f"hmac-sha256:{a.key_id}:")
    assert "aaaa" not in repr(a) and "61616161" not in repr(a)
