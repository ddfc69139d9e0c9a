"""The keyless copy / removal trials of the image lab and the report that renders them."""

from __future__ import annotations

import numpy as np
import pytest

from guardrail import Artifact, GenerationMetadata, Modality
from guardrail.robustness.image_keyless import keyless_trials
from guardrail.robustness.image_report import render
from guardrail.watermark.image import GuardrailImageWatermark
from guardrail.watermark.image_v2 import GuardrailImageWatermarkV2

cv2 = pytest.importorskip("cv2")
skdata = pytest.importorskip("skimage.data")


def _sq(img: np.ndarray, size: int = 384) -> np.ndarray:
    if img.ndim == 2:
        img = np.dstack([img, img, img])
    h, w = img.shape[:2]
    s = min(h, w)
    crop = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s, :3]
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def pools():
    donors = [_sq(skdata.coffee()), _sq(skdata.chelsea()), _sq(skdata.rocket())]
    photos = [_sq(skdata.camera()), _sq(skdata.brick()), _sq(skdata.coins())]
    return donors, photos


def _mark(wm, imgs):
    meta = GenerationMetadata(model_id="t")
    return [(wm.embed(Artifact(modality=Modality.IMAGE, content=x, metadata=meta), 100 + i)
             .content, 100 + i) for i, x in enumerate(imgs)]


def test_v1_is_copied_and_v2_is_not(pools):
    donors, photos = pools
    est = ((1, "tile"), (3, "residual"))
    v1 = GuardrailImageWatermark(b"k" * 32)
    r1 = keyless_trials(v1, _mark(v1, donors), photos, _mark(v1, donors[:1]), estimates=est)
    v2 = GuardrailImageWatermarkV2(b"k" * 32)
    r2 = keyless_trials(v2, _mark(v2, donors), photos, _mark(v2, donors[:1]), estimates=est)
    assert set(r1["copy"]) == {"copy((1, 'tile'))", "copy((3, 'residual'))"}
    tile1 = r1["copy"]["copy((1, 'tile'))"]
    assert tile1["n"] == 3 and tile1["positives"] == 3 and tile1["victim_ids"] == 3
    assert tile1["ai_verdicts"] == 0  # the victim's record fingerprint matches none of them
    assert all(r["positives"] == 0 for r in r2["copy"].values())
    assert all(r["rate"] == 1.0 for r in r2["removal"].values())
    for r in (*r2["copy"].values(), *r2["removal"].values()):
        assert 0.0 <= r["ci_low"] <= r["rate"] <= r["ci_high"] <= 1.0


def test_a_copy_onto_the_victims_own_picture_counts_as_an_ai_verdict(pools):
    """The content binding is what the AI-verdict count measures: a v1 mark copied back onto
    the unmarked original of its donor carries the victim's id and matches its record."""
    donors, _ = pools
    v1 = GuardrailImageWatermark(b"k" * 32)
    r = keyless_trials(v1, _mark(v1, donors[:1]), donors[:1], [], estimates=((1, "tile"),))
    c = r["copy"]["copy((1, 'tile'))"]
    assert (c["positives"], c["victim_ids"], c["ai_verdicts"]) == (1, 1, 1)


def test_wide_estimates_are_part_of_the_lab():
    from guardrail.robustness.image_keyless import ESTIMATES

    assert {(1, "wide"), (10, "wide")} <= set(ESTIMATES)


def test_estimates_needing_more_outputs_than_held_are_skipped(pools):
    donors, photos = pools
    v2 = GuardrailImageWatermarkV2(b"k" * 32)
    r = keyless_trials(v2, _mark(v2, donors[:1]), photos[:1], [], estimates=((10, "tile"),))
    assert r == {"copy": {}, "removal": {}}


