"""verify also checks the older schemes of ``[watermark] <modality>_also_detect`` (files
marked with image scheme version 1 before version 2 became the default), splitting the
configured false-positive rate over every scheme tried; an older mark alone never makes a
photo "AI-generated"."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from guardrail import Config
from guardrail.errors import ConfigError
from guardrail.factory import init_keys, watermarker_from_config
from guardrail.verify import verify_file


def _photo(size: int = 512) -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((size, size)))


@pytest.fixture
def cfg(tmp_path) -> Config:
    cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path / "data")},
                                 "detectors": {"image": [], "text": [], "audio": []}})
    init_keys(cfg)
    return cfg


def _v1_marked(cfg: Config, path) -> None:
    from guardrail._types import Artifact, GenerationMetadata, Modality

    wm = watermarker_from_config(cfg, Modality.IMAGE, scheme="guardrail-image")
    art = Artifact(Modality.IMAGE, _photo(), GenerationMetadata(model_id="photo"))
    marked = wm.embed(art, payload=0xC0FFEE)
    Image.fromarray(np.asarray(marked.content)).save(path)


def test_a_version_1_mark_is_found_but_is_not_ai_generated(cfg, tmp_path) -> None:
    assert cfg.section("watermark")["image_scheme"] == "guardrail-image-v2"
    path = tmp_path / "v1.png"
    _v1_marked(cfg, path)
    from guardrail import ReportStore

    with ReportStore(cfg.store_url) as store:
        res = verify_file(path, cfg, store=store)
    assert res.watermark is not None and res.watermark.detected
    assert res.watermark.scheme == "guardrail-image"
    assert res.label != "AI-generated"
    assert res.record.state == "no record"


def test_without_older_schemes_a_version_1_mark_is_not_looked_for(cfg, tmp_path) -> None:
    path = tmp_path / "v1.png"
    _v1_marked(cfg, path)
    only_v2 = Config.load(overrides={"paths": {"data_dir": str(tmp_path / "data")},
                                     "detectors": {"image": [], "text": [], "audio": []},
                                     "watermark": {"image_also_detect": []}})
    res = verify_file(path, only_v2)
    assert res.watermark is not None and not res.watermark.detected
    assert res.watermark.scheme == "guardrail-image-v2"


def test_the_false_positive_rate_is_split_over_the_schemes(cfg, tmp_path, monkeypatch) -> None:
    import guardrail.factory as factory

    seen: list[tuple[str, float]] = []
    real = factory.watermarker_from_config

    def spy(config, modality, *, generator=None, scheme=None, fpr=None):
        seen.append((scheme, fpr))
        return real(config, modality, generator=generator, scheme=scheme, fpr=fpr)

    monkeypatch.setattr(factory, "watermarker_from_config", spy)
    Image.fromarray(_photo(256)).save(tmp_path / "plain.png")
    res = verify_file(tmp_path / "plain.png", cfg)
    assert res.watermark is not None and not res.watermark.detected
    total = cfg.section("watermark")["image_fpr"]
    assert seen == [("guardrail-image-v2", total / 2), ("guardrail-image", total / 2)]


def test_a_version_2_audio_file_keeps_its_id_under_the_version_3_default(cfg, tmp_path):
    """Files marked before version 3 became the default keep their id (and so their
    record): version 3 cannot read version 2's id, verify goes on to version 2."""
    import soundfile as sf

    from guardrail._types import Artifact, GenerationMetadata, Modality
    from guardrail.testing import speechlike

    wm_cfg = cfg.section("watermark")
    assert wm_cfg["audio_scheme"] == "guardrail-audio-v3"
    assert "guardrail-audio-v2" in wm_cfg["audio_also_detect"]
    v2 = watermarker_from_config(cfg, Modality.AUDIO, scheme="guardrail-audio-v2")
    art = Artifact(Modality.AUDIO, speechlike(6.0, seed=21), GenerationMetadata(model_id="t"),
                   sample_rate=16000)
    marked = v2.embed(art, payload=0xA0D10)
    sf.write(tmp_path / "v2.wav", np.asarray(marked.content), 16000, subtype="FLOAT")
    assert watermarker_from_config(cfg, Modality.AUDIO).detect(marked).payload is None
    res = verify_file(tmp_path / "v2.wav", cfg)
    assert res.watermark is not None and res.watermark.detected
    assert (res.watermark.scheme, res.watermark.payload) == ("guardrail-audio-v2", "000a0d10")


