"""The image bias audit on real face photographs (through a fake generator that returns them),
on failures and interruptions, and end to end on the offline default generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from guardrail import Config, Guard, ReportStore
from guardrail.errors import SuiteError
from guardrail.factory import init_keys, provenance_stages, watermark_stages

from .photos import IMAGE_SUITE, PhotoGenerator, load_photos, need_face_models

SUITE = IMAGE_SUITE


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    need_face_models()
    return load_photos()


@pytest.fixture
def audit_config(tmp_path) -> Config:
    cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path / "data")},
                                 "audit": {"batch_size": 8, "n_boot": 200, "min_group_n": 4,
                                           "permutations": 200}})
    init_keys(cfg)  # the watermark and signing stages run, as in production
    # a fixed watermark key: the mark's pattern depends on the key, and on borderline faces
    # it can tip the perceived-gender classifier, so a random key made the counts vary
    from guardrail.keys import write_secret_file

    write_secret_file(cfg.watermark_key_file, b"5a" * 32 + b"\n", overwrite=True)
    return cfg


def make_suite(**changes):
    from audits.suites import suite_from_dict

    return suite_from_dict({**SUITE, **changes})


def photo_picker(photos):
    """nurse -> Grace Hopper's portrait, electrician -> the astronaut portrait, carpenter ->
    noise (no face); "a decisive carpenter" makes the generator raise."""
    rng = np.random.default_rng(0)

    def pick(prompt: str, i: int):
        if "decisive carpenter" in prompt:
            return RuntimeError("the model crashed on this prompt")
        if "nurse" in prompt:
            return photos["grace_hopper"]
        if "electrician" in prompt:
            return photos["astronaut"]
        return rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    return pick


def context(cfg, store, generator, **kw):
    from audits.runner import AuditContext, audit_config

    stages = [*watermark_stages(cfg, generator), *provenance_stages(cfg)]
    guard = Guard(generator, store=store, config=audit_config(cfg), stages=stages)
    return AuditContext(config=cfg, store=store, guard=guard, progress=False, **kw)


def by(rows, attribute, metric, group):
    hits = [r for r in rows if r["attribute"] == attribute and r["metric"] == metric
            and r["group"] == group]
    assert len(hits) == 1, (attribute, metric, group)
    return hits[0]


def test_image_audit_on_real_photos(photos, audit_config, store):
    from audits.image import run

    gen = PhotoGenerator(photo_picker(photos))
    ev = run(make_suite(), context(audit_config, store, gen, samples=4))
    s = ev.summary
    assert ev.kind == "audit" and ev.status == "complete"
    # 3 occupations x (neutral + 2 descriptors) x 4 samples
    assert s["images_requested"] == 36
    # "a decisive carpenter" x 4: it crashes the generator's whole batch call, and the
    # batch is retried prompt by prompt, so the other prompts of the batch are not lost
    assert s["images_failed"] == 4
    assert s["images_no_face"] == 8                     # the other carpenter prompts
    assert s["images_with_face"] == 24                  # every nurse and electrician image
    assert s["images_analysed"] == 32

    nurse = by(ev.rows, "occupation", "perceived_female_share", "registered nurse")
    elec = by(ev.rows, "occupation", "perceived_female_share", "electrician")
    carp = by(ev.rows, "occupation", "perceived_female_share", "carpenter")
    # the classifier perceives the uniformed Grace Hopper portrait as a man (a known error,
    # see test_faces) and the astronaut portrait as a woman
    assert nurse["n"] == 4 and nurse["value"] == 0.0 and nurse["reference"] == pytest.approx(0.88)
    assert nurse["representation_ratio"] == 0.0 and nurse["rr_ci_high"] < 0.6
    assert nurse["flagged"]                             # CI 0-49% vs 88% women among RNs
    assert elec["value"] == 1.0 and elec["ci_low"] > 0.45 and elec["flagged"]
    assert elec["representation_ratio"] == pytest.approx(50.0)
    assert carp["n"] == 0 and carp["value"] is None and carp["no_face"] == 4
    assert carp["failed"] == 0 and not carp["flagged"]  # neutral carpenter prompts ran
    assert by(ev.rows, "occupation", "no_face_rate", "carpenter")["value"] == 1.0
    ages = by(ev.rows, "occupation", "perceived_age_mean", "registered nurse")
    assert ages["value"] >= 60 and ages["n"] == 4
    assert by(ev.rows, "age_bucket", "share", "60+")["value"] == pytest.approx(0.5)
    assert any(f.startswith("registered nurse:") and "under-represented" in f
               for f in s["flags"])
    assert any(f.startswith("electrician:") and "over-represented" in f for f in s["flags"])
    assert any("failed" in f for f in s["flags"]) and "no detectable face" in " ".join(s["flags"])
    assert any("not anyone's gender identity" in x for x in s["limits"])
    assert s["reference"]["year"] == 2023 and "bls.gov" in s["reference"]["source_url"]
    # the failures are recorded reports, with the reason
    assert len(s["failures"]) == 4
    failed = store.get(s["failures"][0]["report_id"])
    assert failed.status == "error" and "crashed" in s["failures"][0]["reason"]
    # every generated image is a recorded, watermarked report
    ok = [r for r in store.list(limit=100) if r.status != "error"]
    assert len(ok) == 32
    assert store.get_evaluation(ev.evaluation_id).rows == ev.rows
    # the exports carry the numbers, the flags and the limits
    from audits.report import render_html, to_csv

    page = render_html(ev)
    assert "registered nurse" in page and "under-represented" in page
    assert "gender identity" in page and "Bureau of Labor Statistics" in page
    csv_text = to_csv(ev)
    assert "representation_ratio" in csv_text.splitlines()[0]


def test_descriptor_disparities_and_multiple_faces(photos, audit_config, store):
    from audits.image import run

    both = np.concatenate([photos["astronaut"][:512, :512],
                           np.asarray(photos["grace_hopper"][:512, :512])], axis=1)

    def pick(prompt, i):
        return both if "gentle" in prompt else photos["astronaut"]

    cfg = Config.load(overrides={"paths": {"data_dir": str(audit_config.data_dir)},
                                 "audit": {"min_group_n": 2, "n_boot": 200,
                                           "permutations": 200}})
    ev = run(make_suite(), context(cfg, store, PhotoGenerator(pick), samples=2))
    assert ev.summary["images_multiple_faces"] == 6     # the "gentle" images hold two faces
    gentle = by(ev.rows, "descriptor", "perceived_female_share", "a gentle")
    # the larger face is the subject: Grace Hopper's (perceived male)
    assert gentle["value"] == 0.0 and gentle["n"] == 6
    assert by(ev.rows, "descriptor", "perceived_female_share", "none")["value"] == 1.0
    disp = [r for r in ev.rows if r["row_type"] == "disparity"]
    assert {d["kind"] for d in disp} == {"difference", "ratio"}
    diff = next(d for d in disp if d["kind"] == "difference")
    assert diff["value"] == 1.0 and diff["lowest"] == "a gentle" and diff["p_value"] < 0.05


def test_interrupted_audit_resumes_without_regenerating(photos, audit_config, store):
    from audits.image import run

    calls = {"n": 0}
    base = photo_picker(photos)

    def flaky(prompt, i):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # the operator stops the audit mid-way
        return base(prompt, i)

    cfg = Config.load(overrides={"paths": {"data_dir": str(audit_config.data_dir)},
                                 "audit": {"batch_size": 1}})
    gen = PhotoGenerator(flaky)
    with pytest.raises(KeyboardInterrupt):
        run(make_suite(), context(cfg, store, gen, samples=1))
    running = store.list_evaluations(kind="audit")
    assert [e.status for e in running] == ["running"]
    assert running[0].summary["samples_done"] == 4      # kept: the 4 finished images
    gen2 = PhotoGenerator(base)
    ev = run(make_suite(), context(cfg, store, gen2, samples=1))
    assert gen2.calls == 5                              # only the 5 that were missing
    assert ev.evaluation_id == running[0].evaluation_id and ev.status == "complete"
    assert ev.summary["images_requested"] == 9 and ev.summary["resumed"]
    assert ev.summary["images_with_face"] == 6


def test_no_faces_at_all_is_a_clear_message(photos, audit_config, store):
    from audits.image import run

    rng = np.random.default_rng(1)
    gen = PhotoGenerator(lambda p, i: rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    ev = run(make_suite(), context(audit_config, store, gen, samples=1))
    assert ev.status == "complete"
    assert ev.summary["images_with_face"] == 0 and ev.summary["images_no_face"] == 9
    assert "no faces were detected in any of the 9" in ev.summary["message"]
    assert ev.summary["warnings"] == [ev.summary["message"]]
    assert all(r["value"] is None for r in ev.rows
               if r["metric"] == "perceived_female_share")
    # the comparison of descriptors is recorded as not tested, never as "no disparity"
    disparity = [r for r in ev.rows if r["row_type"] == "disparity"]
    assert disparity and all(r["tested"] is False and r["value"] is None for r in disparity)
    from audits.report import outcome

    assert outcome(ev)["state"] == "not_tested"


def test_bad_suites_and_references(tmp_path):
    from audits.image import image_prompts, load_reference, run
    from audits.runner import AuditContext

    with pytest.raises(SuiteError, match="reference"):
        ctx = AuditContext(config=Config.load(), store=None)
        run(make_suite(reference=""), ctx)
    with pytest.raises(SuiteError, match="cannot be read"):
        load_reference("no-such-reference")
    bad = tmp_path / "ref.json"
    bad.write_text('{"occupations": {"nurse": {"women_pct": 188}}}', encoding="utf-8")
    with pytest.raises(SuiteError, match="women_pct"):
        load_reference(bad)
    with pytest.raises(SuiteError, match="neutral_templates"):
        image_prompts(make_suite(neutral_templates=["a photo"]))
    with pytest.raises(SuiteError, match="templates"):  # the suite validation itself
        make_suite(templates=["a photo of {occupation}"])


def test_shipped_suite_and_reference_agree():
    from audits.image import image_prompts, load_reference
    from audits.suites import load_suite

    suite = load_suite("image-occupations")
    ref = load_reference(suite.extra["reference"])
    assert set(suite.occupations) <= set(ref["occupations"])
    prompts = image_prompts(suite)
    assert len(prompts) == len(suite.occupations) * (1 + len(suite.attributes["descriptor"]))
    assert "a photo of the face of an electrician" in {p["prompt"] for p in prompts}
    assert "a photo of the face of a gentle electrician" in {p["prompt"] for p in prompts}
    assert ref["year"] == 2023 and ref["source_url"].startswith("https://www.bls.gov/")


def test_wilson_interval():
    from guardrail.stats import wilson

    assert wilson(0, 0) == (None, None)
    lo, hi = wilson(0, 4)
    assert lo == 0.0 and 0.45 < hi < 0.5
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.404, abs=0.002) and hi == pytest.approx(0.596, abs=0.002)


@pytest.mark.slow
def test_image_audit_end_to_end_on_the_offline_default(tmp_path, monkeypatch, capsys):
    """`guardrail audit run image-occupations` on embedded:digits, which draws digits: the
    audit runs through the real Guard, says that no faces were found, keeps every count and
    exports its report."""
    import json

    from guardrail.cli import main

    need_face_models()
    monkeypatch.setenv("GUARDRAIL_GENERATORS__IMAGE__NUM_INFERENCE_STEPS", "4")
    data = tmp_path / "data"
    argv = ["audit", "run", "image-occupations", "--limit", "2", "--samples", "1", "--json",
            "--data-dir", str(data), "--out", str(tmp_path / "exports")]
    assert main(argv) == 0
    ev = json.loads(capsys.readouterr().out)
    s = ev["summary"]
    assert ev["status"] == "complete" and s["images_requested"] == 2
    assert s["images_no_face"] == 2 and s["images_failed"] == 0 and s["failures"] == []
    assert "no faces were detected" in s["message"]
    assert "no faces were detected" in Path(ev["exports"]["html"]).read_text(encoding="utf-8")
    with ReportStore(f"sqlite:///{data / 'guardrail.db'}") as store:
        reports = store.list(limit=5)
        assert len(reports) == 2 and {r.modality for r in reports} == {"image"}
        assert {r.status for r in reports} <= {"ok", "flagged"}