def _lab_results() -> dict:
    """A minimal saved image-lab result for one scheme at 512 px."""
    entry = {"tpr": {"clean": 1.0, "jpeg(30)": 0.5}, "tpr_ci": {"clean": [0.9, 1.0],
                                                              "jpeg(30)": [0.3, 0.7]},
             "n_images": 20, "fpr_measured": 0.0, "n_unmarked": 100,
             "payload_ok": {"clean": 1.0, "jpeg(30)": 0.25},
             "unmarked_p_at_most": {"0.1": 0.05, "0.01": 0.0, "0.001": 0.0},
             "psnr_mean": 40.6, "psnr_min": 40.2, "ssim_mean": 0.98, "embed_ms": 10.0,
             "detect_ms": 20.0, "detect_unmarked_ms": 30.0,
             "keyless": {"copy": {"copy((1, 'tile'))": {"n": 50, "positives": 0, "rate": 0.0,
                                                         "ci_low": 0.0, "ci_high": 0.07},
                                  "copy((1, 'wide'))": {"n": 50, "positives": 2, "rate": 0.04,
                                                         "ci_low": 0.005, "ci_high": 0.137,
                                                         "victim_ids": 1, "ai_verdicts": 0}},
                         "removal": {}}}
    res = {512: {"setup": {"fpr": 1e-4, "attacks": ["jpeg(30)"], "held_out": ["a", "b"],
                           "size": 512},
                 "schemes": {"guardrail-image-v2": entry},
                 "targets": {"guardrail-image-v2": {"psnr>=40": True,
                                                    "tpr>=0.95_each_attack": False}}}}
    return res


def test_report_renders_rates_with_intervals_and_missed_targets():
    md = render(_lab_results(), when="now", machine="here")
    assert "| jpeg(30) | 0.50 [0.30, 0.70] n=20 |" in md
    ids = md[md.index("### The id recovered"):]
    assert "| jpeg(30) | 0.25 [0.09, 0.49] n=20 |" in ids  # 5 of 20, Clopper-Pearson
    assert "copy((1, 'tile')) | 0.00 [0.00, 0.07] n=50 |" in md
    assert "copy((1, 'wide')) | 0.04 [0.01, 0.14] n=50; id 1, AI 0 |" in md
    assert "**missed tpr>=0.95_each_attack**" in md
    # results saved before the photo folders were recorded came from the c2pa-peer fixtures
    assert "scikit-learn and the c2pa-peer fixtures;" in md
    res = _lab_results()
    res[512]["setup"]["photo_dirs"] = ["/photos/a", "/photos/b"]
    md = render(res, when="now", machine="here")
    assert "scikit-learn and the photos in `/photos/a`, `/photos/b`;" in md


def test_report_under_several_keys_pools_counts_and_needs_every_key(monkeypatch):
    """--keys 2: the lab runs under the report's key and one derived key (distinct,
    repeatable), the tables above keep the first key's results, the per-key table shows both
    keys' rates and the pooled counts with their interval, and a target met under one key
    only counts as missed."""
    import copy

    from guardrail.robustness import image_lab, image_report

    keys_seen = []

    def fake_evaluate(imgs, *, key, size, **kw):
        keys_seen.append(key)
        res = copy.deepcopy(_lab_results()[512])
        res["setup"]["size"] = size
        entry = res["schemes"]["guardrail-image-v2"]
        if len(keys_seen) == 2:  # the second key: 5 copies of 50, jpeg(30) 0.75 of 20
            entry["keyless"]["copy"]["copy((1, 'wide'))"].update(rate=0.1, positives=5)
            entry["tpr"]["jpeg(30)"] = 0.75
            res["targets"]["guardrail-image-v2"]["psnr>=40"] = False
        return res

    monkeypatch.setattr(image_lab, "evaluate", fake_evaluate)
    monkeypatch.setattr(image_lab, "load_natural_images", lambda d: [("a", None)])
    monkeypatch.setattr(image_lab, "photo_dirs", lambda d: [])
    res = image_report.run([512], schemes=["guardrail-image-v2"], keys=2)
    assert keys_seen == image_report.report_keys(2) and keys_seen[0] == image_report.KEY
    assert len(set(keys_seen)) == 2 and image_report.report_keys(2) == keys_seen
    # the tables above are the first key's; the targets need every key
    assert res[512]["schemes"]["guardrail-image-v2"]["tpr"]["jpeg(30)"] == 0.5
    assert res[512]["targets"]["guardrail-image-v2"] == {"psnr>=40": False,
                                                         "tpr>=0.95_each_attack": False}
    md = render(res, when="now", machine="here")
    table = md[md.index("### Under each key"):md.index("### Targets")]
    assert "| copy((1, 'wide')) | 0.04 / 0.10; pooled 7 of 100 [0.03, 0.14] |" in table
    assert "| jpeg(30) | 0.50 / 0.75; pooled 25 of 40 [0.46, 0.77] |" in table
    assert "**missed psnr>=40, tpr>=0.95_each_attack**" in md
    with pytest.raises(ValueError, match="at least 1"):
        image_report.report_keys(0)


