"""guardrail.stats: rate intervals against exact coverage, the one bootstrap's resampling
designs, the permutation test and Holm's correction, rate intervals in group tables."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from guardrail.stats import (
    bootstrap,
    clopper_pearson,
    group_table,
    holm,
    percentile_interval,
    permutation_test,
    wilson,
)


def _coverage(interval, p: float, n: int) -> float:
    """The exact coverage of ``interval`` at true rate ``p`` (summed over the binomial)."""
    from scipy.stats import binom

    cover = 0.0
    for k in range(n + 1):
        lo, hi = interval(k, n)
        if lo <= p <= hi:
            cover += binom.pmf(k, n, p)
    return cover


def test_wilson_interval_values_and_bounds():
    assert wilson(0, 0) == (None, None)
    lo, hi = wilson(0, 4)
    assert lo == 0.0 and 0.45 < hi < 0.5
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.404, abs=0.002) and hi == pytest.approx(0.596, abs=0.002)
    assert wilson(7, 7)[1] == 1.0
    assert wilson(50, 100, confidence=0.99)[0] < wilson(50, 100)[0]


def test_clopper_pearson_is_exact_at_zero_and_full_counts():
    assert clopper_pearson(0, 0) == (None, None)
    lo, hi = clopper_pearson(0, 40)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 40))
    lo, hi = clopper_pearson(40, 40)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 40))


@pytest.mark.parametrize("p", [0.001, 0.02, 0.3, 0.97])
def test_clopper_pearson_coverage_holds_for_every_rate(p):
    assert _coverage(clopper_pearson, p, 60) >= 0.95 - 1e-9


def test_wilson_coverage_is_near_nominal():
    assert 0.93 <= _coverage(wilson, 0.3, 100) <= 0.97


def test_bootstrap_is_seeded_and_its_interval_covers_the_mean():
    rng = np.random.default_rng(1)
    x = rng.normal(2.0, 1.0, 200)

    def mean(w):
        return w @ x / w.sum(axis=1)

    a = bootstrap(mean, len(x), n_boot=600, vectorized=True, random_state=3)
    b = bootstrap(mean, len(x), n_boot=600, vectorized=True, random_state=3)
    assert a.shape == (600,) and np.array_equal(a, b)
    lo, hi = percentile_interval(a)
    assert lo < x.mean() < hi and 0.2 < hi - lo < 0.4  # ~ 2 * 1.96 / sqrt(200)
    # the index form gives the same replicates as the weights form
    c = bootstrap(lambda idx: x[idx].mean(), len(x), n_boot=600, random_state=3)
    assert np.allclose(a, c)


def test_bootstrap_keeps_clusters_whole_and_strata_their_size():
    clusters = np.repeat(np.arange(10), 3)
    strata = np.repeat([0, 1], 15)
    seen = []

    def record(w):
        seen.append(w)
        return w.sum(axis=1)

    bootstrap(record, 30, n_boot=50, clusters=clusters, strata=strata, vectorized=True,
              random_state=0)
    w = seen[0]
    assert np.all(w.reshape(50, 10, 3) == w.reshape(50, 10, 3)[:, :, :1])  # whole clusters
    assert np.all(w[:, :15].sum(axis=1) == 15) and np.all(w[:, 15:].sum(axis=1) == 15)
    with pytest.raises(ValueError, match="cluster spans several strata"):
        bootstrap(np.mean, 4, clusters=[0, 0, 1, 1], strata=[0, 1, 1, 1])


def test_percentile_interval_ignores_non_finite_replicates():
    assert percentile_interval([np.nan, np.inf]) == (None, None)
    assert percentile_interval([1.0, np.nan, 1.0]) == (1.0, 1.0)


def test_permutation_test_is_exact_on_a_tiny_case_and_respects_strata():
    values = np.array([1.0, 1.0, 0.0, 0.0])

    def gap(labels):
        return np.array([values[row == 0].mean() - values[row == 1].mean() for row in labels])

    # 6 equally likely labellings, 1 as extreme as the observed one (a = the two 1s)
    p = permutation_test(gap, [0, 0, 1, 1], permutations=6000, random_state=0)
    assert p == pytest.approx(1 / 6, abs=0.02)
    # shuffled only within strata {0, 2} and {1, 3}: every labelling keeps one 0 per stratum
    seen = []

    def record(labels):
        seen.append(labels)
        return np.zeros(len(labels))

    permutation_test(record, [0, 1, 1, 0], strata=[0, 1, 0, 1], permutations=100,
                     random_state=0)
    shuffled = np.vstack(seen[1:])
    assert np.all(shuffled[:, [0, 2]].sum(axis=1) == 1)
    assert np.all(shuffled[:, [1, 3]].sum(axis=1) == 1)


def test_holm_step_down():
    assert holm([0.01, 0.04, 0.02]) == pytest.approx([0.03, 0.04, 0.04])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_group_table_rate_intervals_count_the_rows_the_rate_is_on():
    y_true = np.r_[np.zeros(40), np.ones(10), np.zeros(40), np.ones(10)].astype(int)
    y_pred = np.r_[np.zeros(40), np.ones(10), np.r_[np.ones(4), np.zeros(36)], np.ones(10)]
    groups = ["a"] * 50 + ["b"] * 50
    from guardrail.stats import false_positive_rate

    rows = {r["group"]: r for r in group_table(
        y_pred, groups, y_true=y_true, metric="fpr", func=false_positive_rate, attribute="x",
        interval="clopper-pearson", support=y_true == 0)}
    assert rows["a"]["value"] == 0.0 and rows["a"]["n"] == 40
    assert rows["a"]["ci_low"] == 0.0 and rows["a"]["ci_high"] == pytest.approx(
        1 - 0.025 ** (1 / 40))  # 0 of 40 still has an upper bound
    assert rows["b"]["value"] == pytest.approx(0.1)
    assert (rows["b"]["ci_low"], rows["b"]["ci_high"]) == pytest.approx(clopper_pearson(4, 40))
    w = group_table([1, 0, 1, 1], ["a", "a", "b", "b"], metric="m", attribute="x",
                    interval="wilson")
    assert (w[0]["ci_low"], w[0]["ci_high"]) == pytest.approx(wilson(1, 2))
    with pytest.raises(ValueError, match="0/1 values"):
        group_table([0.5, 1.0], ["a", "b"], metric="m", attribute="x", interval="wilson")
    with pytest.raises(ValueError, match="interval must be one of"):
        group_table([1.0], ["a"], metric="m", attribute="x", interval="normal")


def test_the_module_imports_only_numpy_and_the_standard_library():
    code = ("import sys, guardrail.stats; print(','.join(m for m in ('scipy', 'pandas', "
            "'fairlearn', 'sklearn') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""
