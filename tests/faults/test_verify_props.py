"""The verify verdict (``guardrail.verify_file``) for damaged files under any name: it never
raises, and a file whose bytes could not be decoded never gets the clean verdict."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from guardrail import verify_file
from guardrail._types import Modality
from guardrail.media import MEDIA_TYPES
from tests.faults.strategies import FAULTS, damaged, memory_headroom

CLEAN = "No evidence of AI generation found"
LABELS = {"Tampered", "AI-generated", "Likely AI-generated", "Signed, not declared AI-generated",
          "Could not be verified", "Signed text, reformatted", "Watermark without matching record",
          CLEAN}


def check_verdict(res) -> None:
    assert res.label in LABELS, res.label
    assert res.summary
    json.dumps(res.to_dict())  # what `guardrail verify --json` prints
    if res.modality is None:
        assert res.label != CLEAN, (
            f"bytes that could not be decoded got the clean verdict ({res.not_checked})")


@FAULTS
@given(data=st.data())
def test_verify_file_never_raises_and_never_calls_undecodable_clean(env, data):
    seed = data.draw(st.sampled_from(env.seedset.seeds), label="seed")
    change, raw = data.draw(damaged(seed.read()), label="change")
    ext = data.draw(st.sampled_from([seed.ext, *MEDIA_TYPES, ".bin"]), label="ext")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{ext}"
        path.write_bytes(raw)
        with memory_headroom():
            res = verify_file(path, env.config, store=env.store, detectors=[],
                              text_generator=env.text_generator)
    check_verdict(res)


def test_intact_seeds_are_recognised(env):
    """The property above is only meaningful if intact seeds verify as what they are."""
    for seed in env.seedset.of_kind("guardrail"):
        res = verify_file(seed.path, env.config, store=env.store, detectors=[],
                          text_generator=env.text_generator)
        assert res.label == "AI-generated", (seed.name, res.summary, res.not_checked)
        if res.modality is not Modality.TEXT:
            assert res.watermark is not None and res.watermark.detected, seed.name
