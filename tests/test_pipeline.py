"""The guard's mechanism, tested with fakes: stage order, policies, skips, errors,
bad input, and the record each call leaves."""

from pathlib import Path

import numpy as np
import pytest

from guardrail import (
    Config,
    GenerationHooks,
    Guard,
    ReportStore,
    StageOutcome,
    StageSkipped,
)
from guardrail.errors import GenerationError, OutputError, PromptError, StageError, StoreError
from guardrail.stages import SLOTS
from guardrail.testing import (
    EchoTextGenerator,
    FailingGenerator,
    FakeCheck,
    NoiseAudioGenerator,
    SolidImageGenerator,
    skip_with,
)


@pytest.fixture
def guard(config: Config, store: ReportStore) -> Guard:
    return Guard(EchoTextGenerator(), store=store, config=config, stages=[])


def statuses(report) -> dict[str, str]:
    return {s.stage: s.status.value for s in report.stages}


def test_every_slot_is_recorded_in_order_and_unconfigured_ones_are_skipped(guard, tmp_path):
    res = guard.generate("hello", output=tmp_path / "o.txt")
    assert res.status == "ok" and res.released
    assert [s.stage for s in res.report.stages] == list(SLOTS)
    st = statuses(res.report)
    for slot in ("output_checks", "watermark", "self_check", "provenance"):
        assert st[slot] == "skipped"
        assert "not configured" in res.report.stage(slot).reason
    assert st["input_policy"] == st["generate"] == st["encode"] == st["record"] == "ok"
    assert (tmp_path / "o.txt").read_text() == "echo: hello"
    stored = guard.store.get(res.report_id)
    assert stored.to_dict() == res.report.to_dict()
    assert stored.content_hash == res.artifact.content_hash


@pytest.mark.parametrize(
    ("policy", "report_status", "stage_status", "released"),
    [("block", "blocked", "blocked", False), ("flag", "flagged", "flagged", True),
     ("continue", "ok", "failed", True)],
)
def test_failed_check_follows_its_policy(config, store, tmp_path, policy, report_status,
                                         stage_status, released):
    check = FakeCheck(lambda ctx: False, on_fail=policy)
    g = Guard(EchoTextGenerator(), store=store, config=config, stages=[check])
    out = tmp_path / "o.txt"
    res = g.generate("hi", output=out)
    assert res.status == report_status
    assert statuses(res.report)["output_checks"] == stage_status
    assert res.released is released and out.exists() is released
    if not released:
        assert res.artifact is None and res.report.output is None
        # stages after the block did not run and say so
        assert statuses(res.report)["encode"] == "skipped"
    assert store.get(res.report_id).status == report_status


@pytest.mark.parametrize(
    ("policy", "report_status", "released"),
    [("block", "blocked", False), ("flag", "flagged", True), ("continue", "ok", True)],
)
def test_stage_that_cannot_run_is_skipped_never_passed(config, store, policy, report_status,
                                                       released):
    wm = FakeCheck(skip_with("image smaller than 64x64"), slot="watermark", name="wm",
                   on_fail=policy)
    g = Guard(EchoTextGenerator(), store=store, config=config, stages=[wm])
    res = g.generate("hi")
    rec = res.report.stage("watermark")
    assert rec.status.value == "skipped"
    assert "could not run: image smaller than 64x64" in rec.reason
    assert res.status == report_status and res.released is released


def test_stage_error_under_block_raises_and_is_recorded(config, store, tmp_path):
    def boom(ctx):
        raise RuntimeError("detector exploded")

    g = Guard(EchoTextGenerator(), store=store, config=config,
              stages=[FakeCheck(boom, slot="self_check", on_fail="block")])
    out = tmp_path / "o.txt"
    with pytest.raises(StageError, match="detector exploded") as info:
        g.generate("hi", output=out)
    rep = store.get(info.value.report_id)
    assert rep.status == "error" and statuses(rep)["self_check"] == "error"
    assert "RuntimeError: detector exploded" in rep.stage("self_check").reason
    assert not out.exists()


