"""Per-group metrics and disparities with intervals, counts and a permutation test.

Point estimates come from fairlearn's :class:`~fairlearn.metrics.MetricFrame` (``by_group``,
``difference`` and ``ratio`` between groups). Intervals are percentile bootstrap intervals:

* ``engine="numpy"`` (default): a vectorised bootstrap. With ``clusters`` (the audits pass
  the counterfactual set id) whole clusters are resampled, so the prompts of one set stay
  together and the interval reflects the paired design; without, single rows are resampled.
* ``engine="fairlearn"``: MetricFrame's own ``n_boot`` / ``ci_quantiles`` (resamples rows).

The p-value of a disparity comes from a permutation test of "the metric does not depend on
the group": group labels are shuffled (within each stratum - the audits pass the set id -
when ``strata`` is given), and the statistic is the highest minus the lowest group value.
One p-value serves both the difference and the ratio of the same metric.

A metric is either the mean of ``values`` (rates are means of 0/1 values) or any callable
``func(y_true, y_pred) -> float`` - e.g. ``fairlearn.metrics.false_positive_rate`` for the
error rates of a classifier by group (pass ``y_true``).

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
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["DEFAULT_THRESHOLDS", "adjust_p_values", "disparities", "group_table"]

MetricFunc = Callable[[Any, Any], float]
DEFAULT_THRESHOLDS: Mapping[str, float] = {"difference": 0.1, "ratio": 0.8, "alpha": 0.05}
_CHUNK = 250  # bootstrap / permutation rows computed at once (bounds the memory use)


def _mean_metric(y_true: Any, y_pred: Any) -> float:
    return float(np.mean(y_pred))


def _metric_frame(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, name: str,
                  func: MetricFunc, attribute: str, **boot: Any) -> Any:
    try:
        import pandas as pd
        from fairlearn.metrics import MetricFrame
    except ImportError:
        from guardrail.errors import DependencyError

        raise DependencyError("fairlearn", "audit", purpose="bias audit metrics") from None
    return MetricFrame(metrics={name: func}, y_true=y_true, y_pred=y_pred,
                       sensitive_features=pd.Series(groups, name=attribute), **boot)


def _prepare(values: Any, groups: Any, y_true: Any, clusters: Any, strata: Any,
             metric: str | MetricFunc, func: MetricFunc | None) -> dict[str, Any]:
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
    out = {"y_pred": y_pred[keep], "y_true": yt[keep], "groups": g[keep], "name": name,
           "func": func, "fast": func is None}
    for key, arr in (("clusters", clusters), ("strata", strata)):
        if arr is None:
            out[key] = None
        else:
            a = np.asarray([str(x) for x in arr], dtype=object)
            if len(a) != len(y_pred):
                raise ValueError(f"{key} must have one entry per value")
            out[key] = a[keep]
    levels = sorted(set(out["groups"].tolist()))
    out["levels"] = levels
    out["codes"] = np.searchsorted(np.asarray(levels, dtype=object), out["groups"]).astype(np.int64)
    out["counts"] = np.bincount(out["codes"], minlength=len(levels))
    return out


def _point(p: dict[str, Any], attribute: str, **boot: Any) -> Any:
    func = p["func"] or _mean_metric
    return _metric_frame(p["y_true"], p["y_pred"], p["groups"], p["name"], func, attribute, **boot)


def _boot_group_values(p: dict[str, Any], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap replicates of every group's metric: an ``(n_boot, groups)`` array (NaN where a
    replicate holds no row of a group)."""
    n, G = len(p["y_pred"]), len(p["levels"])
    if p["clusters"] is not None:
        _, cl = np.unique(p["clusters"], return_inverse=True)
    else:
        cl = np.arange(n)
    C = int(cl.max()) + 1 if n else 0
    out = np.full((n_boot, G), np.nan)
    onehot = np.zeros((n, G))
    onehot[np.arange(n), p["codes"]] = 1.0
    for start in range(0, n_boot, _CHUNK):
        b = min(_CHUNK, n_boot - start)
        draws = rng.integers(0, C, size=(b, C))
        weights = np.zeros((b, C))
        np.add.at(weights, (np.repeat(np.arange(b), C), draws.ravel()), 1.0)
        w = weights[:, cl]  # (b, n): how often each row is in each replicate
        if p["fast"]:
            with np.errstate(invalid="ignore", divide="ignore"):
                out[start:start + b] = (w * p["y_pred"]) @ onehot / (w @ onehot)
            continue
        for i in range(b):  # a general metric: evaluate it on each replicate's rows
            idx = np.repeat(np.arange(n), w[i].astype(np.int64))
            for k in range(G):
                sel = idx[p["codes"][idx] == k]
                if len(sel):
                    out[start + i, k] = p["func"](p["y_true"][sel], p["y_pred"][sel])
    return out


