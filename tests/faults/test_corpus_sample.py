"""A fixed-seed sample of the malformed corpus (the full corpus runs through
``python -m tests.faults.run_corpus``): 60 inputs across the categories through
``verify_file`` in this process, and a few through the ``guardrail verify`` command."""

from __future__ import annotations

import json

import pytest

from guardrail import verify_file
from guardrail._types import Modality
from tests.faults.corpus import build_corpus
from tests.faults.run_corpus import child_env, run_cli_one
from tests.faults.strategies import call_with_deadline, memory_headroom
from tests.faults.test_special_files import unblocker

SAMPLE = 60
SEED = 11
CLEAN = "No evidence of AI generation found"
#: the categories whose first sampled non-text input also goes through the command
CLI_CATEGORIES = ("truncate", "bitflip_c2pa", "header_field", "c2pa_box_length", "bomb")


@pytest.fixture(scope="module")
def sample(env, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus-sample")
    entries = build_corpus(out, seed=SEED, limit=SAMPLE, big=False, seeds=env.seedset)
    assert len(entries) == SAMPLE
    assert len({e.category for e in entries}) >= 8, "the sample spans the categories"
    return out, entries


@pytest.fixture(scope="module")
def image_detectors(env):
    from guardrail.detectors import build_all

    return build_all(env.config, [Modality.IMAGE])


@pytest.mark.parametrize("index", range(SAMPLE))
def test_sample_input_verifies_without_raising(sample, env, image_detectors, index):
    out, entries = sample
    entry = entries[index]
    path = out / entry.file
    detectors = image_detectors if path.suffix in (".png", ".jpg", ".webp") else []

    def call():
        with memory_headroom():
            return verify_file(path, env.config, store=env.store, detectors=detectors,
                               text_generator=env.text_generator)

    finished, res = call_with_deadline(call, 60.0, unblocker(path))
    what = f"{entry.file} ({entry.category}, {entry.seed}: {entry.change})"
    assert finished, f"{what}: no answer within 60 s"
    assert not isinstance(res, BaseException), f"{what}: verify_file raised {res!r}"
    if res.modality is None:
        assert res.label != CLEAN, f"{what}: undecodable but called clean"


def _cli_entries(entries):
    chosen = []
    for cat in CLI_CATEGORIES:
        match = next((e for e in entries if e.category == cat and not e.file.endswith(".txt")),
                     None)
        if match is not None:
            chosen.append(match)
    return chosen


def test_sample_through_the_command(sample, env, tmp_path):
    out, entries = sample
    chosen = _cli_entries(entries)
    assert len(chosen) >= 4
    environ = child_env(tmp_path)
    problems = []
    for entry in chosen:
        rec = run_cli_one(out / entry.file, env.seedset.data_dir, environ, timeout=60.0,
                          cap=6 * 2**30, scratch=tmp_path)
        what = f"{entry.file} ({entry.category}: {entry.change})"
        if rec["internal"] or rec["hang"] or rec["exit"] not in (0, 3, 4) or not rec["label"]:
            problems.append(f"{what}: exit {rec['exit']}, {rec.get('killed') or ''} "
                            f"{json.dumps(rec.get('stderr', ''))[-300:]}")
        elif rec["modality"] is None and rec["label"] == CLEAN:
            problems.append(f"{what}: undecodable but called clean")
    assert not problems, "\n".join(problems)