def test_stage_error_under_flag_releases_flagged(config, store):
    def boom(ctx):
        raise RuntimeError("x")

    g = Guard(EchoTextGenerator(), store=store, config=config,
              stages=[FakeCheck(boom, on_fail="flag")])
    res = g.generate("hi")
    assert res.status == "flagged" and statuses(res.report)["output_checks"] == "error"


def test_stages_run_in_slot_order_and_see_the_current_artifact(config, store):
    order = []

    def mark(name):
        def behaviour(ctx):
            order.append((name, ctx.artifact.data is not None))
            return True
        return behaviour

    stages = [FakeCheck(mark("provenance"), slot="provenance"),
              FakeCheck(mark("self_check"), slot="self_check"),
              FakeCheck(mark("watermark"), slot="watermark"),
              FakeCheck(mark("output_checks"), slot="output_checks")]
    Guard(EchoTextGenerator(), store=store, config=config, stages=stages).generate("hi")
    # encode runs between watermark and self_check: only the last two see encoded bytes
    assert order == [("output_checks", False), ("watermark", False), ("self_check", True),
                     ("provenance", True)]


def test_watermark_stage_replaces_artifact_and_passes_evidence(config, store, tmp_path):
    def mark(ctx):
        ctx.evidence.extra["watermark_id"] = "wm-123"
        return StageOutcome(artifact=ctx.artifact.evolve(content=ctx.artifact.content + " [wm]"),
                            details={"scheme": "fake"})

    seen = {}

    def provenance(ctx):
        seen["id"] = ctx.evidence.extra["watermark_id"]
        return True

    g = Guard(EchoTextGenerator(), store=store, config=config,
              stages=[FakeCheck(mark, slot="watermark"), FakeCheck(provenance, slot="provenance")])
    res = g.generate("hi", output=tmp_path / "o.txt")
    assert (tmp_path / "o.txt").read_text() == "echo: hi [wm]"
    assert seen["id"] == "wm-123"
    assert res.report.stage("watermark").details["scheme"] == "fake"
    assert store.get(res.report_id).extra["evidence"] == {"watermark_id": "wm-123"}


def test_generation_hooks_reach_the_generator(config, store):
    gen = EchoTextGenerator()
    hooks = GenerationHooks(watermarking_config="WM-CONFIG")
    g = Guard(gen, store=store, config=config,
              stages=[FakeCheck(lambda c: True, slot="watermark", hooks=hooks)])
    g.generate("hi")
    assert gen.calls[-1][1].watermarking_config == "WM-CONFIG"
    Guard(gen, store=store, config=config, stages=[]).generate("hi")
    assert gen.calls[-1][1] is None


# -- bad input --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("prompt", "message"),
    [("", "the prompt is empty"), ("   \n\t", "the prompt is empty"),
     ("x" * 2001, "2001 characters; the limit is 2000")],
)
def test_bad_prompts_raise_and_are_recorded_as_errors(guard, tmp_path, prompt, message):
    out = tmp_path / "o.txt"
    with pytest.raises(PromptError, match=message) as info:
        guard.generate(prompt, output=out)
    rep = guard.store.get(info.value.report_id)
    assert rep.status == "error" and message in rep.error
    assert statuses(rep)["input_policy"] == "error"
    assert statuses(rep)["generate"] == "skipped"
    assert not out.exists() and list(tmp_path.glob("*partial*")) == []


def test_prompt_limit_is_configurable(store, tmp_path):
    cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path)},
                                 "policy": {"max_prompt_chars": 5}})
    g = Guard(EchoTextGenerator(), store=store, config=cfg, stages=[])
    assert g.generate("12345").status == "ok"
    with pytest.raises(PromptError, match="limit is 5"):
        g.generate("123456")