def _group_values(p: dict[str, Any], codes: np.ndarray) -> np.ndarray:
    G = len(p["levels"])
    if p["fast"]:
        sums = np.bincount(codes, weights=p["y_pred"], minlength=G)
        return sums / np.maximum(np.bincount(codes, minlength=G), 1)
    return np.array([p["func"](p["y_true"][codes == k], p["y_pred"][codes == k])
                     if np.any(codes == k) else np.nan for k in range(G)])


def _permutation_p(p: dict[str, Any], use: np.ndarray, permutations: int,
                   rng: np.random.Generator) -> float:
    """P-value of the group range (max - min over the ``use`` groups) under label shuffles."""
    codes = p["codes"]
    observed = _range(_group_values(p, codes)[None, :], use)[0]
    if not np.isfinite(observed):
        return float("nan")
    n, G = len(codes), len(p["levels"])
    if p["strata"] is not None:
        _, st = np.unique(p["strata"], return_inverse=True)
    else:
        st = np.zeros(n, dtype=np.int64)
    order = np.argsort(st, kind="stable")
    st_sorted = st[order].astype(float)
    codes_sorted, vals_sorted = codes[order], p["y_pred"][order]
    counts = np.maximum(np.bincount(codes, minlength=G), 1)
    exceed = 0
    for start in range(0, permutations, _CHUNK):
        b = min(_CHUNK, permutations - start)
        # random keys in [0, 1) offset by the stratum: sorting shuffles within strata only
        perm = np.argsort(rng.random((b, n)) + st_sorted[None, :], axis=1)
        plabs = codes_sorted[perm]  # (b, n) labels shuffled within strata
        if p["fast"]:
            flat = (plabs + G * np.arange(b)[:, None]).ravel()
            sums = np.bincount(flat, weights=np.tile(vals_sorted, b), minlength=b * G)
            stats = sums.reshape(b, G) / counts
        else:
            sub = {**p, "y_true": p["y_true"][order], "y_pred": vals_sorted}
            stats = np.vstack([_group_values(sub, row) for row in plabs])
        exceed += int(np.sum(_range(stats, use) >= observed - 1e-12))
    return (1 + exceed) / (permutations + 1)


def _range(vals: np.ndarray, use: np.ndarray) -> np.ndarray:
    sub = vals[:, use]
    with np.errstate(invalid="ignore"):
        return np.nanmax(sub, axis=1) - np.nanmin(sub, axis=1)


def _quantiles(samples: np.ndarray, ci: Sequence[float]) -> tuple[float | None, float | None]:
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return None, None
    lo, hi = np.quantile(samples, [ci[0], ci[-1]])
    return float(lo), float(hi)


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def group_table(values: Any, groups: Any, *, metric: str | MetricFunc, attribute: str,
                y_true: Any = None, func: MetricFunc | None = None, n_boot: int = 1000,
                ci_quantiles: Sequence[float] = (0.025, 0.975), random_state: Any = None,
                clusters: Any = None, engine: str = "numpy") -> list[dict[str, Any]]:
    """The metric for every group, with a bootstrap interval and the group's count.

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

    Returns
    -------
    list of dict
        ``{attribute, metric, group, value, ci_low, ci_high, n}`` per group, sorted by group.
    """
    p = _prepare(values, groups, y_true, clusters, None, metric, func)
    if not len(p["y_pred"]):
        return []
    ci = [float(q) for q in ci_quantiles]
    rng = np.random.default_rng(random_state)
    if engine == "fairlearn":
        mf = _point(p, attribute, n_boot=n_boot, ci_quantiles=ci,
                    random_state=int(rng.integers(2**31)))
        lows, highs = mf.by_group_ci[0][p["name"]], mf.by_group_ci[-1][p["name"]]
        bounds = {g: (_finite(lows[g]), _finite(highs[g])) for g in p["levels"]}
    elif engine == "numpy":
        mf = _point(p, attribute)
        boot = _boot_group_values(p, n_boot, rng)
        bounds = {g: _quantiles(boot[:, k], ci) for k, g in enumerate(p["levels"])}
    else:
        raise ValueError(f"engine must be 'numpy' or 'fairlearn', got {engine!r}")
    by_group = mf.by_group[p["name"]]
    return [{"attribute": attribute, "metric": p["name"], "group": g,
             "value": _finite(by_group[g]), "ci_low": bounds[g][0], "ci_high": bounds[g][1],
             "n": int(p["counts"][k])} for k, g in enumerate(p["levels"])]