def test_lab_photos_come_from_every_folder_given_and_a_missing_one_is_an_error(tmp_path):
    import cv2

    from guardrail.robustness.image_lab import load_natural_images

    rng = np.random.default_rng(0)
    for folder, name in (("one", "first.png"), ("two", "second.jpg")):
        (tmp_path / folder).mkdir()
        img = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
        assert cv2.imwrite(str(tmp_path / folder / name), img)
    (tmp_path / "two" / "notes.txt").write_text("not a photo")
    names = [n for n, _ in load_natural_images([tmp_path / "one", str(tmp_path / "two")])]
    assert names[-2:] == ["first.png", "second.jpg"]
    assert "second.jpg" not in [n for n, _ in load_natural_images(tmp_path / "one")]
    with pytest.raises(NotADirectoryError, match="missing"):
        load_natural_images([tmp_path / "one", tmp_path / "missing"])
    with pytest.raises(NotADirectoryError, match="notes.txt"):
        load_natural_images(tmp_path / "two" / "notes.txt")



def test_report_rendered_from_saved_results_keeps_the_run_s_time_and_load(tmp_path):
    import json

    from guardrail.robustness.image_report import main

    res = _lab_results()[512]
    res["setup"]["run"] = {"when": "2026-01-02T03:04:05+00:00", "machine": "the lab box",
                           "load": "load average 0.5"}
    saved, out = tmp_path / "r512.json", tmp_path / "ROBUSTNESS.md"
    saved.write_text(json.dumps(res))
    main(["--from-json", str(saved), "--out", str(out)])
    md = out.read_text()
    assert "on 2026-01-02T03:04:05+00:00; the lab box." in md and "(load average 0.5)" in md
    # what --save-json writes: every size's results, by size
    both = {"512": res, "1024": {**res, "setup": {**res["setup"], "size": 1024}}}
    saved.write_text(json.dumps(both))
    main(["--from-json", str(saved), "--out", str(out)])
    md = out.read_text()
    assert "| attack | guardrail-image-v2 @512 | guardrail-image-v2 @1024 |" in md
    del res["setup"]["run"]
    saved.write_text(json.dumps(res))
    main(["--from-json", str(saved), "--out", str(out)])
    assert "a run whose time was not saved (rendered " in out.read_text()

def test_lab_reports_images_the_scheme_refuses_and_keeps_going(monkeypatch):
    """A flat image among the lab's photos: image v2 refuses it (too little texture); the lab
    lists it as refused, leaves it out of n, and the keyless attacks still run."""
    from guardrail.robustness import image_attacks as ia
    from guardrail.robustness import image_lab

    monkeypatch.setattr(image_lab, "N_COPY_PHOTOS", 40)  # fewer targets: a quicker test
    monkeypatch.setattr(image_lab, "N_SMOOTH_PHOTOS", 10)
    from guardrail.robustness.image_lab import evaluate
    from tests.watermark.conftest import load_photos

    lib = load_photos("coffee", "rocket", "china", "flower", "chelsea", "camera", "brick",
                      "coins", "astronaut")
    rgb = {k: (v if v.ndim == 3 else np.dstack([v, v, v])) for k, v in lib.items()}
    photos = [*rgb.items(), *[(f"{k}-flipped", np.ascontiguousarray(v[:, ::-1]))
                              for k, v in list(rgb.items())[:4]]]
    y, x = np.mgrid[0:256, 0:256].astype(np.float32)
    flat = np.dstack([x / 2, y / 2, (x + y) / 4]).astype(np.uint8)
    images = [("gradient", flat), *photos]
    res = evaluate(images, schemes=["guardrail-image-v2"], attacks=[ia.jpeg(75)], size=256,
                   n_unmarked=4, repeats=1, key=b"lab test key, thirty-two bytes!!")
    entry = res["schemes"]["guardrail-image-v2"]
    assert entry["refused"] == ["gradient"]
    assert entry["n_images"] == len(photos)
    assert entry["keyless"]["copy"] and entry["keyless"]["removal"]