def test_blocked_terms_block_input_and_flag_output(store, tmp_path):
    cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path)},
                                 "policy": {"blocked_terms": ["Forbidden"]}})
    g = Guard(EchoTextGenerator(), store=store, config=cfg, stages=[])
    out = tmp_path / "o.txt"
    res = g.generate("say FORBIDDEN things", output=out)
    assert res.status == "blocked" and not out.exists()
    assert statuses(res.report)["generate"] == "skipped"  # never reached the model
    # the echo generator repeats the prompt, so the output check (policy flag) sees it too
    cfg2 = Config.load(overrides={"paths": {"data_dir": str(tmp_path)},
                                  "policy": {"blocked_terms": ["echo"]}})
    res = Guard(EchoTextGenerator(), store=store, config=cfg2, stages=[]).generate("hi", output=out)
    assert res.status == "flagged" and statuses(res.report)["output_checks"] == "flagged"


@pytest.mark.parametrize(
    ("output", "error", "message"),
    [("missing-dir/o.txt", OutputError, "does not exist"),
     (".", OutputError, "is a directory"),
     ("o.png", Exception, "a .png file cannot hold text"),
     ("o.xyz", Exception, "unsupported extension")],
)
def test_bad_output_paths_fail_before_generating(config, store, tmp_path, output, error, message):
    gen = EchoTextGenerator()
    g = Guard(gen, store=store, config=config, stages=[])
    with pytest.raises(error, match=message) as info:
        g.generate("hi", output=tmp_path / output)
    assert gen.calls == []  # the model never ran
    assert store.get(info.value.report_id).status == "error"


def test_unwritable_output_folder_fails_before_generating(config, store, tmp_path, monkeypatch):
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    real_access = os.access
    # root can write anywhere, so simulate a read-only folder at the permission check
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == ro else real_access(p, mode))
    gen = EchoTextGenerator()
    with pytest.raises(OutputError, match="is not writable") as info:
        Guard(gen, store=store, config=config, stages=[]).generate("hi", output=ro / "o.txt")
    assert gen.calls == [] and store.get(info.value.report_id).status == "error"


