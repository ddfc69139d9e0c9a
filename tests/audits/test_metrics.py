"""Group metrics, intervals, disparities and permutation tests against hand-computed values
and seeded simulations."""

from __future__ import annotations

import numpy as np
import pytest

from guardrail.stats import adjust_p_values, disparities, group_table


def test_group_rates_and_counts_are_hand_computed():
    values = [1, 0, 0, 1, 1, 1, 0, 0, 0, 0]
    groups = ["a", "a", "a", "a", "b", "b", "b", "c", "c", "c"]
    rows = group_table(values, groups, metric="rate", attribute="x", n_boot=100, random_state=0)
    got = {r["group"]: (r["value"], r["n"]) for r in rows}
    assert got == {"a": (0.5, 4), "b": (pytest.approx(2 / 3), 3), "c": (0.0, 3)}
    assert all(r["attribute"] == "x" and r["metric"] == "rate" for r in rows)
    for r in rows:
        assert r["ci_low"] <= r["value"] <= r["ci_high"]
    # a group whose every value is 0 has a degenerate interval at 0
    c = next(r for r in rows if r["group"] == "c")
    assert c["ci_low"] == c["ci_high"] == 0.0


def test_non_finite_values_are_left_out():
    rows = group_table([1.0, np.nan, 0.0, 1.0], ["a", "a", "b", "b"], metric="m",
                       attribute="x", n_boot=50, random_state=0)
    assert {r["group"]: r["n"] for r in rows} == {"a": 1, "b": 2}


def test_interval_covers_the_true_mean_in_seeded_simulations():
    rng = np.random.default_rng(42)
    true = {"a": 0.3, "b": 0.6}
    covered, trials = 0, 60
    for t in range(trials):
        groups = np.repeat(["a", "b"], 150)
        values = (rng.random(300) < np.where(groups == "a", true["a"], true["b"])).astype(float)
        rows = group_table(values, groups, metric="m", attribute="x", n_boot=400,
                           random_state=t)
        covered += sum(r["ci_low"] <= true[r["group"]] <= r["ci_high"] for r in rows)
    # nominal 95%: 120 intervals, expect ~114; a broken interval covers far less
    assert covered / (2 * trials) >= 0.88


def test_cluster_bootstrap_keeps_sets_together_and_engines_agree():
    rng = np.random.default_rng(3)
    sets = np.repeat(np.arange(40), 3)
    groups = np.tile(["a", "b", "c"], 40)
    set_effect = rng.normal(0, 1, 40)[sets]
    values = set_effect + np.where(groups == "a", 0.5, 0.0) + rng.normal(0, 0.1, 120)
    rows = {r["group"]: r for r in group_table(values, groups, metric="m", attribute="x",
                                               n_boot=500, random_state=0, clusters=sets)}
    # MetricFrame's own bootstrap gives similar per-group intervals
    fl = {r["group"]: r for r in group_table(values, groups, metric="m", attribute="x",
                                             n_boot=300, random_state=0, engine="fairlearn")}
    for g in "abc":
        assert rows[g]["value"] == pytest.approx(fl[g]["value"])
        width, fl_width = (rows[g]["ci_high"] - rows[g]["ci_low"],
                           fl[g]["ci_high"] - fl[g]["ci_low"])
        assert 0.6 < width / fl_width < 1.6
    # paired design: the difference interval is narrow although the groups vary a lot
    d = disparities(values, groups, metric="m", attribute="x", n_boot=500, permutations=500,
                    random_state=0, clusters=sets, strata=sets, kinds=("difference",))[0]
    assert d["value"] == pytest.approx(rows["a"]["value"] - min(rows["b"]["value"],
                                                                rows["c"]["value"]))
    assert d["ci_low"] > 0.35 and d["ci_high"] < 0.7
    assert d["p_value"] < 0.01 and d["flagged"]


def test_permutation_p_small_for_a_real_gap_large_for_none():
    rng = np.random.default_rng(7)
    groups = np.repeat(["a", "b", "c"], 100)
    gap = (rng.random(300) < np.where(groups == "a", 0.45, 0.2)).astype(float)
    none = (rng.random(300) < 0.3).astype(float)
    th = {"difference": 0.1, "ratio": 0.8, "alpha": 0.05}
    d_gap = disparities(gap, groups, metric="r", attribute="x", n_boot=300, permutations=999,
                        thresholds=th, random_state=1)
    d_none = disparities(none, groups, metric="r", attribute="x", n_boot=300, permutations=999,
                         thresholds=th, random_state=1)
    assert d_gap[0]["p_value"] < 0.01 and d_gap[0]["flagged"]
    assert d_gap[0]["highest"] == "a"
    assert d_none[0]["p_value"] > 0.05 and not any(r["flagged"] for r in d_none)
    assert {r["kind"] for r in d_gap} == {"difference", "ratio"}
    ratio = next(r for r in d_gap if r["kind"] == "ratio")
    by = {r["group"]: r["value"] for r in group_table(gap, groups, metric="r", attribute="x",
                                                      n_boot=10, random_state=0)}
    assert ratio["value"] == pytest.approx(min(by.values()) / max(by.values()))
    assert ratio["groups"] == {"a": 100, "b": 100, "c": 100} and ratio["n"] == 300
    assert ratio["ci_low"] <= ratio["value"] <= ratio["ci_high"]