def test_robustness_cli_rejects_a_missing_photo_folder_before_any_work(tmp_path, capsys):
    """A mistyped --photos is a usage error (exit 2) naming the folder, before the key, the
    store or any photo is touched; an existing folder is accepted by the parser."""
    from guardrail.cli import main
    from guardrail.cli._common import existing_dir

    data = tmp_path / "data"
    with pytest.raises(SystemExit) as exc:
        main(["robustness", "--modality", "image", "--sample", "1", "--data-dir", str(data),
              "--photos", str(tmp_path), "--photos", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "not an existing folder" in err and str(tmp_path / "missing") in err
    assert not data.exists()  # nothing was created
    assert existing_dir(str(tmp_path)) == str(tmp_path)


def test_lab_donors_are_the_first_images_the_scheme_accepts(monkeypatch, pools):
    """A picture the scheme refuses is not a marked output: the attacker's N_DONORS donors
    are the first ones it accepts, so the 10-output estimates are not silently skipped."""
    import guardrail.robustness.image_keyless as ik
    from guardrail.robustness import image_lab

    donors, photos = pools
    flat = np.full((384, 384, 3), 128, np.uint8)  # refused: no structure of its own
    seen = {}

    def trials(wm, donor_list, photo_list, marked, **_kw):
        seen.update(donors=len(donor_list), marked=len(marked))
        return {"copy": {}, "removal": {}}

    monkeypatch.setattr(ik, "keyless_trials", trials)
    monkeypatch.setattr(image_lab, "N_DONORS", 2)
    imgs = [flat, donors[0], flat, donors[1], photos[0], photos[1]]
    image_lab._keyless("guardrail-image-v2", b"k" * 32, imgs, imgs, size=384, fpr=1e-4,
                       rng=np.random.default_rng(0), seed=0, say=lambda _m: None)
    assert seen == {"donors": 2, "marked": 2}


def test_lab_counts_a_mark_as_found_only_as_detect_decides(monkeypatch):
    """The lab's TPR is the share ``detect`` would report: a significant mark that the copy
    checks reject is a miss, as it is for ``detect`` (the lab once counted the p-value
    alone, which overstated v2's TPR)."""
    from skimage import data

    from guardrail.robustness import image_lab
    from guardrail.watermark import image_v2

    wm = GuardrailImageWatermarkV2(b"lab decision key", fpr=1e-4)
    img = image_lab.square(data.chelsea(), 256)
    marked = wm.embed(image_lab._artifact(img), 0x2A).content
    detected, ok, _acc, _bound = image_lab._check(wm, marked, 0x2A)
    assert detected and ok and wm.detect(image_lab._artifact(marked)).detected
    # the same mark taken for a copy: significant, but neither detect nor the lab count it
    monkeypatch.setattr(image_v2, "COPY_MIN_RATIO", 1e9)
    res = wm.analyse(marked)
    assert res.p_value <= wm.fpr and not res.consistent
    assert wm.detect(image_lab._artifact(marked)).detected is False
    detected, ok, _acc, _bound = image_lab._check(wm, marked, 0x2A)
    assert detected is False and ok is False


def test_lab_measures_the_strict_copy_check_under_its_own_name():
    """`guardrail-image-v2-strict` is version 2 with copy_check = "strict", one of the
    schemes whose keyless copy and removal attacks the lab runs."""
    from guardrail.robustness.image_lab import OWN_SCHEMES, make_scheme

    assert "guardrail-image-v2-strict" in OWN_SCHEMES
    wm = make_scheme("guardrail-image-v2-strict", b"k" * 32, fpr=1e-4)
    assert wm.scheme == "guardrail-image-v2" and wm.copy_check == "strict"
    assert make_scheme("guardrail-image-v2", b"k" * 32, fpr=1e-4).copy_check == "standard"


def test_the_strict_setting_is_measured_on_the_same_marks_as_its_scheme(pools):
    """``guardrail-image-v2-strict`` next to ``guardrail-image-v2`` in one lab run: the same
    key and draws, so both mark the same pictures with the same ids and decide on the same
    unmarked images (a paired comparison; strict's marks carry its strong-field boost)."""
    from guardrail.robustness import image_attacks as ia
    from guardrail.robustness.image_lab import evaluate

    donors, photos = pools
    images = [(f"i{k}", x) for k, x in enumerate([*donors, *photos])]
    attacks = [ia.jpeg(50), ia.crop(0.75), ia.blur(2.0)]
    res = evaluate(images, schemes=["guardrail-image-v2", "guardrail-image-v2-strict"],
                   attacks=attacks, size=256, n_unmarked=6, repeats=1, keyless=False,
                   key=b"lab test key, thirty-two bytes!!")
    std, strict = res["schemes"]["guardrail-image-v2"], res["schemes"]["guardrail-image-v2-strict"]
    assert std["refused"] == strict["refused"]  # (strict may refuse more on other pictures)
    assert std["unmarked_min_p"] == strict["unmarked_min_p"]
    assert set(strict["tpr"]) == set(std["tpr"])