def test_parent_that_is_a_file(config, store, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is not a directory"):
        Guard(EchoTextGenerator(), store=store, config=config, stages=[]).generate("hi", output=tmp_path / "f" / "o.txt")


def test_write_failing_after_generation_is_an_error_with_a_report(config, store, tmp_path,
                                                                  monkeypatch):
    import errno

    import guardrail.media

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(guardrail.media.os, "replace", disk_full)
    with pytest.raises(OutputError, match="No space left on device") as info:
        Guard(EchoTextGenerator(), store=store, config=config, stages=[]).generate(
            "hi", output=tmp_path / "o.txt")
    rep = store.get(info.value.report_id)
    assert rep.status == "error" and rep.output is None
    assert statuses(rep)["record"] == "error"
    assert list(tmp_path.glob("*o.txt*")) == []  # no partial file left behind


@pytest.mark.parametrize(
    ("generator", "message"),
    [(FailingGenerator(exc=RuntimeError("CUDA out of memory")), "raised RuntimeError: CUDA out of memory"),
     (FailingGenerator(result=lambda ps: [None for _ in ps]), "returned nothing"),
     (FailingGenerator(result=[]), "returned 0 outputs for 1 prompts"),
     (FailingGenerator(result=lambda ps: [__import__("guardrail").Generated(content="  ")]),
      "returned empty text"),
     (FailingGenerator("image", result=lambda ps: [__import__("guardrail").Generated(
         content=np.zeros((0, 0, 3), np.uint8))]), "returned an empty array"),
     (FailingGenerator("audio", result=lambda ps: [__import__("guardrail").Generated(
         content=np.full(10, np.nan, np.float32), sample_rate=8000)]), "non-finite")],
)
def test_generator_failures_are_errors_with_a_report(config, store, tmp_path, generator, message):
    out = tmp_path / ("o" + {"text": ".txt", "image": ".png", "audio": ".wav"}[generator.modality.value])
    g = Guard(generator, store=store, config=config, stages=[])
    with pytest.raises(GenerationError, match=message) as info:
        g.generate("hi", output=out)
    rep = store.get(info.value.report_id)
    assert rep.status == "error" and statuses(rep)["generate"] == "error"
    assert not out.exists() and list(tmp_path.glob(".*partial")) == []


def test_store_failure_leaves_no_unrecorded_output(config, tmp_path):
    s = ReportStore(f"sqlite:///{tmp_path / 'r.db'}")
    g = Guard(EchoTextGenerator(), store=s, config=config, stages=[])
    g.generate("first")
    import sqlalchemy as sa

    with s.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE stage_records RENAME TO broken"))
    out = tmp_path / "o.txt"
    with pytest.raises(StoreError):
        g.generate("second", output=out)
    assert not out.exists()  # never release an output that was not recorded
    assert list(tmp_path.glob(".*partial")) == []


def test_raw_prompt_stored_only_on_opt_in(store, tmp_path):
    off = Config.load(overrides={"paths": {"data_dir": str(tmp_path)}})
    on = Config.load(overrides={"paths": {"data_dir": str(tmp_path)},
                                "store": {"store_prompts": True}})
    r1 = Guard(EchoTextGenerator(), store=store, config=off, stages=[]).generate("secret plan")
    r2 = Guard(EchoTextGenerator(), store=store, config=on, stages=[]).generate("secret plan")
    assert store.get(r1.report_id).prompt is None
    assert store.get(r2.report_id).prompt == "secret plan"
    # the keyed hash links the two without revealing the prompt
    h = store.get(r1.report_id).metadata.prompt_hash
    assert h == store.get(r2.report_id).metadata.prompt_hash and "secret" not in h


def test_batch_keeps_going_past_a_bad_prompt(guard, tmp_path):
    outs = [tmp_path / f"o{i}.txt" for i in range(3)]
    results = guard.generate_batch(["a", "", "c"], outputs=outs, raise_errors=False)
    assert [r.status for r in results] == ["ok", "error", "ok"]
    assert [o.exists() for o in outs] == [True, False, True]
    assert guard.store.count() == 3
    assert len(guard.generator.calls[-1][0]) == 2  # one generator call for the good prompts


@pytest.mark.parametrize(
    ("generator", "suffix", "media_type", "magic"),
    [(SolidImageGenerator(), ".png", "image/png", b"\x89PNG"),
     (SolidImageGenerator(), ".jpg", "image/jpeg", b"\xff\xd8"),
     (SolidImageGenerator(), ".webp", "image/webp", b"RIFF"),
     (NoiseAudioGenerator(), ".wav", "audio/wav", b"RIFF"),
     (NoiseAudioGenerator(), ".flac", "audio/flac", b"fLaC")],
)
def test_encoding_by_extension(config, store, tmp_path, generator, suffix, media_type, magic):
    out = tmp_path / f"o{suffix}"
    res = Guard(generator, store=store, config=config, stages=[]).generate("x", output=out, seed=1)
    assert res.report.media_type == media_type
    assert out.read_bytes().startswith(magic)
    import hashlib

    assert res.report.content_hash == "sha256:" + hashlib.sha256(out.read_bytes()).hexdigest()


def test_stage_skip_exception_carries_details(config, store):
    def cannot(ctx):
        raise StageSkipped("no key file", key="watermark.key")

    res = Guard(EchoTextGenerator(), store=store, config=config,
                stages=[FakeCheck(cannot, slot="provenance", on_fail="continue")]).generate("x")
    rec = res.report.stage("provenance")
    assert rec.details["key"] == "watermark.key" and res.status == "ok"


def test_preflight_rejects_without_generating(config, store, tmp_path):
    gen = EchoTextGenerator()
    g = Guard(gen, store=store, config=config, stages=[])
    assert g.preflight("fine", output=tmp_path / "o.txt") is None
    assert store.count() == 0  # a request that would go ahead records nothing yet
    with pytest.raises(PromptError):
        g.preflight("", output=tmp_path / "o.txt")
    assert store.count() == 1 and gen.calls == []


def test_output_file_replaced_atomically(config, store, tmp_path):
    out = Path(tmp_path / "o.txt")
    out.write_text("old")
    Guard(EchoTextGenerator(), store=store, config=config, stages=[]).generate("new", output=out)
    assert out.read_text() == "echo: new"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("o")) == ["o.txt"]


