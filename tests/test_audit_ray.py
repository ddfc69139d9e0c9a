"""``guardrail audit run --engine ray``: a small text audit on a local Ray instance gives the
same samples, rows and summary as in-process; a resumed audit dispatches only the unfinished
samples and counts none twice (even when a batch's results arrive twice, as after a
retried actor); without Ray the command fails with the project's error and starts nothing.

The generator is a fake whose answers depend on the seed of each ``generate`` call, so a
batch formed differently on Ray (a different first prompt, so a different seed) would show
up as different rows. Marked slow: Ray's start and its actors take ~20-30 s here."""

from __future__ import annotations

import json
import os
import sys
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from audits.runner import AuditContext, run_audit
from audits.suites import load_suite
from guardrail import Config, Generated, GenerationHooks, Guard, Modality, ModelInfo, ReportStore
from guardrail.cli import main

from .audits.conftest import BIASED_RULES, SMALL_PROMPTS, SMALL_SUITE, audit_config
from .audits.photos import IMAGE_SUITE

#: answers of the fake generator besides the biased rule, chosen by seed and prompt
ANSWERS = ("They arrived early and did careful, solid work all day.",
           "A wonderful colleague, kind and generous to everyone.",
           "The shift was long, dull and exhausting.",
           "She and he both said the day went fine.")
VOLATILE = ("wall_time_s", "generations_per_s", "finished_at")


class SeededTextGenerator:
    """Answers by the group rule, else by ``crc32(prompt) + seed`` (deterministic in every
    process); ``interrupt_after`` calls raise KeyboardInterrupt (an audit killed mid-way)."""

    modality = Modality.TEXT

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.info = ModelInfo(model_id="fake:seeded-text", revision="1", device="cpu")
        self.interrupt_after = interrupt_after
        self.calls = 0

    def generate(self, prompts: Sequence[str], *, seed: int | None = None,
                 params: Mapping[str, Any] | None = None,
                 hooks: GenerationHooks | None = None) -> list[Generated]:
        if self.interrupt_after is not None and self.calls >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls += 1
        out = []
        for p in prompts:
            text = next((a for w, a in BIASED_RULES.items() if w in p), None)
            if text is None:
                text = ANSWERS[(zlib.crc32(p.encode()) + int(seed or 0)) % len(ANSWERS)]
            out.append(Generated(content=text, parameters={"seed": seed}))
        return out


def seeded_guard(config: Config, store: ReportStore) -> Guard:
    """The guard factory each Ray actor calls (picklable: a module-level function)."""
    return Guard(SeededTextGenerator(), store=store, config=config, stages=[])


class LoggedGuard:
    """A guard factory that notes the process of every model load and every generate
    call in ``folder`` (``loads.txt``, ``calls.txt``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, config: Config, store: ReportStore) -> Guard:
        with open(self.folder / "loads.txt", "a") as fh:
            fh.write(f"{os.getpid()}\n")
        gen = SeededTextGenerator()
        real, calls = gen.generate, self.folder / "calls.txt"

        def generate(prompts: Sequence[str], **kw: Any) -> list[Generated]:
            with open(calls, "a") as fh:
                fh.write(f"{os.getpid()}\n")
            return real(prompts, **kw)

        gen.generate = generate  # type: ignore[method-assign]
        return Guard(gen, store=store, config=config, stages=[])


@pytest.fixture(scope="module")
def local_ray() -> Any:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install "
                                            "'guardrail[ray]')")
    pytest.importorskip("ray.data")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture
def suite(tmp_path: Path) -> Any:
    path = tmp_path / "small-test.json"
    path.write_text(json.dumps(SMALL_SUITE))
    return load_suite(path)


def audit(folder: Path, suite: Any, *, engine: str = "local",
          generator: SeededTextGenerator | None = None,
          factory: Any = seeded_guard) -> tuple[Any, list[dict[str, Any]]]:
    """Run the suite (2 samples per prompt) in ``folder``; the evaluation and its
    checkpoint's records in work order."""
    cfg = audit_config(folder)
    with ReportStore(cfg.store_url) as store:
        if engine == "local":
            guard = Guard(generator or SeededTextGenerator(), store=store, config=cfg,
                          stages=[])
            ctx = AuditContext(config=cfg, store=store, guard=guard, samples=2, progress=False)
        else:
            ctx = AuditContext(config=cfg, store=store, samples=2, progress=False,
                               engine="ray", workers=2, guard_factory=factory)
        ev = run_audit(suite, ctx)
    return ev, checkpoint_records(ev)


def checkpoint_records(ev: Any) -> list[dict[str, Any]]:
    lines = Path(ev.config["checkpoint"]).read_text().splitlines()
    return [json.loads(line) for line in lines]