def test_a_detection_with_an_id_wins_over_an_earlier_one_without(monkeypatch) -> None:
    """The first scheme that reads the id wins (it finds the record), else the first that
    detects the mark at all, else the configured scheme's answer."""
    import guardrail.verify as verify
    from guardrail._types import WatermarkResult

    def wm(scheme: str, detected: bool, payload: str | None = None) -> WatermarkResult:
        return WatermarkResult(detected=detected, scheme=scheme, scheme_version="1",
                               score=0.0, p_value=0.5, payload=payload)

    cfg = Config.load(overrides={"watermark": {"audio_also_detect": ["b", "c"]}})
    cfg.section("watermark")["audio_scheme"] = "a"
    art = type("A", (), {"modality": type("M", (), {"value": "audio"})()})()
    cases = [
        ({"a": wm("a", True), "b": wm("b", True, "01"), "c": wm("c", True, "02")}, "b"),
        ({"a": wm("a", True, "00"), "b": wm("b", True, "01"), "c": wm("c", False)}, "a"),
        ({"a": wm("a", False), "b": wm("b", True), "c": wm("c", True)}, "b"),
        ({"a": wm("a", False), "b": wm("b", False), "c": wm("c", False)}, "a"),
    ]
    for answers, want in cases:
        monkeypatch.setattr(verify, "_watermark_one",
                            lambda c, a, g, r, scheme, fpr, answers=answers: answers[scheme])
        assert verify._watermark(cfg, art, None, None).scheme == want, answers


def test_also_detect_must_be_a_list_of_names(tmp_path) -> None:
    with pytest.raises(ConfigError, match="image_also_detect"):
        Config.load(overrides={"watermark": {"image_also_detect": ["guardrail-image", ""]}})


def test_watermarkers_are_built_once_per_scheme_and_key(cfg, tmp_path, monkeypatch) -> None:
    import os

    import guardrail.factory as factory

    built: list[str] = []
    real = factory.watermarker_from_config

    def spy(config, modality, *, generator=None, scheme=None, fpr=None):
        built.append(scheme)
        return real(config, modality, generator=generator, scheme=scheme, fpr=fpr)

    monkeypatch.setattr(factory, "watermarker_from_config", spy)
    Image.fromarray(_photo(256)).save(tmp_path / "plain.png")
    for _ in range(3):
        verify_file(tmp_path / "plain.png", cfg)
    assert built == ["guardrail-image-v2", "guardrail-image"]
    key = cfg.watermark_key_file
    key.write_bytes(os.urandom(32).hex().encode() + b"\n")  # a new key: new watermarkers
    verify_file(tmp_path / "plain.png", cfg)
    assert built == ["guardrail-image-v2", "guardrail-image"] * 2


def test_the_image_copy_check_comes_from_the_config(tmp_path):
    """[watermark.image] copy_check reaches version 2 through the factory; schemes without a
    copy check are built as before."""
    over = {"paths": {"data_dir": str(tmp_path / "data")}}
    cfg = Config.load(overrides=over)
    init_keys(cfg)
    assert watermarker_from_config(cfg, "image").copy_check == "standard"
    strict = Config.load(overrides={**over, "watermark": {"image": {"copy_check": "strict"}}})
    assert watermarker_from_config(strict, "image").copy_check == "strict"
    v1 = watermarker_from_config(strict, "image", scheme="guardrail-image")
    assert not hasattr(v1, "copy_check")
