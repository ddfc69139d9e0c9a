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

__all__ = ["FORMATS", "METHOD_LIMITS", "disparity_rows", "export", "group_rows", "render_html",
           "to_csv", "to_json"]

FORMATS = ("csv", "json", "html")

#: what every audit report says about its own method
METHOD_LIMITS = (
    "Intervals are 95% (or the configured quantiles): shares of images are Wilson intervals, "
    "the safety audit's error rates by group exact Clopper-Pearson intervals, and every other "
    "value and every difference a percentile bootstrap interval (guardrail.stats). The "
    "interval of a difference between the highest and the lowest group is biased away from "
    "zero when groups are alike (the largest of several noisy gaps); whether a gap is real "
    "is judged by the permutation p-value, corrected over the audit's tests.",
    "A flag needs both: a disparity beyond the configured threshold and an adjusted p-value "
    "at or below alpha. Small groups give wide intervals; no flag does not show there is no "
    "disparity.",
)


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
.charts{display:flex;flex-wrap:wrap;gap:1rem}.muted{color:#667}
"""
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e-3 and x != 0 else f"{x:.{digits}f}"
    return html.escape(str(x))


def forest_svg(rows: Sequence[Mapping[str, Any]], title: str, *, width: int = 420) -> str:
    """Dot-and-interval chart of one metric's group values (inline SVG)."""
    rows = [r for r in rows if r.get("value") is not None]
    if not rows:
        return ""
    lows = [r["ci_low"] if r.get("ci_low") is not None else r["value"] for r in rows]
    highs = [r["ci_high"] if r.get("ci_high") is not None else r["value"] for r in rows]
    lo, hi = min(0.0, *lows), max(0.0, *highs)
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
        color = _COLORS[i % len(_COLORS)]
        parts.append(f'<text x="{label_w}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
                     f'{html.escape(str(r["group"]))} (n={r.get("n", "?")})</text>')
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
    out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>Bias audit: {html.escape(ev.name)}</title><style>{_CSS}</style></head><body>",
           f"<h1>Bias audit: {html.escape(ev.name)}</h1>"]
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
    for warning in summary.get("warnings") or []:
        out.append(f'<p class="warn">Warning: {html.escape(str(warning))}</p>')
    out.append("<h2>Flags</h2>")
    if flags:
        out.append("<ul>" + "".join(f'<li class="warn">{html.escape(str(f))}</li>'
                                    for f in flags) + "</ul>")
    else:
        out.append('<p class="ok">No disparity flagged '
                   f"(thresholds: {html.escape(json.dumps(config.get('thresholds', {})))}).</p>")
    out.append(f"<h2>Group rates with {level} intervals</h2>")
    by_attr: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in groups:
        by_attr.setdefault(str(r.get("attribute", "-")), {}).setdefault(
            str(r["metric"]), []).append(r)
    for attribute, metrics in by_attr.items():
        out.append(f"<h3>{html.escape(attribute)}</h3><div class=\"charts\">")
        out.extend(forest_svg(rows, metric) for metric, rows in metrics.items())
        out.append("</div>")
    out.append("<h2>Disparities</h2>")
    if disp:
        body, classes = [], []
        for d in disp:
            counts = ", ".join(f"{html.escape(str(g))}: {n}" for g, n in
                               (d.get("groups") or {}).items())
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
    out.append(_table(["attribute", "metric", "group", "value", f"{level} interval", "n"],
                      [[html.escape(str(r.get("attribute", "-"))), html.escape(str(r["metric"])),
                        html.escape(str(r["group"])), _fmt(r.get("value")),
                        f"[{_fmt(r.get('ci_low'))}, {_fmt(r.get('ci_high'))}]",
                        _fmt(r.get("n"))] for r in groups]))
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