def disparities(values: Any, groups: Any, *, metric: str | MetricFunc, attribute: str,
                y_true: Any = None, func: MetricFunc | None = None, n_boot: int = 1000,
                ci_quantiles: Sequence[float] = (0.025, 0.975), permutations: int = 2000,
                thresholds: Mapping[str, float] | None = None, random_state: Any = None,
                clusters: Any = None, strata: Any = None, engine: str = "numpy",
                kinds: Sequence[str] = ("difference", "ratio"),
                min_group_n: int = 1) -> list[dict[str, Any]]:
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
        groups: {group: n}, n, highest, lowest, excluded}``; empty when fewer than two groups
        have enough rows.
    """
    th = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    p = _prepare(values, groups, y_true, clusters, strata, metric, func)
    use = np.flatnonzero(p["counts"] >= min_group_n)
    if len(use) < 2:
        return []
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
        mf = _point(p, attribute, n_boot=n_boot, ci_quantiles=ci,
                    random_state=int(rng.integers(2**31)))
        point = {"difference": mf.difference(method="between_groups")[p["name"]],
                 "ratio": mf.ratio(method="between_groups")[p["name"]]}
        cis = {"difference": (mf.difference_ci(method="between_groups")[0][p["name"]],
                              mf.difference_ci(method="between_groups")[-1][p["name"]]),
               "ratio": (mf.ratio_ci(method="between_groups")[0][p["name"]],
                         mf.ratio_ci(method="between_groups")[-1][p["name"]])}
        cis = {k: (_finite(a), _finite(b)) for k, (a, b) in cis.items()}
    elif engine == "numpy":
        mf = _point(p, attribute)
        point = {"difference": mf.difference(method="between_groups")[p["name"]],
                 "ratio": mf.ratio(method="between_groups")[p["name"]]}
        boot = _boot_group_values(p, n_boot, rng)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            # a resample can leave every group of a small audit empty: NaN, dropped below
            warnings.simplefilter("ignore", RuntimeWarning)
            bmax, bmin = np.nanmax(boot, axis=1), np.nanmin(boot, axis=1)
            cis = {"difference": _quantiles(bmax - bmin, ci),
                   "ratio": _quantiles(np.where(bmax != 0, bmin / bmax, np.nan), ci)}
    else:
        raise ValueError(f"engine must be 'numpy' or 'fairlearn', got {engine!r}")
    p_value = _permutation_p(p, use, permutations, rng) if permutations > 0 else float("nan")
    counts = {g: int(p["counts"][k]) for k, g in enumerate(p["levels"])}
    rows = []
    for kind in kinds:
        value = _finite(point[kind])
        threshold = th[kind]
        crosses = value is not None and (value > threshold if kind == "difference"
                                         else value < threshold)
        significant = np.isfinite(p_value) and p_value <= th["alpha"]
        rows.append({"attribute": attribute, "metric": p["name"], "kind": kind, "value": value,
                     "ci_low": cis[kind][0], "ci_high": cis[kind][1],
                     "p_value": _finite(p_value), "flagged": bool(crosses and significant),
                     "threshold": threshold, "groups": counts, "n": int(sum(counts.values())),
                     "highest": p["levels"][hi], "lowest": p["levels"][lo],
                     "excluded": excluded})
    return rows


def adjust_p_values(rows: list[dict[str, Any]], *, method: str = "holm",
                    alpha: float = 0.05) -> list[dict[str, Any]]:
    """Add ``p_adjusted`` (Holm's step-down over the distinct tests, i.e. one per attribute
    and metric; or the raw p-value with ``method="none"``) and re-decide ``flagged`` with it.
    Returns new rows."""
    tests: dict[tuple[str, str], float] = {}
    for r in rows:
        if r.get("p_value") is not None:
            tests[(r["attribute"], r["metric"])] = r["p_value"]
    adjusted: dict[tuple[str, str], float] = dict(tests)
    if method not in ("holm", "none"):
        raise ValueError(f"method must be 'holm' or 'none', got {method!r}")
    if method == "holm" and tests:
        keys = sorted(tests, key=tests.get)
        m, running = len(keys), 0.0
        for i, key in enumerate(keys):
            running = max(running, min(1.0, (m - i) * tests[key]))
            adjusted[key] = running
    out = []
    for r in rows:
        padj = adjusted.get((r["attribute"], r["metric"]))
        value, threshold = r.get("value"), r.get("threshold")
        crosses = value is not None and threshold is not None and (
            value > threshold if r["kind"] == "difference" else value < threshold)
        out.append({**r, "p_adjusted": padj,
                    "flagged": bool(crosses and padj is not None and padj <= alpha)})
    return out
