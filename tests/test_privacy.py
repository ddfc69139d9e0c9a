"""Privacy: the record database is readable by its owner only, and no log holds a raw prompt."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from guardrail import GenerationMetadata, Report, ReportStore

MARKER = "Quokka zebra marker 7Q4X"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    """The usual umask, under which files are created 0644 unless asked otherwise."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_new_sqlite_store_is_private(tmp_path: Path, umask_022):
    """A new store folder is 0700; the database and its -wal and -shm files are 0600."""
    db = tmp_path / "new-folder" / "guardrail.db"
    with ReportStore(f"sqlite:///{db}") as store:
        store.save(Report(
            report_id="r1", created_at="2026-01-01T00:00:00+00:00", modality="text",
            status="ok", metadata=GenerationMetadata(model_id="m"), stages=(),
            prompt="a prompt only the owner may read"))
        files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: oct(_mode(f)) for f in files} == {f.name: "0o600" for f in files}
    assert oct(_mode(db.parent)) == "0o700"


def test_existing_store_folder_keeps_its_mode(tmp_path: Path, umask_022):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o750)
    with ReportStore(f"sqlite:///{folder / 'guardrail.db'}"):
        pass
    assert oct(_mode(folder)) == "0o750"
    assert oct(_mode(folder / "guardrail.db")) == "0o600"


def _guardrail(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guardrail", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize(("modality", "output", "params"), [
    ("audio", "out.wav", []),
    ("text", "out.txt", ["--param", "max_new_tokens=8"]),
])
def test_no_raw_prompt_in_logs_at_the_highest_verbosity(tmp_path: Path, modality, output,
                                                        params):
    """``-vv`` shows guardrail's debug logs, never the prompt (Piper logs the text it speaks
    at DEBUG). Logs go to stderr; stdout holds the report (and, for text, no prompt either,
    but the generated text may repeat words of it, so only stderr is checked there)."""
    data = ["--data-dir", str(tmp_path / "data")]
    keys = _guardrail("keys", "init", *data, cwd=tmp_path)
    assert keys.returncode == 0, keys.stderr
    res = _guardrail("generate", "--modality", modality, "--prompt", MARKER, "-vv", *data,
                     "--store-prompts", "-o", str(tmp_path / output), *params, cwd=tmp_path)
    assert "INFO guardrail" in res.stderr, res.stderr  # -vv logging is on
    assert "internal error" not in res.stderr, res.stderr
    assert MARKER not in res.stderr
    assert MARKER.split()[0] not in res.stderr
    if modality == "audio":
        assert MARKER not in res.stdout
    with ReportStore(f"sqlite:///{tmp_path / 'data' / 'guardrail.db'}") as store:
        stored = store.list(limit=1)
    assert stored and stored[0].prompt == MARKER  # --store-prompts: kept, in a 0600 file
    assert oct(_mode(tmp_path / "data" / "guardrail.db")) == "0o600"
