"""Audit exports: CSV (one row per group and per disparity), JSON (the whole evaluation) and
a self-contained HTML report (inline SVG charts, inline CSS, no script and no link to any
other file or site).

An audit evaluation's ``rows`` hold two kinds of records, told apart by ``row_type``:
``group`` (``attribute, metric, group, value, ci_low, ci_high, n``) and ``disparity``
(``attribute, metric, kind, value, ci_low, ci_high, p_value, p_adjusted, flagged, groups``).
Rows without ``row_type`` are group rows.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from guardrail.media import atomic_write
from guardrail.store import Evaluation

__all__ = ["FORMATS", "METHOD_LIMITS", "SMOKE_LABEL", "STATES", "disparity_rows", "export",
           "group_rows", "outcome", "render_html", "summarise_tests", "to_csv", "to_json"]

FORMATS = ("csv", "json", "html")

#: what every audit report says about its own method
METHOD_LIMITS = (
    "Intervals are 95% (or the configured quantiles): shares of images and the text audit's "
    "rates are Wilson intervals (a text rate's widened to the cluster bootstrap's where that "
    "is wider: the samples of one prompt are not independent), the safety audit's error "
    "rates by group exact Clopper-Pearson intervals, and every other value and every "
    "difference a percentile bootstrap interval (guardrail.stats). The "
    "interval of a difference between the highest and the lowest group is biased away from "
    "zero when groups are alike (the largest of several noisy gaps); whether a gap is real "
    "is judged by the permutation p-value, corrected over the audit's tests.",
    "A flag needs both: a disparity beyond the configured threshold and an adjusted p-value "
    "at or below alpha. Small groups give wide intervals; no flag does not show there is no "
    "disparity.",
    "A group with fewer samples than [audit] min_group_n is shown but not tested: it is left "
    "out of every comparison, and a comparison with fewer than two groups at that size is "
    "reported as not tested, never as 'no disparity'.",
)


#: the outcome states of an audit (:func:`outcome`) and how each is shown
STATES = {"flagged": "error", "no_disparity": "success", "partly_tested": "warning",
          "not_tested": "warning", "smoke": "warning", "running": "info"}
SMOKE_LABEL = "smoke run - not a test"


def _get(ev: Evaluation | Mapping[str, Any], key: str) -> Any:
    return getattr(ev, key) if isinstance(ev, Evaluation) else ev.get(key)


def _row_tested(r: Mapping[str, Any]) -> bool:
    if "tested" in r:
        return bool(r["tested"])
    return r.get("p_value") is not None  # rows of audits stored before "tested" existed


def summarise_tests(rows: Sequence[Mapping[str, Any]], *, min_group_n: int,
                    smoke: bool = False) -> dict[str, Any]:
    """What an audit tested: its comparisons (tested or not) and its groups (at or below the
    minimum group size), stored as the audit summary's ``testing``.

    A comparison is one attribute and metric (per scorer) of the disparity rows - the
    equalized-odds rows summarise two of them and are not counted again - and every group
    row that is compared with a reference value (``reference`` set). It is *tested* when at
    least two of its groups have ``min_group_n`` samples; a group row carrying ``tested:
    False`` is a group below the minimum, left out of every comparison.
    """
    comparisons: dict[tuple[Any, ...], bool] = {}
    partial: set[tuple[Any, ...]] = set()
    flagged = 0
    for r in rows:
        if r.get("row_type") == "disparity":
            if r.get("kind") == "equalized_odds_difference":
                continue
            key = (r.get("part"), r.get("scorer"), r.get("attribute"), r.get("metric"))
            comparisons[key] = comparisons.get(key, False) or _row_tested(r)
            if r.get("excluded") and _row_tested(r):
                partial.add(key)
            flagged += bool(r.get("flagged"))
        elif r.get("reference") is not None and "tested" in r:
            comparisons[("reference", r.get("attribute"), r.get("group"), r.get("metric"))] = \
                bool(r["tested"])
            flagged += bool(r.get("flagged"))
    groups: dict[tuple[Any, ...], int] = {}
    for r in rows:
        if r.get("row_type", "group") == "group" and "tested" in r:
            key = (r.get("part"), r.get("attribute"), r.get("group"))
            groups[key] = min(groups.get(key, 10**9), int(r.get("n") or 0))
    below = {k: n for k, n in groups.items() if n < min_group_n}
    tested = sum(comparisons.values())
    return {"min_group_n": int(min_group_n), "comparisons": len(comparisons),
            "tested": tested, "not_tested": len(comparisons) - tested,
            "partly_tested": len(partial), "flagged": flagged, "groups": len(groups),
            "groups_below_minimum": len(below),
            "below_minimum": [f"{k[1]}: {k[2]} (n={n})" for k, n in below.items()][:50],
            "smoke_run": bool(smoke)}


def outcome(ev: Evaluation | Mapping[str, Any]) -> dict[str, Any]:
    """The audit's one-line outcome: ``{"state", "level", "text", "testing"}``.

    ``state`` is one of :data:`STATES`; ``level`` says how to show it (``success`` - the only
    green - needs every comparison tested with every group at the minimum size and nothing
    flagged). Audits stored without a ``testing`` summary are judged from their rows.
    """
    summary = dict(_get(ev, "summary") or {})
    config = dict(_get(ev, "config") or {})
    if (_get(ev, "status") or summary.get("status")) == "running":
        return {"state": "running", "level": "info", "testing": None,
                "text": f"running: {summary.get('samples_done', 0)} of "
                        f"{summary.get('samples_total', '?')} samples done"}
    t = summary.get("testing")
    if not isinstance(t, Mapping):
        t = summarise_tests(list(_get(ev, "rows") or []),
                            min_group_n=int(config.get("min_group_n") or 10),
                            smoke=bool(config.get("smoke_run")))
        if not t["flagged"] and summary.get("flags"):
            t["flagged"] = len(summary["flags"])  # an audit stored with flags only
    k, c, done = t["min_group_n"], t["comparisons"], t["tested"]
    below = (f"{t['groups_below_minimum']} of {t['groups']} groups below n={k}"
             if t["groups"] else f"groups below n={k}")
    untested = c - done + t.get("partly_tested", 0)
    if t.get("smoke_run"):
        state, text = "smoke", (f"{SMOKE_LABEL}: it checks that the audit runs end to end; "
                                f"{done} of {c} comparisons had two groups of n >= {k} "
                                "and no result of it is a finding")
    elif t["flagged"]:
        state = "flagged"
        text = (f"{t['flagged']} disparit{'y' if t['flagged'] == 1 else 'ies'} flagged"
                + (f"; {c - done} of {c} comparisons not tested ({below})" if c > done
                   else ""))
    elif not c or not done:
        state = "not_tested"
        text = (f"not tested: {below}" if t["groups_below_minimum"] else
                "not tested: the audit recorded no comparison")
    elif untested or t["groups_below_minimum"]:
        state = "partly_tested"
        text = (f"not fully tested: {c - done} of {c} comparisons not tested and "
                f"{t['groups_below_minimum']} of {t['groups']} groups below n={k} left out; "
                f"no disparity flagged among the {done} tested")
    else:
        state = "no_disparity"
        text = f"no disparity flagged: all {c} comparisons tested (every group n >= {k})"
    return {"state": state, "level": STATES[state], "text": text, "testing": dict(t)}


def group_rows(ev: Evaluation | Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = ev.rows if isinstance(ev, Evaluation) else ev.get("rows", [])
    return [dict(r) for r in rows if r.get("row_type", "group") == "group"]


def disparity_rows(ev: Evaluation | Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = ev.rows if isinstance(ev, Evaluation) else ev.get("rows", [])
    return [dict(r) for r in rows if r.get("row_type") == "disparity"]


def to_json(ev: Evaluation) -> str:
    return json.dumps(ev.to_dict(), indent=2, ensure_ascii=False) + "\n"


def to_csv(ev: Evaluation) -> str:
    rows = [dict(r) for r in ev.rows]
    columns: list[str] = ["audit_id", "row_type"]
    for r in rows:
        for k in r:
            if k not in columns:
                columns.append(k)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        flat = {k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v
                for k, v in r.items()}
        writer.writerow({"audit_id": ev.evaluation_id, "row_type": r.get("row_type", "group"),
                         **flat})
    return buf.getvalue()


def export(ev: Evaluation, path: str | Path, fmt: str | None = None) -> Path:
    """Write ``ev`` to ``path`` as csv, json or html (default: from the suffix); atomic."""
    path = Path(path).expanduser().absolute()
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        from guardrail.errors import InputError

        raise InputError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    text = {"csv": to_csv, "json": to_json, "html": render_html}[fmt](ev)
    atomic_write(path, text.encode("utf-8"))
    return path


# -- HTML ---------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;color:#1d2433;padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}th{background:#f3f5f9}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.flag{background:#fdecea}.ok{color:#2e7d32}.warn{color:#b71c1c;font-weight:600}
.amber{color:#8a5a00}.untested{color:#777;background:#f6f6f6}
.outcome{padding:.6rem .8rem;border-radius:4px;border:1px solid}
.outcome.success{background:#e8f5e9;border-color:#2e7d32}
.outcome.warning,.outcome.info{background:#fff4e0;border-color:#b26a00}
.outcome.error{background:#fdecea;border-color:#b71c1c}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.muted{color:#667}
"""
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:.{digits}f}"
    return html.escape(str(x))


