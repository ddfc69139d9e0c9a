"""Decoding outside bytes (``guardrail.media.decode`` and ``read_file``): damaged seeds of
every type, under true and lying media types, decode to a well-formed artifact or raise a
typed error - never anything else."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from guardrail import GuardrailError
from guardrail._types import Artifact, Modality
from guardrail.media import MEDIA_TYPES, decode, read_file
from tests.faults.strategies import FAULTS, damaged, memory_headroom

TYPES = sorted({mt for mt, _ in MEDIA_TYPES.values()})
EXTS = sorted(MEDIA_TYPES)


def check_artifact(art: Artifact) -> None:
    """What a decoded artifact must look like, whatever the bytes were."""
    if art.modality is Modality.IMAGE:
        arr = art.content
        assert isinstance(arr, np.ndarray) and arr.dtype == np.uint8
        assert arr.ndim == 3 and arr.shape[2] in (3, 4) and arr.shape[0] > 0 and arr.shape[1] > 0
    elif art.modality is Modality.AUDIO:
        arr = art.content
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float32 and arr.size > 0
        assert np.isfinite(arr).all()
        assert isinstance(art.sample_rate, int) and art.sample_rate > 0
    else:
        assert isinstance(art.content, str)


def decode_or_typed_error(data: bytes, media_type: str | None) -> Artifact | None:
    with memory_headroom():
        try:
            art = decode(data, media_type, name="fuzz")
        except GuardrailError:
            return None
    check_artifact(art)
    return art


@FAULTS
@given(data=st.data())
def test_decode_damaged_seed_gives_artifact_or_typed_error(seedset, data):
    seed = data.draw(st.sampled_from(seedset.seeds), label="seed")
    change, raw = data.draw(damaged(seed.read()), label="change")
    declared = data.draw(st.sampled_from([None, MEDIA_TYPES.get(seed.ext, (None,))[0],
                                          *TYPES]), label="declared")
    decode_or_typed_error(raw, declared)


@FAULTS
@given(raw=st.binary(max_size=256), declared=st.sampled_from([None, *TYPES]))
def test_decode_arbitrary_bytes_gives_artifact_or_typed_error(raw, declared):
    decode_or_typed_error(raw, declared)


@FAULTS
@given(head=st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"RIFF\0\0\0\0WAVE",
                             b"RIFF\0\0\0\0WEBP", b"fLaC", b"ID3\x04\0\0\0\0\0\0", b"\xff\xfb"]),
       tail=st.binary(max_size=512))
def test_decode_magic_then_garbage_gives_artifact_or_typed_error(head, tail):
    decode_or_typed_error(head + tail, None)


@FAULTS
@given(data=st.data())
def test_read_file_under_any_extension_gives_artifact_or_typed_error(seedset, data):
    seed = data.draw(st.sampled_from(seedset.seeds), label="seed")
    change, raw = data.draw(damaged(seed.read()), label="change")
    ext = data.draw(st.sampled_from([*EXTS, ".bin", ""]), label="ext")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{ext}"
        path.write_bytes(raw)
        with memory_headroom():
            try:
                art = read_file(path)
            except GuardrailError:
                return
        check_artifact(art)