def comparable(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records by key, without the per-generation report ids."""
    return sorted(({k: v for k, v in r.items() if k != "report_id"} for r in records),
                  key=lambda r: r["key"])


def stable(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary without timings and the failures' report ids."""
    out = {k: v for k, v in summary.items() if k not in VOLATILE}
    if "failures" in out:
        out["failures"] = [{k: v for k, v in f.items() if k != "report_id"}
                           for f in out["failures"]]
    return out


@pytest.mark.slow
def test_ray_audit_equals_the_local_one(local_ray: Any, suite: Any, tmp_path: Path) -> None:
    local, local_recs = audit(tmp_path / "local", suite)
    log = tmp_path / "log"
    log.mkdir()
    remote, remote_recs = audit(tmp_path / "ray", suite, engine="ray", factory=LoggedGuard(log))
    # one model load per actor (the generating ones and the one that named the model)
    loads = (log / "loads.txt").read_text().split()
    callers = set((log / "calls.txt").read_text().split())
    assert len(loads) == len(set(loads)) <= 3 and callers <= set(loads)
    assert str(os.getpid()) not in loads  # nothing loaded in this process
    assert remote.status == local.status == "complete"
    assert len(remote_recs) == len(local_recs) == SMALL_PROMPTS * 2
    assert len({r["key"] for r in remote_recs}) == SMALL_PROMPTS * 2  # each sample once
    assert comparable(remote_recs) == comparable(local_recs)
    # the seeds matter: a batch formed differently would give other answers
    assert len({r["scores"]["sentiment"] for r in local_recs}) >= 3
    assert remote.rows == local.rows
    assert stable(remote.summary) == stable(local.summary)
    assert remote.config["generator"] == local.config["generator"] == {
        "model_id": "fake:seeded-text", "revision": "1", "device": "cpu"}
    assert remote.config["resume_key"] == local.config["resume_key"]
    # the actors' guards recorded every generation in the configured store
    with ReportStore(audit_config(tmp_path / "ray").store_url) as store:
        assert len(store.list(limit=1000)) == SMALL_PROMPTS * 2


@pytest.mark.slow
def test_resumed_on_ray_dispatches_only_the_rest_and_counts_none_twice(
        local_ray: Any, suite: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    full, full_recs = audit(tmp_path / "full", suite)
    folder = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):  # 2 batches of 8 finished, then killed
        audit(folder, suite, generator=SeededTextGenerator(interrupt_after=2))
    with ReportStore(audit_config(folder).store_url) as store:
        [running] = store.list_evaluations(kind="audit")
    before = {json.loads(line)["key"]
              for line in Path(running.config["checkpoint"]).read_text().splitlines()}
    assert running.status == "running" and len(before) == 16

    import guardrail.scan.ray_engine as engine

    real, dispatched = engine.map_on_actors, []

    def twice(make: Any, items: Any, on_results: Any, **kw: Any) -> None:
        """Every batch's results delivered twice, as after an actor killed mid-batch."""
        dispatched.extend(items)

        def again(results: list[Any], n: int) -> None:
            on_results(results, n)
            on_results(results, n)
        return real(make, items, again, **kw)

    monkeypatch.setattr(engine, "map_on_actors", twice)
    ev, recs = audit(folder, suite, engine="ray")
    sent = [w["key"] for batch in dispatched if isinstance(batch, list) for w in batch]
    all_keys = {r["key"] for r in full_recs}
    assert sorted(sent) == sorted(all_keys - before)  # only the unfinished, each once
    assert ev.evaluation_id == running.evaluation_id and ev.summary["resumed"] is True
    assert ev.summary["resumed_from"] == 16
    assert ev.summary["generated_this_run"] == SMALL_PROMPTS * 2 - 16
    assert len(recs) == SMALL_PROMPTS * 2 == len({r["key"] for r in recs})  # none twice
    assert comparable(recs) == comparable(full_recs)
    assert ev.rows == full.rows


def test_engine_ray_without_ray_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    suite_file = tmp_path / "small-test.json"
    suite_file.write_text(json.dumps(SMALL_SUITE))
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as when not installed
    common = ["--data-dir", str(tmp_path / "data")]
    code = main(["audit", "run", str(suite_file), "--engine", "ray", "--workers", "2",
                 *common])
    err = capsys.readouterr().err
    assert code == 11 and "ray" in err.lower() and "--engine local" in err
    assert main(["audit", "list", "--json", *common]) == 0
    assert json.loads(capsys.readouterr().out) == []  # no audit was started


def test_workers_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["audit", "run", "x", "--engine", "ray", "--workers", "0"])
    assert exc.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_a_ready_guard_cannot_go_to_ray(suite: Any, tmp_path: Path) -> None:
    cfg = audit_config(tmp_path)
    with ReportStore(cfg.store_url) as store:
        guard = Guard(SeededTextGenerator(), store=store, config=cfg, stages=[])
        ctx = AuditContext(config=cfg, store=store, guard=guard, engine="ray", progress=False)
        pytest.importorskip("ray")
        from guardrail.errors import ConfigError

        with pytest.raises(ConfigError, match="guard_factory"):
            run_audit(suite, ctx)
        assert store.list_evaluations(kind="audit") == []


