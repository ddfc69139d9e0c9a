"""Detection metrics: AUROC, EER, TPR at fixed FPRs, bootstrap confidence intervals.

Scores are "higher = more likely synthetic"; labels are 1 for synthetic, 0 for real. The
intervals are percentile intervals of :func:`guardrail.stats.bootstrap`, stratified by class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..stats import bootstrap, percentile_interval

__all__ = ["auroc", "eer", "metrics", "roc_points", "threshold_at_fpr", "tpr_at_fpr"]

DEFAULT_FPRS = (0.01, 0.05)


def _arrays(labels: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=int)
    s = np.asarray(scores, dtype=float)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError("labels and scores must be 1-D and of the same length")
    if len(set(y.tolist())) != 2:
        raise ValueError("metrics need both real (0) and synthetic (1) examples")
    return y, s


def auroc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve (scikit-learn ``roc_auc_score``)."""
    from sklearn.metrics import roc_auc_score

    y, s = _arrays(labels, scores)
    return float(roc_auc_score(y, s))


def eer(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Equal error rate: where the false-positive and false-negative rates cross
    (linear interpolation between the two ROC points around the crossing)."""
    from sklearn.metrics import roc_curve

    y, s = _arrays(labels, scores)
    fpr, tpr, _ = roc_curve(y, s)
    fnr = 1.0 - tpr
    diff = fpr - fnr
    i = int(np.argmax(diff >= 0))  # first point where FPR >= FNR (diff is non-decreasing)
    if i == 0:
        return float((fpr[0] + fnr[0]) / 2)
    d0, d1 = diff[i - 1], diff[i]
    t = 0.0 if d1 == d0 else -d0 / (d1 - d0)
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tpr_at_fpr(labels: Sequence[int], scores: Sequence[float], target: float) -> float:
    """Highest true-positive rate at a threshold whose false-positive rate is <= ``target``."""
    from sklearn.metrics import roc_curve

    y, s = _arrays(labels, scores)
    fpr, tpr, _ = roc_curve(y, s)
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def threshold_at_fpr(real_scores: Sequence[float], target: float) -> tuple[float, float]:
    """Lowest threshold whose false-positive rate on ``real_scores`` is <= ``target``,
    and the false-positive rate achieved there (``decision = score >= threshold``)."""
    r = np.sort(np.asarray(real_scores, dtype=float))
    if r.size == 0:
        raise ValueError("no real scores")
    allowed = int(np.floor(target * r.size + 1e-9))  # real scores allowed at/above threshold
    if allowed >= r.size:
        return float(r[0]), 1.0
    # threshold just above the (allowed+1)-th highest real score
    thr = float(np.nextafter(r[r.size - allowed - 1], np.inf))
    return thr, float(np.mean(r >= thr))


def roc_points(labels: Sequence[int], scores: Sequence[float]) -> list[dict[str, float]]:
    """The ROC curve as rows ``{"threshold", "fpr", "tpr"}`` (scikit-learn ``roc_curve``)."""
    from sklearn.metrics import roc_curve

    y, s = _arrays(labels, scores)
    fpr, tpr, thr = roc_curve(y, s)
    return [{"threshold": float(t) if np.isfinite(t) else None, "fpr": float(f), "tpr": float(p)}
            for f, p, t in zip(fpr, tpr, thr, strict=True)]


def _point(y: np.ndarray, s: np.ndarray, fprs: Sequence[float]) -> dict[str, float]:
    out = {"auroc": auroc(y, s), "eer": eer(y, s)}
    for f in fprs:
        out[f"tpr_at_{f:g}_fpr"] = tpr_at_fpr(y, s, f)
    return out


def metrics(labels: Sequence[int], scores: Sequence[float], *,
            fprs: Sequence[float] = DEFAULT_FPRS, n_bootstrap: int = 1000,
            confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """AUROC, EER and TPR at each FPR in ``fprs``, each with a bootstrap confidence interval.

    The bootstrap resamples real and synthetic examples separately (stratified), so every
    replicate has both classes.

    Returns
    -------
    dict
        ``{"n_real", "n_synthetic", "auroc", "auroc_ci", "eer", "eer_ci",
        "tpr_at_0.01_fpr", "tpr_at_0.01_fpr_ci", ...}``; each ``_ci`` is ``[lo, hi]``.
    """
    y, s = _arrays(labels, scores)
    point = _point(y, s, fprs)
    out: dict[str, Any] = {"n_real": int((y == 0).sum()), "n_synthetic": int((y == 1).sum())}
    reps = bootstrap(lambda idx: list(_point(y[idx], s[idx], fprs).values()), len(y),
                     n_boot=max(0, int(n_bootstrap)), strata=y, random_state=seed)
    a = (1.0 - confidence) / 2
    for i, (k, v) in enumerate(point.items()):
        out[k] = v
        out[f"{k}_ci"] = list(percentile_interval(reps[:, i], (a, 1 - a))) if len(reps) else None
    out["n_bootstrap"] = int(n_bootstrap)
    out["confidence"] = confidence
    return out
