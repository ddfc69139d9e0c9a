import json

import numpy as np
import pytest

from guardrail.cli.detectors import cmd_eval, cmd_list, cmd_train
from guardrail.detectors.features import lfcc, lfcc_features, spectral_features
from guardrail.detectors.registry import build
from guardrail.detectors.trainable import list_trained, load_trained
from guardrail.errors import ModelLoadError
from guardrail.media import encode

from .conftest import art


def _write_images(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        (folder / f"{i:03d}.png").write_bytes(encode(art("image", img), "image/png"))
    return folder


def _crops(img, n):
    h, w = img.shape[:2]
    s = min(h, w, 192)
    return [img[(h - s) * k // max(n - 1, 1):][:s, (w - s) * k // max(n - 1, 1):][:, :s]
            for k in range(n)]


def test_spectral_features_shape_and_differ(photos, digit_images):
    a, b = spectral_features(photos[0]), spectral_features(digit_images[0])
    assert a.shape == b.shape == (38,) and np.isfinite(a).all() and not np.allclose(a, b)


def test_train_eval_spectral_on_tiny_folders(config, tmp_path, photos, digit_images):
    real = _write_images(tmp_path / "real", [c for p in photos[:4] for c in _crops(p, 2)])
    synth = _write_images(tmp_path / "synth",
                          [c for d in digit_images for c in (d, d[:, ::-1])] + [np.ascontiguousarray(np.rot90(digit_images[0]))])
    res = cmd_train(config, "spectral", str(real), str(synth), "spec-test")
    assert res["n_train"] + res["n_test"] == 15 and 0.0 <= res["threshold"] <= 1.0
    assert res["metrics"]["auroc_ci"] is not None and res["roc"]
    assert list_trained(config.data_dir) == ["fast-detectgpt-smollm2", "spec-test"]  # + shipped
    meta = json.loads((config.data_dir / "detectors" / "spec-test.json").read_text())
    assert meta["kind"] == "spectral" and meta["modality"] == "image"
    det = load_trained(config.data_dir, "spec-test")
    r = det.detect(art("image", digit_images[0]))
    assert r.probability is not None and r.threshold == res["threshold"]
    assert det.detect(art("image", np.zeros((16, 16, 3), np.uint8))).reason.startswith(
        "not performed")
    ev = cmd_eval(config, "spec-test", str(real), str(synth), n_bootstrap=50)
    assert ev["metrics"]["auroc"] >= 0.5 and ev["evaluation_id"].startswith("det-")
    assert build("trained:spec-test", config).name == "spec-test"
    assert "spec-test" in cmd_list(config)["trained"]


def test_missing_trained_detector_fails_clearly(config):
    with pytest.raises(ModelLoadError, match="no trained detector named 'nope'"):
        load_trained(config.data_dir, "nope")


def test_lfcc_features():
    sr = 16000
    t = np.arange(sr) / sr
    m = lfcc(np.sin(2 * np.pi * 440 * t), sr)
    assert m.shape[1] == 60 and m.shape[0] == 1 + (sr - 320) // 160
    assert lfcc_features(np.sin(2 * np.pi * 440 * t), sr).shape == (120,)


def test_lfcc_train_pipeline_and_silence(config, tmp_path):
    """Pipeline test only: no recorded human speech ships offline, so the two classes are
    synthetic signals (harmonic tones vs noise bursts), not real-vs-spoofed speech."""
    rng = np.random.default_rng(0)
    sr = 16000
    t = np.arange(sr) / sr
    for cls, folder in ((0, tmp_path / "a"), (1, tmp_path / "b")):
        folder.mkdir()
        for i in range(6):
            x = (np.sin(2 * np.pi * (200 + 40 * i) * t) * 0.3 if cls == 0
                 else rng.normal(0, 0.1, sr) * (t < 0.5 + 0.05 * i))
            a = art("audio", x.astype(np.float32), sample_rate=sr)
            (folder / f"{i}.wav").write_bytes(encode(a, "audio/wav"))
    res = cmd_train(config, "lfcc", str(tmp_path / "a"), str(tmp_path / "b"), "lfcc-test")
    assert res["modality"] == "audio" and res["metrics"]["auroc"] == 1.0
    det = load_trained(config.data_dir, "lfcc-test")
    r = det.detect(art("audio", np.zeros(sr, np.float32), sample_rate=sr))
    assert r.probability is None and "silent" in r.reason
    r = det.detect(art("audio", np.full(100, 0.1, np.float32), sample_rate=sr))
    assert "too short" in r.reason
