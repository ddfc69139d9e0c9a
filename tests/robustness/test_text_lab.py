"""The text robustness lab on the embedded model: marked vs unmarked generations from the
same run, attacks, and the pass rate by output length with its interval."""

import pytest

from guardrail.robustness.text_attacks import deletion
from guardrail.robustness.text_lab import run_text_lab
from guardrail.watermark.text import TextWatermarker, TextWatermarkParams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab():
    from generators.text import load

    gen = load(progress=False)
    wm = TextWatermarker(bytes(range(32)), tokenizer=gen.tokenizer, tokenizer_id="embedded:smollm2",
                         vocab_size=gen.model.config.vocab_size,
                         params=TextWatermarkParams(scheme="kgw"))
    return run_text_lab(gen, wm, attacks=[deletion(0.2)], n_texts=3, new_tokens=40,
                        n_human=6, batch_size=3, progress=False, n_spoof=2)


def test_rows_by_attack_and_by_length(lab):
    rows, s = lab["rows"], lab["summary"]
    assert [r["attack"] for r in rows] == ["none", "first_tokens", "first_tokens",
                                           "first_tokens", "word_deletion",
                                           "copy(n=1, boost=4)", "copy(n=1, boost=8)"]
    by_len = {r["strength"]: r for r in rows if r["attack"] == "first_tokens"}
    assert sorted(by_len) == [16, 24, 32]               # only lengths below the 40 generated
    assert by_len[16]["performed"] == 0                  # 15 scorable tokens: not performed
    assert by_len[16]["ci_low"] is None and by_len[16]["tpr"] is None
    for r in (by_len[24], by_len[32]):
        assert r["n"] == r["performed"] == 3
        assert 0.0 <= r["ci_low"] <= r["tpr"] <= r["ci_high"] <= 1.0
        assert r["ci_high"] - r["ci_low"] > 0.3          # three texts: a wide interval
    assert s["tpr_by_length"] == {16: None, 24: by_len[24]["tpr"], 32: by_len[32]["tpr"]}
    assert s["n_texts"] == 3 and s["new_tokens"] == 40
    assert s["fpr_unmarked_generations"] <= 1 / 3 and s["fpr_human"] == 0.0


def test_every_row_has_the_tpr_at_fpr_1e4_with_its_interval(lab):
    for r in lab["rows"]:
        assert "tpr_1e-4" in r and "tpr_1e-4_ci" in r
        if r["performed"]:
            assert 0.0 <= r["tpr_1e-4"] <= (r["tpr"] if r["tpr"] is not None else 1.0)
            lo, hi = (float(x) for x in r["tpr_1e-4_ci"].strip("[]").split(","))
            assert lo <= r["tpr_1e-4"] <= hi


def test_the_stealing_copy_rows(lab):
    """Spoofed texts from a table stolen from one marked output (10 are not held: 3 texts),
    each row a rate with its interval; the summary states the copy target."""
    copies = [r for r in lab["rows"] if r["attack"].startswith("copy(")]
    assert len(copies) == 2
    for r in copies:
        assert r["n"] + r["not_performed"] == 2
        if r["n"]:
            assert 0.0 <= r["ci_low"] <= r["tpr"] <= r["ci_high"] <= 1.0
    s = lab["summary"]
    assert s["copy_context_tokens"] == 1 and isinstance(s["copy<=1/100"], bool)


def test_false_positives_on_human_text_over_several_keys(lab):
    """The human texts are also checked under UNMARKED_KEYS and pooled with the lab's key:
    the counts add up per key, and the pooled rate and interval are those counts'."""
    from guardrail.robustness.text_lab import UNMARKED_KEYS

    s = lab["summary"]
    k = s["fpr_human_keys"]
    assert k["n_keys"] == 1 + len(UNMARKED_KEYS) == len(k["by_key"])
    assert k["by_key"][0]["n"] == s["n_human"]            # the lab's own key first
    assert all(b["n"] == s["n_human"] for b in k["by_key"])  # the same texts under each key
    assert k["n"] == sum(b["n"] for b in k["by_key"]) == 4 * s["n_human"]
    assert k["false_positives"] == sum(b["false_positives"] for b in k["by_key"])
    assert k["rate"] == k["false_positives"] / k["n"]
    assert 0.0 <= k["ci"][0] <= k["rate"] <= k["ci"][1] < 1.0
    assert 0.0 <= k["share_p<=0.01"] <= 1.0
    assert s["fpr_human_keys<=fpr"] is (k["rate"] <= s["fpr_target"])


def test_with_key_keeps_the_scheme_and_changes_the_key():
    from generators.text import load

    gen = load(progress=False)
    wm = TextWatermarker(bytes(range(32)), tokenizer=gen.tokenizer, tokenizer_id="embedded:smollm2",
                         vocab_size=gen.model.config.vocab_size,
                         params=TextWatermarkParams(scheme="synthid"), fpr=1e-2)
    other = wm.with_key(b"another key")
    assert other.params == wm.params and other.fpr == 1e-2 and other.scheme == "synthid"
    assert other.key_id != wm.key_id
    assert {k: v for k, v in other.describe().items() if k != "key_id"} == {
        k: v for k, v in wm.describe().items() if k != "key_id"}
