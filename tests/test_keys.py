import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from guardrail.errors import DependencyError, KeyFileError
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


@pytest.mark.parametrize(("module", "package"), [("c2pa", "c2pa-python"),
                                                 ("cryptography", "cryptography")])
def test_keys_init_without_the_provenance_extra_names_the_extra(tmp_path: Path, module: str,
                                                                package: str):
    """Without c2pa-python or cryptography, ``guardrail keys init`` ends in a
    DependencyError naming the extra (exit 11), not in an internal error."""
    code = (f"import sys; sys.modules[{module!r}] = None\n"  # the package is not installed
            "from guardrail.cli import main\n"
            "sys.exit(main(['keys', 'init']))\n")
    env = {**os.environ, "GUARDRAIL_PATHS__DATA_DIR": str(tmp_path / "data")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == DependencyError.exit_code == 11, res.stderr
    assert f"the optional package '{package}' is not installed" in res.stderr
    assert "pip install 'guardrail[provenance]'" in res.stderr
    assert "internal error" not in res.stderr
    assert not (tmp_path / "data" / "keys" / "c2pa").exists()
    # the secret keys need no optional package: they are created
    assert (tmp_path / "data" / "keys" / "prompt-hash.key").is_file()
    assert (tmp_path / "data" / "keys" / "watermark.key").is_file()