# -- the image audit ---------------------------------------------------------------------------
_PHOTOS: dict[str, Any] = {}


def pick_photo(prompt: str, i: int) -> Any:
    """nurse -> a portrait, electrician -> another, carpenter -> noise by prompt and seed;
    "a decisive carpenter" crashes the generator's call."""
    import numpy as np

    from .audits.photos import load_photos

    if not _PHOTOS:
        _PHOTOS.update(load_photos())
    if "decisive carpenter" in prompt:
        return RuntimeError("the model crashed on this prompt")
    if "nurse" in prompt:
        return _PHOTOS["grace_hopper"]
    if "electrician" in prompt:
        return _PHOTOS["astronaut"]
    rng = np.random.default_rng(zlib.crc32(prompt.encode()) + i)
    return rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)


def photo_guard(config: Config, store: ReportStore) -> Guard:
    """An image guard around photos, with C2PA signing but no watermark: the watermark's
    payload is drawn at random for every generation, and its pattern moves the face
    classifier's scores a little, so two runs with it differ on any engine."""
    from audits.runner import audit_config as as_audited
    from guardrail.factory import provenance_stages

    from .audits.photos import PhotoGenerator

    return Guard(PhotoGenerator(pick_photo), store=store, config=as_audited(config),
                 stages=provenance_stages(config))


@pytest.mark.slow
def test_image_audit_on_ray_equals_the_local_one(local_ray: Any, tmp_path: Path) -> None:
    from audits.suites import suite_from_dict
    from guardrail.factory import init_keys

    from .audits.photos import need_face_models

    need_face_models()
    pick_photo("a nurse", 0)  # the photos are there (or the test is skipped)
    suite = suite_from_dict(IMAGE_SUITE)
    evs = {}
    for engine in ("local", "ray"):
        cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path / engine)},
                                     "audit": {"batch_size": 8, "n_boot": 200,
                                               "min_group_n": 2, "permutations": 200}})
        init_keys(cfg)
        with ReportStore(cfg.store_url) as store:
            ctx = AuditContext(config=cfg, store=store, samples=2, progress=False,
                               engine=engine, workers=2)
            if engine == "local":
                ctx.guard = photo_guard(cfg, store)
            else:
                ctx.guard_factory = photo_guard
            evs[engine] = run_audit(suite, ctx)
    local, remote = evs["local"], evs["ray"]
    assert local.summary["images_with_face"] == 12 and local.summary["images_failed"] == 2
    assert comparable(checkpoint_records(remote)) == comparable(checkpoint_records(local))
    assert remote.rows == local.rows
    assert stable(remote.summary) == stable(local.summary)


# -- the safety audit ------------------------------------------------------------------------
def echo_guard(config: Config, store: ReportStore) -> Guard:
    from guardrail.testing import EchoTextGenerator

    return Guard(EchoTextGenerator(), store=store, config=config, stages=[])


@pytest.mark.slow
def test_safety_text_part_on_ray_equals_the_local_one(local_ray: Any, tmp_path: Path) -> None:
    """Human texts and generations by language, scored on actors: the same records, rows
    (in the same order: the scorers' names come back in their order) and summary."""
    from guardrail.factory import init_keys

    from .audits.test_safety_audit import need_fortunes, shipped

    need_fortunes()
    text = {"languages": {"English": "en", "German": "de", "Spanish": "es", "Italian": "it"},
            "human_texts_per_language": 3}
    suite = shipped(image=None, text=text)
    evs = {}
    for engine in ("local", "ray"):
        cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path / engine)},
                                     "audit": {"n_boot": 200, "permutations": 300,
                                               "min_group_n": 5}})
        init_keys(cfg)
        with ReportStore(cfg.store_url) as store:
            ctx = AuditContext(config=cfg, store=store, samples=1, limit=1, progress=False,
                               engine=engine, workers=2)
            if engine == "local":
                ctx.guard = echo_guard(cfg, store)
            else:
                ctx.guard_factory = echo_guard
            evs[engine] = run_audit(suite, ctx)
            assert store.count() == 4  # one report per generation, written by the actors
    local, remote = evs["local"], evs["ray"]
    assert local.summary["items"] == 16 and local.summary["items_failed"] == 0
    assert comparable(checkpoint_records(remote)) == comparable(checkpoint_records(local))
    assert remote.rows == local.rows
    assert stable(remote.summary) == stable(local.summary)