# -- protective stages by default -------------------------------------------------------
def test_a_guard_without_stages_runs_the_configured_protection(config, store, tmp_path):
    out = tmp_path / "o.txt"
    guard = Guard(EchoTextGenerator(), store=store, config=config)
    names = {slot: [s.name for s in stages] for slot, stages in guard.stages.items()}
    assert names["output_checks"] == ["detectors"]
    assert names["watermark"] and names["self_check"] and names["provenance"] == ["c2pa"]
    res = guard.generate("hi", output=out)
    # this fake cannot carry a text watermark and there are no keys: never silently released
    assert res.status == "blocked" and not out.exists() and res.artifact is None
    rec = res.report.stage("watermark")
    assert rec.status.value == "skipped" and "watermark unavailable" in rec.reason


def test_extra_stages_add_to_the_defaults_and_stages_replace_them(config, store):
    mine = FakeCheck(lambda ctx: True, name="mine")
    extra = Guard(EchoTextGenerator(), store=store, config=config, extra_stages=[mine])
    assert [s.name for s in extra.stages["output_checks"]] == ["detectors", "mine"]
    assert extra.stages["watermark"] and extra.stages["provenance"]
    only = Guard(EchoTextGenerator(), store=store, config=config, stages=[mine])
    assert [s.name for s in only.stages["output_checks"]] == ["mine"]
    assert only.stages["watermark"] == only.stages["provenance"] == []
    both = Guard(EchoTextGenerator(), store=store, config=config, stages=[],
                 extra_stages=[mine])
    assert [s.name for s in both.stages["output_checks"]] == ["mine"]


# -- files that travel with the output --------------------------------------------------
def _with_file(content: bytes = b"manifest"):
    return FakeCheck(lambda ctx: StageOutcome(files={".side": content}), slot="provenance",
                     name="sidecar")


def test_stage_files_are_written_next_to_the_output(config, store, tmp_path):
    out = tmp_path / "o.txt"
    res = Guard(EchoTextGenerator(), store=store, config=config,
                stages=[_with_file()]).generate("hi", output=out)
    assert res.status == "ok" and out.read_text() == "echo: hi"
    assert (tmp_path / "o.side").read_bytes() == b"manifest"
    assert dict(res.files) == {".side": b"manifest"}
    assert "files" not in res.report.extra.get("evidence", {})
    # without an output path the files are still handed back
    res = Guard(EchoTextGenerator(), store=store, config=config,
                stages=[_with_file()]).generate("hi")
    assert res.output is None and dict(res.files) == {".side": b"manifest"}


def test_stage_files_are_removed_when_the_report_cannot_be_recorded(config, tmp_path):
    import sqlalchemy as sa

    s = ReportStore(f"sqlite:///{tmp_path / 'r.db'}")
    g = Guard(EchoTextGenerator(), store=s, config=config, stages=[_with_file()])
    g.generate("first")
    with s.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE stage_records RENAME TO broken"))
    with pytest.raises(StoreError):
        g.generate("second", output=tmp_path / "o.txt")
    assert not (tmp_path / "o.txt").exists() and not (tmp_path / "o.side").exists()
    s.close()


