"""C2PA verification of outside bytes: ``verify_bytes``, ``verify_path`` (what
``verify_file`` uses) and ``verify_text`` never raise for damaged input, and never call a
file whose content changed TRUSTED."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from guardrail import GuardrailError, ProvenanceState
from guardrail._types import ProvenanceResult
from guardrail.media import MEDIA_TYPES, decode
from guardrail.provenance import verify_bytes, verify_path, verify_text
from tests.faults import mutate
from tests.faults.strategies import FAULTS, damaged, memory_headroom

SIGNED = ("guardrail.png", "guardrail.jpg", "guardrail.webp", "guardrail.wav", "guardrail.flac",
          "guardrail.mp3", "peer.CA.jpg", "peer.sample1.png", "peer.sample1.wav",
          "peer.sample1.webp")


def _content(raw: bytes):
    try:
        art = decode(raw, None)
    except GuardrailError:
        return None
    return art.content


def _same_content(a, b) -> bool:
    if a is None or b is None:
        return False
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return a.shape == b.shape and np.array_equal(a, b)


def check(result: ProvenanceResult, original: bytes, raw: bytes) -> None:
    assert isinstance(result, ProvenanceResult)
    assert result.state in ProvenanceState
    if result.state is not ProvenanceState.TRUSTED:
        assert result.reason, "a state other than TRUSTED says why"
    if result.state is ProvenanceState.TRUSTED and raw != original:
        assert _same_content(_content(raw), _content(original)), (
            "damaged bytes whose content differs were called TRUSTED")


@FAULTS
@given(data=st.data())
def test_verify_bytes_never_raises_and_never_trusts_changed_content(env, data):
    seed = env.seedset.by_name(data.draw(st.sampled_from(SIGNED), label="seed"))
    original = seed.read()
    change, raw = data.draw(damaged(original), label="change")
    declared = data.draw(st.sampled_from([None, MEDIA_TYPES[seed.ext][0], "image/png",
                                          "audio/wav", "text/plain"]), label="declared")
    with memory_headroom():
        result = verify_bytes(raw, declared, trust=env.trust)
    check(result, original, raw)


@FAULTS
@given(data=st.data())
def test_verify_path_never_raises_under_any_extension(env, data):
    seed = env.seedset.by_name(data.draw(st.sampled_from(SIGNED), label="seed"))
    original = seed.read()
    change, raw = data.draw(damaged(original), label="change")
    ext = data.draw(st.sampled_from([*MEDIA_TYPES, ".c2pa", ".gif", ".bin", ""]), label="ext")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{ext}"
        path.write_bytes(raw)
        with memory_headroom():
            result = verify_path(path, trust=env.trust)
    check(result, original, raw)


@FAULTS
@given(data=st.data())
def test_verify_text_never_raises_for_damaged_wrappers(env, data):
    text = env.seedset.by_name("guardrail.txt").read().decode("utf-8")
    found = mutate.decode_text_wrapper(text)
    assert found is not None, "the signed text seed carries a C2PA text wrapper"
    _, _, payload = found
    change, damaged_payload = data.draw(damaged(payload), label="change")
    damaged_text = mutate.replace_text_wrapper(text, damaged_payload)
    with memory_headroom():
        result = verify_text(damaged_text, trust=env.trust)
    assert isinstance(result, ProvenanceResult)
    assert result.state is ProvenanceState.TRUSTED or result.reason


@FAULTS
@given(data=st.data())
def test_verify_text_never_trusts_an_edited_text(env, data):
    text = env.seedset.by_name("guardrail.txt").read().decode("utf-8")
    start, _, _ = mutate.decode_text_wrapper(text)
    at = data.draw(st.integers(0, start), label="at")
    extra = data.draw(st.text(min_size=1, max_size=8).filter(lambda s: s.strip()), label="extra")
    with memory_headroom():
        result = verify_text(text[:at] + extra + text[at:], trust=env.trust)
    assert isinstance(result, ProvenanceResult)
    assert result.state is not ProvenanceState.TRUSTED, "an edited text was TRUSTED"


@FAULTS
@given(data=st.data())
def test_verify_sidecar_never_raises(env, data):
    seed = env.seedset.by_name("sidecar.txt")
    manifest = seed.path.with_suffix(".c2pa").read_bytes()
    change, raw = data.draw(damaged(manifest), label="change")
    edit_text = data.draw(st.booleans(), label="edit text")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.txt"
        text = seed.read() + (b" edited" if edit_text else b"")
        path.write_bytes(text)
        path.with_suffix(".c2pa").write_bytes(raw)
        with memory_headroom():
            result = verify_path(path, trust=env.trust)
    assert isinstance(result, ProvenanceResult)
    if edit_text:
        assert result.state is not ProvenanceState.TRUSTED, "an edited text was TRUSTED"
