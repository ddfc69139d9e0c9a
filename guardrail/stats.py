"""Statistics shared by the audits, the detector evaluations and the robustness labs.

One bootstrap, the rate intervals, one permutation test with Holm's correction, and one
group table on fairlearn's :class:`~fairlearn.metrics.MetricFrame`.

Which interval is used where:

=======================  ===================================================================
interval                 used for
=======================  ===================================================================
Wilson score             shares and rates in the audits (perceived-female share, no-face
                         rate, age buckets; the text audit's rates, widened to the cluster
                         bootstrap's where wider): close to nominal coverage near 0 and 1
Clopper-Pearson (exact)  error and detection rates whose coverage must hold even at 0 of n
                         or n of n: the safety audit's false-positive and false-negative
                         rates by group, the robustness labs' true- and false-positive rates
percentile bootstrap     everything else: group means of scores (the text audit resamples
                         whole counterfactual sets), differences
                         and ratios between groups, the equalized-odds difference, AUROC,
                         EER and TPR at a fixed FPR of the detectors, mean perceived age
=======================  ===================================================================

:func:`bootstrap` resamples rows, whole clusters, and/or within strata (resampled units
keep each stratum's size). A disparity's p-value comes from :func:`permutation_test`
(group labels shuffled, within strata when given); :func:`adjust_p_values` applies Holm's
step-down correction over an audit's tests. Only numpy and the standard library are
imported with this module; scipy, pandas and fairlearn when a function needs them.

Examples
--------
>>> import numpy as np
>>> values = np.r_[np.ones(40), np.zeros(60), np.ones(10), np.zeros(90)]
>>> groups = ["a"] * 100 + ["b"] * 100
>>> rows = group_table(values, groups, metric="refusal_rate", attribute="x", n_boot=200,
...                    random_state=0)
>>> [(r["group"], r["value"], r["n"]) for r in rows]
[('a', 0.4, 100), ('b', 0.1, 100)]
>>> d = disparities(values, groups, metric="refusal_rate", attribute="x", n_boot=200,
...                 permutations=500, random_state=0)
>>> d[0]["kind"], round(d[0]["value"], 2), d[0]["p_value"] < 0.01, d[0]["flagged"]
('difference', 0.3, True, True)
>>> [round(x, 3) for x in wilson(50, 100)]
[0.404, 0.596]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

__all__ = ["DEFAULT_THRESHOLDS", "INTERVALS", "adjust_p_values", "below_minimum", "bootstrap",
           "clopper_pearson", "disparities", "equalized_odds", "false_negative_rate",
           "false_positive_rate", "group_table", "holm", "percentile_interval",
           "permutation_test", "untested_rows", "wilson"]

MetricFunc = Callable[[Any, Any], float]
Interval = tuple[float | None, float | None]
DEFAULT_THRESHOLDS: Mapping[str, float] = {"difference": 0.1, "ratio": 0.8, "alpha": 0.05}
#: the interval methods of :func:`group_table`
INTERVALS = ("bootstrap", "wilson", "clopper-pearson")
_CHUNK = 250  # bootstrap / permutation replicates computed at once (bounds the memory use)


# -- rate intervals ---------------------------------------------------------------------------

def wilson(k: int, n: int, *, confidence: float = 0.95) -> Interval:
    """Wilson score interval of the proportion ``k / n``; ``(None, None)`` when ``n`` is 0."""
    if n <= 0:
        return None, None
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (0.0 if k <= 0 else max(0.0, centre - half),
            1.0 if k >= n else min(1.0, centre + half))


def clopper_pearson(k: int, n: int, *, confidence: float = 0.95) -> Interval:
    """Exact (Clopper-Pearson) interval of the proportion ``k / n``; ``(None, None)`` when
    ``n`` is 0. Its coverage is at least ``confidence`` for every true rate."""
    from scipy.stats import binomtest

    if n <= 0:
        return None, None
    ci = binomtest(int(k), int(n)).proportion_ci(confidence)
    return float(ci.low), float(ci.high)


def _rate_interval(method: str, k: int, n: int, confidence: float) -> Interval:
    return (wilson if method == "wilson" else clopper_pearson)(k, n, confidence=confidence)


# -- the bootstrap ----------------------------------------------------------------------------

def bootstrap(statistic: Callable[[np.ndarray], Any], n: int, *, n_boot: int = 1000,
              clusters: Any = None, strata: Any = None, vectorized: bool = False,
              random_state: Any = None) -> np.ndarray:
    """Bootstrap replicates of ``statistic`` over ``n`` rows.

    Units - the rows, or whole ``clusters`` - are drawn with replacement, separately within
    each stratum when ``strata`` are given (a cluster must lie within one stratum).

    Parameters
    ----------
    statistic : callable
        With ``vectorized=False``: ``statistic(idx)``, the row indices of one replicate (a
        row drawn twice appears twice), returning a number or a 1-d array. With
        ``vectorized=True``: ``statistic(w)``, a ``(b, n)`` array of how often each row is in
        each of ``b`` replicates, returning ``(b,)`` or ``(b, k)``.
    n : int
        Number of rows.
    clusters, strata : array-like, optional
        One label per row.
    random_state : int, numpy Generator or None
        A Generator is used as is (its stream continues).

    Returns
    -------
    numpy.ndarray
        ``(n_boot,)`` or ``(n_boot, k)`` replicates.
    """
    rng = np.random.default_rng(random_state)
    unit = (np.arange(n) if clusters is None
            else np.unique(np.asarray([str(c) for c in clusters], dtype=object),
                           return_inverse=True)[1].reshape(-1))
    n_units = int(unit.max()) + 1 if n else 0
    if strata is None:
        by_stratum = [np.arange(n_units)]
    else:
        st = np.unique(np.asarray([str(s) for s in strata], dtype=object),
                       return_inverse=True)[1].reshape(-1)
        unit_stratum = np.full(n_units, -1)
        unit_stratum[unit] = st
        if np.any(unit_stratum[unit] != st):
            raise ValueError("a cluster spans several strata")
        by_stratum = [np.flatnonzero(unit_stratum == s) for s in range(int(st.max()) + 1)]
    parts: list[np.ndarray] = []
    for start in range(0, int(n_boot), _CHUNK):
        b = min(_CHUNK, int(n_boot) - start)
        weights = np.zeros((b, n_units))
        for units in by_stratum:
            draws = rng.integers(0, len(units), size=(b, len(units)))
            np.add.at(weights, (np.repeat(np.arange(b), len(units)), units[draws].ravel()), 1.0)
        w = weights[:, unit]  # (b, n): how often each row is in each replicate
        if vectorized:
            parts.append(np.asarray(statistic(w), dtype=float))
            continue
        rows = np.arange(n)
        parts.append(np.asarray([statistic(np.repeat(rows, w[i].astype(np.int64)))
                                 for i in range(b)], dtype=float))
    return np.concatenate(parts) if parts else np.empty(0)


def percentile_interval(replicates: Any, ci_quantiles: Sequence[float] = (0.025, 0.975)
                        ) -> Interval:
    """The percentile interval of bootstrap ``replicates`` (non-finite ones left out);
    ``(None, None)`` when none is finite."""
    samples = np.asarray(replicates, dtype=float)
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return None, None
    lo, hi = np.quantile(samples, [ci_quantiles[0], ci_quantiles[-1]])
    return float(lo), float(hi)


# -- permutation test and multiple testing ----------------------------------------------------

def permutation_test(statistic: Callable[[np.ndarray], np.ndarray], labels: Any, *,
                     permutations: int = 2000, strata: Any = None,
                     random_state: Any = None) -> float:
    """P-value of ``statistic`` under shuffles of ``labels`` (within each stratum).

    ``statistic(labels_2d)`` takes a ``(b, n)`` array of integer labels, one labelling per
    row, and returns ``(b,)`` values; large values are extreme. The p-value is
    ``(1 + #{shuffles at least as extreme}) / (permutations + 1)``; NaN when the observed
    statistic is not finite.
    """
    rng = np.random.default_rng(random_state)
    codes = np.asarray(labels, dtype=np.int64)
    observed = float(statistic(codes[None, :])[0])
    if not np.isfinite(observed):
        return float("nan")
    n = len(codes)
    st = (np.zeros(n, dtype=np.int64) if strata is None
          else np.unique(np.asarray([str(s) for s in strata], dtype=object),
                         return_inverse=True)[1].reshape(-1))
    order = np.argsort(st, kind="stable")
    st_sorted = st[order].astype(float)
    codes_sorted = codes[order]
    exceed = 0
    for start in range(0, int(permutations), _CHUNK):
        b = min(_CHUNK, int(permutations) - start)
        # random keys in [0, 1) offset by the stratum: sorting shuffles within strata only
        perm = np.argsort(rng.random((b, n)) + st_sorted[None, :], axis=1)
        shuffled = np.empty((b, n), dtype=np.int64)
        shuffled[:, order] = codes_sorted[perm]
        exceed += int(np.sum(np.asarray(statistic(shuffled)) >= observed - 1e-12))
    return (1 + exceed) / (int(permutations) + 1)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``p_values`` (same order as given)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    out = [0.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        out[i] = running
    return out


def adjust_p_values(rows: list[dict[str, Any]], *, method: str = "holm",
                    alpha: float = 0.05) -> list[dict[str, Any]]:
    """Add ``p_adjusted`` (Holm's step-down over the distinct tests, i.e. one per attribute
    and metric; or the raw p-value with ``method="none"``) and re-decide ``flagged`` with it.
    Returns new rows."""
    if method not in ("holm", "none"):
        raise ValueError(f"method must be 'holm' or 'none', got {method!r}")
    tests: dict[tuple[str, str], float] = {}
    for r in rows:
        if r.get("p_value") is not None:
            tests[(r["attribute"], r["metric"])] = r["p_value"]
    adjusted = dict(tests)
    if method == "holm" and tests:
        adjusted = dict(zip(tests, holm(list(tests.values())), strict=True))
    out = []
    for r in rows:
        padj = adjusted.get((r["attribute"], r["metric"]))
        out.append({**r, "p_adjusted": padj,
                    "flagged": bool(_crosses(r.get("kind"), r.get("value"), r.get("threshold"))
                                    and padj is not None and padj <= alpha)})
    return out


def _crosses(kind: str | None, value: float | None, threshold: float | None) -> bool:
    if value is None or threshold is None:
        return False
    return value > threshold if kind == "difference" else value < threshold


# -- error rates of a classifier --------------------------------------------------------------

def false_positive_rate(y_true: Any, y_pred: Any) -> float:
    """fairlearn's ``false_positive_rate``; NaN when there is no negative to measure it on."""
    from fairlearn.metrics import false_positive_rate as fpr

    y_true = np.asarray(y_true)
    if not np.any(y_true == 0):
        return float("nan")
    return float(fpr(y_true, y_pred, pos_label=1))


def false_negative_rate(y_true: Any, y_pred: Any) -> float:
    """fairlearn's ``false_negative_rate``; NaN when there is no positive to measure it on."""
    from fairlearn.metrics import false_negative_rate as fnr

    y_true = np.asarray(y_true)
    if not np.any(y_true == 1):
        return float("nan")
    return float(fnr(y_true, y_pred, pos_label=1))


def equalized_odds(y_true: Any, y_pred: Any, groups: Any, *, n_boot: int = 1000,
                   ci_quantiles: Sequence[float] = (0.025, 0.975),
                   random_state: Any = None) -> dict[str, Any]:
    """fairlearn's ``equalized_odds_difference`` (the larger of the between-group differences
    of FPR and of TPR, i.e. of FNR) with a bootstrap interval (stratified by group and true
    class, so every group keeps its class sizes)."""
    from fairlearn.metrics import equalized_odds_difference

    y, p = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    g = np.asarray([str(x) for x in groups], dtype=object)
    levels = sorted(set(g.tolist()))
    codes = np.searchsorted(np.asarray(levels, dtype=object), g)
    value = float(equalized_odds_difference(y, p, sensitive_features=g))

    def eod(idx: np.ndarray) -> float:
        yi, pi, ci = y[idx], p[idx], codes[idx]
        spans = []
        for cls, wrong in ((0, pi), (1, 1 - pi)):  # FPR on negatives, FNR on positives
            rates = np.array([np.mean(wrong[(ci == k) & (yi == cls)])
                              for k in range(len(levels)) if np.any((ci == k) & (yi == cls))])
            if len(rates) >= 2:
                spans.append(float(rates.max() - rates.min()))
        return max(spans) if spans else float("nan")

    reps = bootstrap(eod, len(y), n_boot=n_boot, strata=codes * 2 + y,
                     random_state=random_state)
    lo, hi = percentile_interval(reps, ci_quantiles)
    return {"value": value, "ci_low": lo, "ci_high": hi}


# -- group tables on MetricFrame --------------------------------------------------------------

def _mean_metric(y_true: Any, y_pred: Any) -> float:
    return float(np.mean(y_pred))


def _metric_frame(p: dict[str, Any], attribute: str, **boot: Any) -> Any:
    try:
        import pandas as pd
        from fairlearn.metrics import MetricFrame
    except ImportError:
        from .errors import DependencyError

        raise DependencyError("fairlearn", "audit", purpose="bias audit metrics") from None
    return MetricFrame(metrics={p["name"]: p["func"] or _mean_metric}, y_true=p["y_true"],
                       y_pred=p["y_pred"],
                       sensitive_features=pd.Series(p["groups"], name=attribute), **boot)


def _labels(arr: Any, n: int, what: str) -> np.ndarray:
    a = np.asarray([str(x) for x in arr], dtype=object)
    if len(a) != n:
        raise ValueError(f"{what} must have one entry per value")
    return a


def _prepare(values: Any, groups: Any, y_true: Any, clusters: Any, strata: Any,
             metric: str | MetricFunc, func: MetricFunc | None,
             support: Any = None) -> dict[str, Any]:
    y_pred = np.asarray(values, dtype=float)
    g = np.asarray([str(x) for x in groups], dtype=object)
    if y_pred.ndim != 1 or len(y_pred) != len(g):
        raise ValueError(f"values ({len(y_pred)}) and groups ({len(g)}) must be 1-d and "
                         "the same length")
    if callable(metric):
        func, name = metric, getattr(metric, "__name__", "metric")
    else:
        name = metric
    yt = y_pred if y_true is None else np.asarray(y_true, dtype=float)
    if len(yt) != len(y_pred):
        raise ValueError("y_true must have one entry per value")
    keep = np.isfinite(y_pred) & np.isfinite(yt)
    sup = np.ones(len(y_pred), dtype=bool) if support is None else np.asarray(support, bool)
    if len(sup) != len(y_pred):
        raise ValueError("support must have one entry per value")
    out = {"y_pred": y_pred[keep], "y_true": yt[keep], "groups": g[keep], "name": name,
           "func": func, "support": sup[keep]}
    for key, arr in (("clusters", clusters), ("strata", strata)):
        out[key] = None if arr is None else _labels(arr, len(y_pred), key)[keep]
    levels = sorted(set(out["groups"].tolist()))
    out["levels"] = levels
    out["codes"] = np.searchsorted(np.asarray(levels, dtype=object), out["groups"]).astype(np.int64)
    out["counts"] = np.bincount(out["codes"], minlength=len(levels))
    return out


def _group_values(p: dict[str, Any], codes: np.ndarray) -> np.ndarray:
    """Every group's metric for one labelling of the rows."""
    G = len(p["levels"])
    if p["func"] is None:
        sums = np.bincount(codes, weights=p["y_pred"], minlength=G)
        return sums / np.maximum(np.bincount(codes, minlength=G), 1)
    return np.array([p["func"](p["y_true"][codes == k], p["y_pred"][codes == k])
                     if np.any(codes == k) else np.nan for k in range(G)])


def _boot_group_values(p: dict[str, Any], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, groups)`` bootstrap replicates of every group's metric (NaN where a
    replicate holds no row of a group); whole clusters are resampled when given."""
    G = len(p["levels"])
    if p["func"] is None:
        onehot = np.zeros((len(p["y_pred"]), G))
        onehot[np.arange(len(p["y_pred"])), p["codes"]] = 1.0

        def means(w: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                return (w * p["y_pred"]) @ onehot / (w @ onehot)

        return bootstrap(means, len(p["y_pred"]), n_boot=n_boot, clusters=p["clusters"],
                         vectorized=True, random_state=rng)

    def by_group(idx: np.ndarray) -> np.ndarray:
        out = np.full(G, np.nan)
        for k in range(G):
            sel = idx[p["codes"][idx] == k]
            if len(sel):
                out[k] = p["func"](p["y_true"][sel], p["y_pred"][sel])
        return out

    return bootstrap(by_group, len(p["y_pred"]), n_boot=n_boot, clusters=p["clusters"],
                     random_state=rng)


def _range(vals: np.ndarray, use: np.ndarray) -> np.ndarray:
    sub = vals[:, use]
    with np.errstate(invalid="ignore"):
        return np.nanmax(sub, axis=1) - np.nanmin(sub, axis=1)


def _permutation_p(p: dict[str, Any], use: np.ndarray, permutations: int,
                   rng: np.random.Generator) -> float:
    """P-value of the group range (max - min over the ``use`` groups) under label shuffles."""
    G = len(p["levels"])
    counts = np.maximum(p["counts"], 1)

    def group_range(labels: np.ndarray) -> np.ndarray:
        if p["func"] is None:
            b = labels.shape[0]
            flat = (labels + G * np.arange(b)[:, None]).ravel()
            sums = np.bincount(flat, weights=np.tile(p["y_pred"], b), minlength=b * G)
            return _range(sums.reshape(b, G) / counts, use)
        return _range(np.vstack([_group_values(p, row) for row in labels]), use)

    return permutation_test(group_range, p["codes"], permutations=permutations,
                            strata=p["strata"], random_state=rng)


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def group_table(values: Any, groups: Any, *, metric: str | MetricFunc, attribute: str,
                y_true: Any = None, func: MetricFunc | None = None, n_boot: int = 1000,
                ci_quantiles: Sequence[float] = (0.025, 0.975), random_state: Any = None,
                clusters: Any = None, engine: str = "numpy", interval: str = "bootstrap",
                support: Any = None) -> list[dict[str, Any]]:
    """The metric for every group (fairlearn's ``MetricFrame.by_group``), with an interval
    and the group's count.

    Parameters
    ----------
    values : array-like
        One value per sample (0/1 for a rate; a score; or ``y_pred`` of a classifier).
        Non-finite values (samples that could not be scored) are left out.
    groups : array-like
        The group of each sample.
    metric : str or callable
        The metric's name in the rows, or a callable ``(y_true, y_pred) -> float`` (its
        ``__name__`` is the name).
    y_true : array-like, optional
        Ground truth for a callable metric (e.g. FPR by group).
    func : callable, optional
        The metric function when ``metric`` is a name (default: the mean of ``values``).
    clusters : array-like, optional
        Resample whole clusters (numpy engine), e.g. the counterfactual set of each sample.
    engine : {"numpy", "fairlearn"}
        The bootstrap: :func:`bootstrap`, or MetricFrame's own ``n_boot`` (single rows).
    interval : {"bootstrap", "wilson", "clopper-pearson"}
        A rate interval needs a proportion: 0/1 ``values`` whose metric is their share
        among the rows of ``support``.
    support : array-like of bool, optional
        The rows the metric counts (e.g. the negatives, for a false-positive rate); the
        rows' ``n`` counts these. Default: every row.

    Returns
    -------
    list of dict
        ``{attribute, metric, group, value, ci_low, ci_high, n}`` per group, sorted by group.
    """
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}, got {interval!r}")
    if engine not in ("numpy", "fairlearn"):
        raise ValueError(f"engine must be 'numpy' or 'fairlearn', got {engine!r}")
    p = _prepare(values, groups, y_true, clusters, None, metric, func, support)
    if not len(p["y_pred"]):
        return []
    ci = [float(q) for q in ci_quantiles]
    counted = np.bincount(p["codes"][p["support"]], minlength=len(p["levels"]))
    if interval != "bootstrap":
        mf = _metric_frame(p, attribute)
        if not np.isin(p["y_pred"][p["support"]], (0.0, 1.0)).all():
            raise ValueError(f"a {interval} interval needs 0/1 values")
        by_group = mf.by_group[p["name"]]
        bounds = {g: _rate_interval(interval, round(float(by_group[g]) * int(counted[k])),
                                    int(counted[k]), ci[-1] - ci[0])
                  if np.isfinite(by_group[g]) else (None, None)
                  for k, g in enumerate(p["levels"])}
    elif engine == "fairlearn":
        rng = np.random.default_rng(random_state)
        mf = _metric_frame(p, attribute, n_boot=n_boot, ci_quantiles=ci,
                           random_state=int(rng.integers(2**31)))
        lows, highs = mf.by_group_ci[0][p["name"]], mf.by_group_ci[-1][p["name"]]
        bounds = {g: (_finite(lows[g]), _finite(highs[g])) for g in p["levels"]}
    else:
        mf = _metric_frame(p, attribute)
        boot = _boot_group_values(p, n_boot, np.random.default_rng(random_state))
        bounds = {g: percentile_interval(boot[:, k], ci) for k, g in enumerate(p["levels"])}
    by_group = mf.by_group[p["name"]]
    return [{"attribute": attribute, "metric": p["name"], "group": g,
             "value": _finite(by_group[g]), "ci_low": bounds[g][0], "ci_high": bounds[g][1],
             "n": int(counted[k])} for k, g in enumerate(p["levels"])]


def disparities(values: Any, groups: Any, *, metric: str | MetricFunc, attribute: str,
                y_true: Any = None, func: MetricFunc | None = None, n_boot: int = 1000,
                ci_quantiles: Sequence[float] = (0.025, 0.975), permutations: int = 2000,
                thresholds: Mapping[str, float] | None = None, random_state: Any = None,
                clusters: Any = None, strata: Any = None, engine: str = "numpy",
                kinds: Sequence[str] = ("difference", "ratio"),
                min_group_n: int = 1, untested: bool = False) -> list[dict[str, Any]]:
    """Between-group disparities of one metric: difference (highest - lowest group) and
    ratio (lowest / highest), each with a bootstrap interval, a permutation p-value, the
    groups' counts and a flag.

    ``thresholds``: ``difference`` (flag above), ``ratio`` (flag below), ``alpha`` (the
    p-value must be at most this too). Groups with fewer than ``min_group_n`` rows are left
    out (listed under ``excluded``). Leave out ``"ratio"`` from ``kinds`` for signed scores,
    whose ratio means nothing.

    Returns
    -------
    list of dict
        ``{attribute, metric, kind, value, ci_low, ci_high, p_value, flagged, threshold,
        groups: {group: n}, n, highest, lowest, excluded, tested, min_group_n}``. When fewer
        than two groups have enough rows: empty, or with ``untested=True`` one row per kind
        with ``tested: False``, no value, no p-value and the ``reason`` (e.g. ``"not tested:
        3 of 4 groups below n=10"``).
    """
    if engine not in ("numpy", "fairlearn"):
        raise ValueError(f"engine must be 'numpy' or 'fairlearn', got {engine!r}")
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    p = _prepare(values, groups, y_true, clusters, strata, metric, func)
    use = np.flatnonzero(p["counts"] >= min_group_n)
    if len(use) < 2:
        counts = dict(zip(p["levels"], p["counts"].tolist(), strict=True))
        return untested_rows(p["name"], attribute, counts, min_group_n, kinds=kinds,
                             thresholds=th) if untested else []
    excluded = [g for k, g in enumerate(p["levels"]) if k not in set(use.tolist())]
    if excluded:  # recompute on the groups that count
        mask = np.isin(p["codes"], use)

        def sub(key: str) -> Any:
            return None if p[key] is None else p[key][mask]

        p = _prepare(sub("y_pred"), sub("groups"), sub("y_true"), sub("clusters"),
                     sub("strata"), p["name"], p["func"])
        use = np.arange(len(p["levels"]))
    ci = [float(q) for q in ci_quantiles]
    rng = np.random.default_rng(random_state)
    gvals = _group_values(p, p["codes"])
    hi, lo = int(np.nanargmax(gvals)), int(np.nanargmin(gvals))
    if engine == "fairlearn":
        mf = _metric_frame(p, attribute, n_boot=n_boot, ci_quantiles=ci,
                           random_state=int(rng.integers(2**31)))
        cis = {"difference": mf.difference_ci(method="between_groups"),
               "ratio": mf.ratio_ci(method="between_groups")}
        cis = {k: (_finite(v[0][p["name"]]), _finite(v[-1][p["name"]])) for k, v in cis.items()}
    else:
        mf = _metric_frame(p, attribute)
        boot = _boot_group_values(p, n_boot, rng)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            # a resample can leave every group of a small audit empty: NaN, dropped below
            warnings.simplefilter("ignore", RuntimeWarning)
            bmax, bmin = np.nanmax(boot, axis=1), np.nanmin(boot, axis=1)
            cis = {"difference": percentile_interval(bmax - bmin, ci),
                   "ratio": percentile_interval(np.where(bmax != 0, bmin / bmax, np.nan), ci)}
    point = {"difference": mf.difference(method="between_groups")[p["name"]],
             "ratio": mf.ratio(method="between_groups")[p["name"]]}
    p_value = _permutation_p(p, use, permutations, rng) if permutations > 0 else float("nan")
    counts = {g: int(p["counts"][k]) for k, g in enumerate(p["levels"])}
    rows = []
    for kind in kinds:
        value = _finite(point[kind])
        significant = np.isfinite(p_value) and p_value <= th["alpha"]
        rows.append({"attribute": attribute, "metric": p["name"], "kind": kind, "value": value,
                     "ci_low": cis[kind][0], "ci_high": cis[kind][1],
                     "p_value": _finite(p_value),
                     "flagged": bool(_crosses(kind, value, th[kind]) and significant),
                     "threshold": th[kind], "groups": counts, "n": int(sum(counts.values())),
                     "highest": p["levels"][hi], "lowest": p["levels"][lo],
                     "excluded": excluded, "tested": True, "min_group_n": int(min_group_n)})
    return rows


def below_minimum(counts: Mapping[str, int], min_group_n: int) -> str:
    """``"3 of 4 groups below n=10"``: how many of ``counts`` (group -> n) are too small."""
    return (f"{sum(1 for n in counts.values() if n < min_group_n)} of {len(counts)} "
            f"group{'s' if len(counts) != 1 else ''} below n={min_group_n}")


def untested_rows(metric: str, attribute: str, counts: Mapping[str, int], min_group_n: int, *,
                  kinds: Sequence[str] = ("difference",),
                  thresholds: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """Disparity rows of a comparison that was not tested because fewer than two groups have
    ``min_group_n`` rows: no value, interval or p-value, never flagged, with the reason.

    Examples
    --------
    >>> [r] = untested_rows("refusal_rate", "religion", {"a": 3, "b": 12}, 10)
    >>> r["tested"], r["p_value"], r["flagged"], r["reason"]
    (False, None, False, 'not tested: 1 of 2 groups below n=10')
    """
    th, counts = {**DEFAULT_THRESHOLDS, **(thresholds or {})}, {str(g): int(n) for g, n in
                                                               counts.items()}
    return [{"attribute": attribute, "metric": metric, "kind": kind, "value": None,
             "ci_low": None, "ci_high": None, "p_value": None, "flagged": False,
             "threshold": th.get(kind), "groups": counts, "n": int(sum(counts.values())),
             "highest": None, "lowest": None, "tested": False, "min_group_n": int(min_group_n),
             "excluded": [g for g, n in counts.items() if n < min_group_n],
             "reason": f"not tested: {below_minimum(counts, min_group_n)}"} for kind in kinds]