def test_a_blocked_output_leaves_no_stage_file(config, store, tmp_path):
    block = FakeCheck(lambda ctx: False, slot="provenance", name="no", on_fail="block")
    res = Guard(EchoTextGenerator(), store=store, config=config,
                stages=[_with_file(), block]).generate("hi", output=tmp_path / "o.txt")
    assert res.status == "blocked" and dict(res.files) == {}
    assert list(tmp_path.glob("o.*")) == []


@pytest.mark.parametrize("suffix", ["c2pa", ".", "../x.c2pa", ".a.b", "a/.c2pa"])
def test_stage_files_are_named_by_a_suffix(suffix):
    with pytest.raises(ValueError, match="named by a suffix"):
        StageOutcome(files={suffix: b"x"})
    with pytest.raises(TypeError, match="must be bytes"):
        StageOutcome(files={".c2pa": "text"})


def test_a_stage_file_may_not_replace_the_output(config, store, tmp_path):
    stage = FakeCheck(lambda ctx: StageOutcome(files={".txt": b"x"}), slot="provenance")
    with pytest.raises(OutputError, match="would replace the output") as info:
        Guard(EchoTextGenerator(), store=store, config=config, stages=[stage]).generate(
            "hi", output=tmp_path / "o.txt")
    assert store.get(info.value.report_id).status == "error"
    assert list(tmp_path.glob("o.*")) == []


# -- cheap checks before generating (issue 11, item 9) ----------------------------------
def test_preflight_stops_a_request_that_an_unavailable_stage_would_block(config, store, tmp_path):
    gen = EchoTextGenerator()  # no keys here, and no tokenizer: the watermark cannot run
    guard = Guard(gen, store=store, config=config)
    assert set(guard.unavailable) == {"watermark", "self_check", "provenance"}
    assert "guardrail keys init" in guard.unavailable["provenance"]
    res = guard.preflight("hi", output=tmp_path / "o.txt")
    assert res is not None and res.status == "blocked" and gen.calls == []
    rec = res.report.stage("watermark")
    assert rec.status.value == "skipped" and "watermark unavailable" in rec.reason
    assert rec.details["policy"] == "block"
    assert statuses(res.report)["generate"] == "skipped"
    assert store.get(res.report_id).status == "blocked" and not (tmp_path / "o.txt").exists()
    # the same stages under flag: the request would go ahead (flagged), so nothing stops it
    lenient = Config.load(overrides={"paths": {"data_dir": str(tmp_path / "d")},
                                     "policy": {"on_fail": {"watermark": "flag",
                                                            "self_check": "flag"}}})
    guard = Guard(gen, store=store, config=lenient)
    assert "watermark" in guard.unavailable
    assert guard.preflight("hi", output=tmp_path / "o.txt") is None and gen.calls == []


def test_unknown_params_are_refused_before_generating_naming_the_valid_ones(config, store,
                                                                           tmp_path):
    from guardrail.errors import InputError

    gen = EchoTextGenerator()
    gen.parameters = frozenset({"max_new_tokens", "temperature"})
    guard = Guard(gen, store=store, config=config, stages=[])
    with pytest.raises(InputError, match=r"foo; valid: max_new_tokens, temperature") as info:
        guard.generate("hi", output=tmp_path / "o.txt", params={"foo": 1})
    assert gen.calls == [] and store.get(info.value.report_id).status == "error"
    with pytest.raises(InputError, match="foo"):
        guard.preflight("hi", params={"foo": 1, "temperature": 0.5})
    assert guard.preflight("hi", params={"temperature": 0.5}) is None
    assert guard.generate("hi", params={"temperature": 0.5}).status == "ok"


def test_a_bad_parameter_value_stays_a_bad_request(config, store):
    from guardrail.errors import InputError

    gen = FailingGenerator(exc=InputError("steps must be between 1 and 200, got 0"))
    with pytest.raises(InputError, match="steps must be") as info:
        Guard(gen, store=store, config=config, stages=[]).generate("hi")
    assert info.value.exit_code == 4
    assert statuses(store.get(info.value.report_id))["generate"] == "error"