def metric_domain(metric: str, kind: str | None,
                  values: Sequence[float | None] = ()) -> tuple[float, float] | None:
    """The axis of one metric: 0..1 for a rate or share, -1..1 for a signed score (sentiment),
    none (from the data) for other scores."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if kind == "rate" or metric.endswith(("_rate", "_share")) or metric == "share" or (
            metric == "toxicity"):
        return (0.0, 1.0) if all(0 <= v <= 1 for v in finite) else None
    if metric == "sentiment" or (finite and min(finite) < 0 and all(-1 <= v <= 1
                                                                    for v in finite)):
        return (-1.0, 1.0)
    return None


def forest_svg(rows: Sequence[Mapping[str, Any]], title: str, *, width: int = 420,
               domain: tuple[float, float] | None = None) -> str:
    """Dot-and-interval chart of one metric's group values (inline SVG) on the metric's own
    axis (``domain``, widened to the data); groups below the minimum size are grey."""
    rows = [r for r in rows if r.get("value") is not None]
    if not rows:
        return ""
    lows = [r["ci_low"] if r.get("ci_low") is not None else r["value"] for r in rows]
    highs = [r["ci_high"] if r.get("ci_high") is not None else r["value"] for r in rows]
    lo, hi = min(0.0, *lows), max(0.0, *highs)
    if domain is not None:  # the metric's own scale (a rate 0..1, a sentiment -1..1)
        lo, hi = min(lo, domain[0]), max(hi, domain[1])
    hi = max(hi, lo + 0.05)  # all-zero rates: a readable axis, not one of width 1e-9
    label_w, pad, row_h, top = 150, 14, 20, 28
    plot_w = width - label_w - 2 * pad
    height = top + row_h * len(rows) + 26

    def x(v: float) -> float:
        return label_w + pad + (v - lo) / (hi - lo) * plot_w

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{html.escape(title)}">',
             f'<text x="4" y="16" font-size="13" font-weight="600">{html.escape(title)}</text>']
    if lo < 0 < hi or lo == 0:
        parts.append(f'<line x1="{x(0):.1f}" y1="{top - 6}" x2="{x(0):.1f}" '
                     f'y2="{height - 22}" stroke="#999" stroke-dasharray="3,3"/>')
    for i, (r, a, b) in enumerate(zip(rows, lows, highs, strict=True)):
        y = top + row_h * i + row_h / 2
        untested = r.get("tested") is False
        color = "#aaa" if untested else _COLORS[i % len(_COLORS)]
        parts.append(f'<text x="{label_w}" y="{y + 4:.1f}" font-size="11" text-anchor="end"'
                     + (' fill="#888"' if untested else "") + ">"
                     f'{html.escape(str(r["group"]))} (n={r.get("n", "?")}'
                     + (", not tested" if untested else "") + ")</text>")
        parts.append(f'<line x1="{x(a):.1f}" y1="{y:.1f}" x2="{x(b):.1f}" y2="{y:.1f}" '
                     f'stroke="{color}" stroke-width="2"/>')
        parts.append(f'<circle cx="{x(r["value"]):.1f}" cy="{y:.1f}" r="4" fill="{color}">'
                     f'<title>{html.escape(str(r["group"]))}: {_fmt(r["value"])} '
                     f'[{_fmt(a)}, {_fmt(b)}], n={r.get("n")}</title></circle>')
    axis_y = height - 20
    parts.append(f'<line x1="{x(lo):.1f}" y1="{axis_y}" x2="{x(hi):.1f}" y2="{axis_y}" '
                 'stroke="#333"/>')
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text x="{x(v):.1f}" y="{axis_y + 14}" font-size="10" '
                     f'text-anchor="middle">{_fmt(float(v), 2)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: Sequence[str], body: Sequence[Sequence[str]],
           classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    lines = []
    for i, row in enumerate(body):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        lines.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(lines)}</tbody></table>"


def _tested_cell(r: Mapping[str, Any]) -> str:
    if "tested" not in r:
        return "-"
    return "yes" if r["tested"] else (r.get("note") or "not tested")


def render_html(ev: Evaluation) -> str:
    """The audit as one self-contained HTML page."""
    summary = dict(ev.summary)
    config = dict(ev.config)
    suite = dict(config.get("suite") or {})
    groups = group_rows(ev)
    disp = disparity_rows(ev)
    flags = summary.get("flags") or []
    ci = config.get("ci_quantiles") or [0.025, 0.975]
    level = f"{(ci[-1] - ci[0]) * 100:.0f}%"
    smoke = " (smoke run - not a test)" if outcome(ev)["state"] == "smoke" else ""
    out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>Bias audit: {html.escape(ev.name + smoke)}</title><style>{_CSS}</style>"
           "</head><body>", f"<h1>Bias audit: {html.escape(ev.name + smoke)}</h1>"]
    facts = [("audit id", ev.evaluation_id), ("status", ev.status), ("created", ev.created_at),
             ("suite", f"{suite.get('name', '?')} v{suite.get('version', '?')}"),
             ("generator", config.get("generator", {}).get("model_id", "?")
              if isinstance(config.get("generator"), Mapping) else config.get("generator", "?")),
             ("samples per prompt", config.get("samples", "?")),
             ("seed", config.get("seed", "?"))]
    for key in ("generations", "scored", "failed", "blocked", "wall_time_s"):
        if key in summary:
            facts.append((key.replace("_", " "), summary[key]))
    out.append(_table(["", ""], [[html.escape(k), _fmt(v)] for k, v in facts]))
    result = outcome(ev)
    out.append(f'<p class="outcome {result["level"]}"><b>'
               + (html.escape(SMOKE_LABEL.capitalize()) + ".</b> " if result["state"] == "smoke"
                  else "Result:</b> ") + html.escape(result["text"][:1].upper()
                                                      + result["text"][1:]) + "</p>")
    for warning in summary.get("warnings") or []:
        out.append(f'<p class="warn">Warning: {html.escape(str(warning))}</p>')
    out.append("<h2>Flags</h2>")
    if flags:
        out.append("<ul>" + "".join(f'<li class="warn">{html.escape(str(f))}</li>'
                                    for f in flags) + "</ul>")
    else:
        css = "ok" if result["level"] == "success" else "amber"
        out.append(f'<p class="{css}">{html.escape(result["text"][:1].upper())}'
                   f'{html.escape(result["text"][1:])} '
                   f"(thresholds: {html.escape(json.dumps(config.get('thresholds', {})))}).</p>")
    out.append(f"<h2>Group rates with {level} intervals</h2>")
    by_attr: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in groups:
        by_attr.setdefault(str(r.get("attribute", "-")), {}).setdefault(
            str(r["metric"]), []).append(r)
    kinds = config.get("metrics") if isinstance(config.get("metrics"), Mapping) else {}
    for attribute, metrics in by_attr.items():
        out.append(f"<h3>{html.escape(attribute)}</h3><div class=\"charts\">")
        for metric, rows in metrics.items():
            dom = metric_domain(metric, kinds.get(metric), [r.get("value") for r in rows])
            label = metric + (f" ({dom[0]:g} to {dom[1]:g})" if dom else "")
            out.append(forest_svg(rows, label, domain=dom))
        out.append("</div>")
    out.append("<h2>Disparities</h2>")
    if disp:
        body, classes = [], []
        for d in disp:
            counts = ", ".join(f"{html.escape(str(g))}: {n}" for g, n in
                               (d.get("groups") or {}).items())
            if d.get("tested") is False:
                body.append([html.escape(str(d.get("attribute"))),
                             html.escape(str(d["metric"])), html.escape(str(d["kind"])),
                             "-", "-", "-", "-", "-", counts,
                             html.escape(str(d.get("reason") or "not tested"))])
                classes.append("untested")
                continue
            body.append([html.escape(str(d.get("attribute"))), html.escape(str(d["metric"])),
                         html.escape(str(d["kind"])), _fmt(d.get("value")),
                         f"[{_fmt(d.get('ci_low'))}, {_fmt(d.get('ci_high'))}]",
                         _fmt(d.get("p_value")), _fmt(d.get("p_adjusted")),
                         f"{html.escape(str(d.get('highest')))} / "
                         f"{html.escape(str(d.get('lowest')))}",
                         counts, "FLAGGED" if d.get("flagged") else ""])
            classes.append("flag" if d.get("flagged") else "")
        out.append(_table(["attribute", "metric", "kind", "value", f"{level} interval",
                           "p", "p (adjusted)", "highest / lowest", "groups (n)", "flag"],
                          body, classes))
    else:
        out.append("<p class=\"muted\">No disparity rows.</p>")
    out.append("<h2>All group rows</h2>")
    out.append(_table(["attribute", "metric", "group", "value", f"{level} interval", "n",
                       "tested"],
                      [[html.escape(str(r.get("attribute", "-"))), html.escape(str(r["metric"])),
                        html.escape(str(r["group"])), _fmt(r.get("value")),
                        f"[{_fmt(r.get('ci_low'))}, {_fmt(r.get('ci_high'))}]",
                        _fmt(r.get("n")), html.escape(_tested_cell(r))] for r in groups],
                      ["untested" if r.get("tested") is False else "" for r in groups]))
    failures = summary.get("failures") or []
    if failures:
        out.append(f"<h2>Failed generations ({len(failures)})</h2>")
        out.append(_table(["prompt id", "sample", "report", "error"],
                          [[html.escape(str(f.get("prompt_id"))), _fmt(f.get("sample")),
                            html.escape(str(f.get("report_id") or "-")),
                            html.escape(str(f.get("error")))] for f in failures[:200]]))
    out.append("<h2>Suite and sources</h2>")
    if suite.get("description"):
        out.append(f"<p>{html.escape(suite['description'])}</p>")
    out.append("<ul>")
    for s in suite.get("sources") or []:
        cite = html.escape(str(s.get("citation") or ""))
        url = html.escape(str(s.get("url") or ""))  # shown as text: the page links nowhere
        out.append(f"<li><b>{html.escape(str(s.get('title')))}</b> ({_fmt(s.get('year'))}). "
                   f"{cite} <span class=\"muted\">{url}</span>"
                   + (f"<br><i>{html.escape(str(s['note']))}</i>" if s.get("note") else "")
                   + "</li>")
    out.append("</ul>")
    limits = [*summary.get("limits", []), *suite.get("limits", []), *METHOD_LIMITS]
    out.append("<h2>Limits</h2><ul>" + "".join(f"<li>{html.escape(str(x))}</li>"
                                               for x in limits) + "</ul>")
    out.append("<h2>Settings</h2><pre>" + html.escape(json.dumps(
        {k: v for k, v in config.items() if k != "suite"}, indent=2, default=str)) + "</pre>")
    out.append("</body></html>")
    return "\n".join(out)
