"""Special files in place of media: FIFOs, devices behind symlinks, directories, dangling
links and empty files are refused with a typed error (``read_file``), an ERROR state
(``verify_path``) or a verdict that is not clean (``verify_file``) - promptly, without
reading forever or waiting for a writer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guardrail import GuardrailError, ProvenanceState, verify_file
from guardrail.media import read_file
from guardrail.provenance import verify_path
from tests.faults.strategies import call_with_deadline, memory_headroom

CLEAN = "No evidence of AI generation found"
#: long enough for any refusal; an answer that needs more is a hang
DEADLINE_S = 30.0
KINDS = ["fifo", "dev-zero", "dev-urandom", "directory", "dangling-link", "empty"]


def make(kind: str, folder: Path, ext: str) -> Path:
    path = folder / f"{kind}{ext}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "dev-urandom":
        path.symlink_to("/dev/urandom")
    elif kind == "directory":
        path.mkdir()
    elif kind == "dangling-link":
        path.symlink_to(folder / "nowhere")
    else:
        path.write_bytes(b"")
    return path


def unblocker(path: Path):
    """Open the writing end of a FIFO so that a reader blocked on it gets end-of-file."""
    def unblock() -> None:
        if path.is_fifo():
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
    return unblock


def run(path: Path, fn):
    def call():
        with memory_headroom(2.0):
            return fn()
    finished, value = call_with_deadline(call, DEADLINE_S, unblocker(path))
    assert finished, f"{path.name}: no answer within {DEADLINE_S:g} s (reads forever or waits)"
    return value


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ext", [".wav", ".txt"])
def test_read_file_refuses_special_files(tmp_path, kind, ext):
    path = make(kind, tmp_path, ext)
    value = run(path, lambda: read_file(path))
    assert isinstance(value, GuardrailError), f"{kind}{ext}: got {value!r}, not a typed error"


@pytest.mark.parametrize("kind", KINDS)
def test_verify_path_answers_error_for_special_files(tmp_path, kind):
    path = make(kind, tmp_path, ".png")
    value = run(path, lambda: verify_path(path))
    assert not isinstance(value, BaseException), f"{kind}: raised {value!r}"
    assert value.state is ProvenanceState.ERROR, (kind, value.state, value.reason)


@pytest.mark.parametrize("kind", KINDS)
def test_verify_file_never_calls_a_special_file_clean(tmp_path, env, kind):
    path = make(kind, tmp_path, ".wav")
    value = run(path, lambda: verify_file(path, env.config, store=env.store, detectors=[]))
    assert not isinstance(value, BaseException), f"{kind}: verify_file raised {value!r}"
    assert value.modality is None and value.label != CLEAN, (kind, value.label)
