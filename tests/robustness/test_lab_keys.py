"""``guardrail robustness --keys N``: the lab under several watermark keys, pooled."""

from __future__ import annotations

import json

import pytest

from guardrail._types import Modality
from guardrail.cli import main
from guardrail.errors import InputError
from guardrail.keys import init_secret, key_id, load_secret
from guardrail.robustness.lab import _pooled, lab_keys, met_under_every_key, run_robustness
from guardrail.stats import clopper_pearson


def test_pooled_rows_sum_the_counts_of_every_key():
    rows = [
        {"key": "a", "scheme": "s", "attack": "x", "n": 4, "tpr": 0.5, "payload_ok": 0.25,
         "payload_wrong": 1, "bit_accuracy": 0.9, "score_min": 7.0},
        {"key": "b", "scheme": "s", "attack": "x", "n": 2, "tpr": 1.0, "payload_ok": 0.0,
         "payload_wrong": 0, "bit_accuracy": 0.6, "score_min": 5.5},
        {"key": "a", "scheme": "s", "attack": "copy", "n": 300, "tpr": 2 / 300, "victim_ids": 1,
         "ai_verdicts": 0},
        {"key": "b", "scheme": "s", "attack": "copy", "n": 300, "tpr": 0.0, "victim_ids": 0,
         "ai_verdicts": 0},
        {"key": "a", "scheme": "s", "attack": "empty", "n": 0, "tpr": None},
    ]
    pooled = {r["attack"]: r for r in _pooled(rows)}
    assert set(pooled) == {"x", "copy"}  # a row nobody measured is not pooled
    x = pooled["x"]
    assert x["key"] == "pooled" and x["n"] == 6 and x["tpr"] == pytest.approx(4 / 6)
    lo, hi = clopper_pearson(4, 6)
    assert x["tpr_ci"] == f"[{lo:.3f}, {hi:.3f}]"
    assert x["payload_ok"] == pytest.approx(1 / 6) and x["payload_wrong"] == 1
    assert x["bit_accuracy"] == pytest.approx((4 * 0.9 + 2 * 0.6) / 6)
    assert x["score_min"] == 5.5
    c = pooled["copy"]
    assert c["n"] == 600 and c["tpr"] == pytest.approx(2 / 600)
    assert c["victim_ids"] == 1 and c["ai_verdicts"] == 0 and "score_min" not in c


def test_a_target_is_met_only_under_every_key():
    got = met_under_every_key([{"a": True, "b": True, "c": False},
                               {"a": True, "b": False, "c": False}, {"a": True, "d": True}])
    assert got == {"a": True, "b": False, "c": False, "d": False}
    assert met_under_every_key([{"a": True}]) == {"a": True}


def test_lab_keys_start_with_the_configured_key_and_are_reproducible(config):
    init_secret(config.watermark_key_file, purpose="watermarks")
    keys = lab_keys(config, 3)
    assert keys[0] == (key_id(load_secret(config.watermark_key_file)),
                       load_secret(config.watermark_key_file))
    assert len({k for _, k in keys}) == 3 and len({i for i, _ in keys}) == 3
    assert keys[1:] == lab_keys(config, 3)[1:]  # public, fixed: a run can be repeated
    assert lab_keys(config, 1) == keys[:1]


def test_keys_other_than_one_are_refused_where_not_built(config):
    with pytest.raises(InputError, match="--keys 2.*audio and image labs, not the text lab"):
        run_robustness(config, Modality.TEXT, keys=2, progress=False)
    with pytest.raises(ValueError, match="keys must be at least 1"):
        run_robustness(config, Modality.AUDIO, keys=0, progress=False)


def _two_key_run(capsys, tmp_path, modality: str) -> tuple[dict, list, list]:
    """``guardrail robustness --modality M --sample 2 --keys 2 --json`` in a fresh data folder:
    (summary, rows, key ids)."""
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["keys", "init", *data]) == 0
    capsys.readouterr()
    code = main(["robustness", "--modality", modality, "--sample", "2", "--keys", "2",
                 "--json", *data])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["config"]["keys"] == 2
    assert len(set(out["summary"]["keys"])) == 2
    return out["summary"], out["rows"], out["summary"]["keys"]


def test_the_audio_lab_under_two_keys_reports_each_and_pools_them(capsys, tmp_path):
    pytest.importorskip("piper")
    summary, rows, ids = _two_key_run(capsys, tmp_path, "audio")
    assert ids[0] == key_id(load_secret(
        tmp_path / "data" / "keys" / "watermark.key"))
    for attack in ("none", "speed(1.05)"):
        got = {r["key"]: r for r in rows if r["attack"] == attack}
        assert set(got) == {*ids, "pooled"}
        assert got["pooled"]["n"] == got[ids[0]]["n"] + got[ids[1]]["n"] == 4
        assert got["pooled"]["score_min"] == min(got[i]["score_min"] for i in ids)
    by_key = summary["targets_by_key"]
    assert set(by_key) == set(ids)
    for name, met in summary["targets"].items():  # met only when met under every key
        assert met == all(by_key[i][name] for i in ids)
    assert summary["n_unmarked"] == 2 * 80  # 20 windows under 4 keys, for each lab key
    q = summary["pesq_wb"]  # wideband PESQ pooled over both keys' marked windows
    if isinstance(q, str):
        assert "not installed" in q
    else:
        assert q["n"] + q["not_scored"] == 4 and 1.0 <= q["min"] <= q["mean"] < 4.64


def test_the_image_lab_under_two_keys_reports_each_and_pools_them(capsys, tmp_path):
    summary, rows, ids = _two_key_run(capsys, tmp_path, "image")
    attacks = {r["attack"] for r in rows}
    assert "jpeg(30)" in attacks
    for attack in attacks:
        got = {r["key"]: r for r in rows if r["attack"] == attack}
        assert set(got) == {*ids, "pooled"}
        assert got["pooled"]["n"] == got[ids[0]]["n"] + got[ids[1]]["n"]
        k = sum(round(got[i]["tpr"] * got[i]["n"]) for i in ids)
        assert got["pooled"]["tpr"] == pytest.approx(k / got["pooled"]["n"])
    (scheme, entry), = summary["schemes"].items()
    assert entry["n_unmarked"] == 2 * 20  # 10 per photo, under each key
    for name, met in summary["targets"][scheme].items():
        assert met == all(summary["targets_by_key"][i][scheme][name] for i in ids)
