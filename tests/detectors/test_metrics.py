import numpy as np
import pytest

from guardrail.detectors.metrics import (
    auroc,
    eer,
    metrics,
    roc_points,
    threshold_at_fpr,
    tpr_at_fpr,
)


def test_perfect_and_inverted_separation():
    y = [0, 0, 0, 1, 1, 1]
    assert auroc(y, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]) == 1.0
    assert auroc(y, [0.9, 0.8, 0.7, 0.3, 0.2, 0.1]) == 0.0
    assert eer(y, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]) == 0.0
    assert tpr_at_fpr(y, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], 0.01) == 1.0


def test_known_values():
    # one real scores above one synthetic: 8 of 9 pairs ordered
    y = [0, 0, 0, 1, 1, 1]
    s = [0.1, 0.2, 0.75, 0.7, 0.8, 0.9]
    assert auroc(y, s) == pytest.approx(8 / 9)
    assert eer(y, s) == pytest.approx(1 / 3)
    assert tpr_at_fpr(y, s, 0.01) == pytest.approx(2 / 3)
    assert tpr_at_fpr(y, s, 0.34) == pytest.approx(1.0)
    pts = roc_points(y, s)
    assert pts[-1]["fpr"] == 1.0 and pts[-1]["tpr"] == 1.0


def test_threshold_at_fpr():
    real = np.linspace(0, 1, 100)
    thr, fpr = threshold_at_fpr(real, 0.05)
    assert fpr <= 0.05 and fpr == pytest.approx(0.05)
    assert np.mean(real >= thr) == fpr
    thr, fpr = threshold_at_fpr([0.2, 0.4], 0.0)
    assert thr > 0.4 and fpr == 0.0


def test_bootstrap_ci_contains_point_and_is_reproducible():
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(50), np.ones(50)].astype(int)
    s = np.r_[rng.normal(0, 1, 50), rng.normal(1.5, 1, 50)]
    m = metrics(y, s, n_bootstrap=200, seed=3)
    assert m["auroc_ci"][0] <= m["auroc"] <= m["auroc_ci"][1]
    assert 0.75 < m["auroc"] < 0.95
    assert m == metrics(y, s, n_bootstrap=200, seed=3)
    assert {"eer", "tpr_at_0.01_fpr", "tpr_at_0.05_fpr_ci"} <= set(m)
    with pytest.raises(ValueError):
        metrics([0, 0], [0.1, 0.2])