def test_p_value_is_the_share_of_permutations_at_least_as_extreme():
    # two groups of two: a = [1, 1], b = [0, 0]; of the 6 equally likely labellings, 2 give a
    # range of 1 (the observed), so p ~ 2/6
    d = disparities([1, 1, 0, 0], ["a", "a", "b", "b"], metric="m", attribute="x",
                    n_boot=20, permutations=6000, random_state=0, kinds=("difference",))[0]
    assert d["p_value"] == pytest.approx(1 / 3, abs=0.03)


def test_threshold_alone_does_not_flag_without_significance():
    values = [1, 0, 0, 0, 1, 0]
    groups = ["a", "a", "a", "b", "b", "b"]
    d = disparities(values, groups, metric="m", attribute="x", n_boot=50, permutations=200,
                    random_state=0, kinds=("difference",))[0]
    assert d["value"] == pytest.approx(0.0) or d["p_value"] > 0.05
    assert not d["flagged"]


def test_small_groups_are_excluded_from_disparities():
    values = [1] * 20 + [0] * 20 + [1, 1]
    groups = ["a"] * 20 + ["b"] * 20 + ["tiny", "tiny"]
    d = disparities(values, groups, metric="m", attribute="x", n_boot=50, permutations=100,
                    random_state=0, min_group_n=5)
    assert d[0]["excluded"] == ["tiny"] and set(d[0]["groups"]) == {"a", "b"}
    assert disparities([1, 0], ["a", "b"], metric="m", attribute="x", min_group_n=2) == []


def test_callable_metric_false_positive_rate_by_group():
    from fairlearn.metrics import equalized_odds_difference, false_positive_rate

    rng = np.random.default_rng(5)
    groups = np.repeat(["a", "b"], 200)
    y_true = rng.integers(0, 2, 400)
    # group b's classifier says "positive" much more often on negatives
    y_pred = np.where(y_true == 1, 1, (rng.random(400) < np.where(groups == "b", 0.5, 0.1)))
    rows = {r["group"]: r for r in group_table(y_pred, groups, y_true=y_true,
                                               metric=false_positive_rate, attribute="x",
                                               n_boot=100, random_state=0)}
    for g in "ab":
        neg = (groups == g) & (y_true == 0)
        assert rows[g]["value"] == pytest.approx(y_pred[neg].mean())
        assert rows[g]["metric"] == "false_positive_rate"
    d = disparities(y_pred, groups, y_true=y_true, metric=false_positive_rate, attribute="x",
                    n_boot=50, permutations=99, random_state=0, kinds=("difference",))[0]
    assert d["value"] == pytest.approx(rows["b"]["value"] - rows["a"]["value"])
    assert d["p_value"] <= 0.02 and d["flagged"]
    # the same gap is what fairlearn's equalized-odds difference reports (TPR gap is 0)
    assert equalized_odds_difference(y_true, y_pred, sensitive_features=groups) == \
        pytest.approx(d["value"])


def test_holm_adjustment_and_reflagging():
    rows = [{"attribute": "x", "metric": m, "kind": "difference", "value": 0.5,
             "threshold": 0.1, "p_value": p, "flagged": p <= 0.05}
            for m, p in (("m1", 0.01), ("m2", 0.02), ("m3", 0.04))]
    out = {r["metric"]: r for r in adjust_p_values(rows, method="holm", alpha=0.05)}
    assert out["m1"]["p_adjusted"] == pytest.approx(0.03)
    assert out["m2"]["p_adjusted"] == pytest.approx(0.04)
    assert out["m3"]["p_adjusted"] == pytest.approx(0.04)
    assert all(r["flagged"] for r in out.values())
    rows[2]["p_value"] = 0.2
    out = {r["metric"]: r for r in adjust_p_values(rows, method="holm", alpha=0.05)}
    assert not out["m3"]["flagged"] and out["m1"]["flagged"]
    none = adjust_p_values(rows, method="none")
    assert [r["p_adjusted"] for r in none] == [0.01, 0.02, 0.2]
    with pytest.raises(ValueError):
        adjust_p_values(rows, method="bonferroni")
