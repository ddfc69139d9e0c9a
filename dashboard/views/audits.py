"""Bias audits: what was tested (and what was not), group values with 95% intervals on each
metric's own scale, disparities with raw and adjusted p-values, two audits side by side."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from audits.report import SMOKE_LABEL, metric_domain, outcome
from dashboard import common

st.title("Bias audits")
url = common.store_url()
audits = common.list_evaluations(url, "audit")
if not audits:
    st.info("No bias audits are recorded yet. Run one with `guardrail audit run "
            "text-demographics`; it records an evaluation of kind `audit` with one row per "
            "attribute, group and metric (value, 95% interval, n) that this page charts, and "
            "the disparities between groups with intervals, p-values and flags.")
    if not common.count_reports(url):
        common.empty_store_hint()
    st.stop()


def rows_frame(ev: dict[str, Any], attribute: str | None = None) -> pd.DataFrame:
    """The audit's group rows (rows without ``row_type`` are group rows), of one attribute."""
    rows = [r for r in ev["rows"] if r.get("row_type", "group") == "group"]
    if attribute is not None:
        rows = [r for r in rows if r.get("attribute") == attribute]
    df = pd.DataFrame(rows)
    for col in ("group", "metric", "value", "ci_low", "ci_high", "n"):
        if col not in df:
            df[col] = None
    return df


def attributes_of(ev: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(r["attribute"] for r in ev["rows"]
                              if r.get("row_type", "group") == "group" and r.get("attribute")))


def stored_disparities(ev: dict[str, Any], attribute: str | None) -> pd.DataFrame:
    """The disparity rows the audit stored (interval, raw and Holm-adjusted p-values,
    counts, flag); a comparison that was not tested says so (``tested``, ``note``) and has
    no value, interval or p-value."""
    out = []
    for d in ev["rows"]:
        if d.get("row_type") != "disparity" or (attribute and d.get("attribute") != attribute):
            continue
        tested = d.get("tested", d.get("p_value") is not None)
        out.append({"metric": d["metric"], "kind": d["kind"], "tested": bool(tested),
                    "value": d.get("value"), "ci_low": d.get("ci_low"),
                    "ci_high": d.get("ci_high"), "p_value": d.get("p_value"),
                    "p_adjusted": d.get("p_adjusted"),
                    "flagged": bool(d.get("flagged")), "highest": d.get("highest"),
                    "lowest": d.get("lowest"),
                    "groups (n)": ", ".join(f"{g}: {n}" for g, n in
                                            (d.get("groups") or {}).items()),
                    "note": d.get("reason") if not tested else (
                        f"{len(d['excluded'])} group(s) below n={d.get('min_group_n')} left out"
                        if d.get("excluded") else "")})
    return pd.DataFrame(out)


def _tested(value: Any) -> bool | None:
    """A group row's ``tested`` cell: True, False, or None (not recorded / NaN)."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return bool(value)


def metric_scale(metric: str, kinds: dict[str, Any], values: pd.Series) -> list[float] | None:
    """The metric's own axis: 0..1 for rates and shares, -1..1 for sentiment."""
    return None if (dom := metric_domain(metric, kinds.get(metric),
                                         [float(v) for v in values.dropna()])) is None \
        else [dom[0], dom[1]]


def rate_chart(df: pd.DataFrame, title: str, kinds: dict[str, Any] | None = None) -> alt.Chart:
    """One dot-and-interval panel per metric, each on its own axis (a rate 0..1 and a
    sentiment -1..1 never share one); groups below the minimum size are grey."""
    kinds = kinds or {}
    df = df.copy()
    if "tested" not in df:
        df["tested"] = None
    df["status"] = [{None: "-", True: "tested", False: "not tested (n < minimum)"}[_tested(t)]
                    for t in df["tested"]]
    panels = []
    for metric in dict.fromkeys(df["metric"].dropna()):
        sub = df[df["metric"] == metric]
        scale = metric_scale(str(metric), kinds, pd.concat([sub["ci_low"], sub["ci_high"],
                                                            sub["value"]]))
        x_scale = alt.Scale(domain=scale) if scale else alt.Scale(zero=False)
        base = alt.Chart(sub).encode(
            y=alt.Y("group:N", title=None),
            color=alt.Color("status:N", title=None,
                            scale=alt.Scale(domain=["tested", "not tested (n < minimum)", "-"],
                                            range=["#1f77b4", "#aaaaaa", "#1f77b4"])),
            tooltip=["metric", "group", alt.Tooltip("value:Q", format=".3f"),
                     alt.Tooltip("ci_low:Q", format=".3f"),
                     alt.Tooltip("ci_high:Q", format=".3f"), "n", "status"])
        axis = f"{metric} (95% interval)"
        points = base.mark_point(filled=True, size=70).encode(
            x=alt.X("value:Q", title=axis, scale=x_scale))
        bars = base.mark_rule().encode(x=alt.X("ci_low:Q", scale=x_scale), x2="ci_high:Q")
        panels.append((bars + points).properties(title=str(metric), height=alt.Step(22)))
    if not panels:
        return alt.Chart(df).mark_point().properties(title=title)
    return alt.vconcat(*panels).properties(title=title).resolve_scale(x="independent")


def show_outcome(ev: dict[str, Any]) -> dict[str, Any]:
    """The audit's outcome (:func:`audits.report.outcome`) as one banner: green only when
    every comparison was tested and nothing flagged."""
    result = outcome(ev)
    text = result["text"][:1].upper() + result["text"][1:] + "."
    if result["state"] == "smoke":
        st.warning(f"**{SMOKE_LABEL.capitalize()}.** {text}")
    elif result["level"] == "success":
        st.success(text)
    elif result["level"] == "error":
        st.error(text)
    else:
        st.warning(text)
    return result


def disparity_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per metric: best and worst group, the gap, the ratio, and the groups' counts."""
    out = []
    for metric, g in df.dropna(subset=["value"]).groupby("metric"):
        hi, lo = g.loc[g["value"].idxmax()], g.loc[g["value"].idxmin()]
        out.append({"metric": metric, "groups": len(g), "highest": hi["group"],
                    "highest_value": hi["value"], "highest_n": hi["n"], "lowest": lo["group"],
                    "lowest_value": lo["value"], "lowest_n": lo["n"],
                    "gap": hi["value"] - lo["value"],
                    "ratio": (lo["value"] / hi["value"]) if hi["value"] else None})
    return pd.DataFrame(out)


def show_audit(ev: dict[str, Any], *, compact: bool = False, attribute: str | None = None) -> None:
    summary = dict(ev.get("summary") or {})
    if ev.get("status") == "running":
        st.info(f"This audit is still running (or was interrupted): "
                f"{summary.get('samples_done', 0)} of {summary.get('samples_total', '?')} samples "
                "done. Run the same `guardrail audit run` command again to continue it.")
        return
    attrs = attributes_of(ev)
    if attribute not in attrs:
        attribute = attrs[0] if attrs else None
    df = rows_frame(ev, attribute)
    result = show_outcome(ev)
    flags = summary.pop("flags", None)
    if flags:
        st.warning("Flags: " + "; ".join(str(f) for f in flags))
    if summary and not compact:
        summary.pop("failures", None)
        common.show_json("Audit summary, as recorded with the audit: generations, "
                         "counts, timing and settings", summary)
    title = ev["name"] + (f" - {attribute}" if attribute else "")
    if result["state"] == "smoke":
        title += f" ({SMOKE_LABEL})"
    kinds = (ev.get("config") or {}).get("metrics")
    st.altair_chart(rate_chart(df, title, kinds if isinstance(kinds, dict) else {}),
                    width="stretch")
    st.markdown("**Disparities**" + (f" ({attribute})" if attribute else "")
                + ": raw p-values and p-values adjusted over the audit's tests (Holm)")
    stored = stored_disparities(ev, attribute)
    st.dataframe(stored if len(stored) else disparity_table(df), hide_index=True,
                 width="stretch")
    if not compact:
        st.markdown("**Groups**")
        if "tested" not in df:
            df["tested"] = None
        k = (result.get("testing") or {}).get("min_group_n", "?")
        df["tested"] = [{None: "-", True: "yes", False: f"not tested (n < {k})"}[_tested(t)]
                        for t in df["tested"]]
        st.dataframe(df[["metric", "group", "value", "ci_low", "ci_high", "n", "tested"]],
                     hide_index=True, width="stretch")


labels = {common.evaluation_label(ev) + (f" [{SMOKE_LABEL}]" if outcome(ev)["state"] == "smoke"
                                         else ""): ev for ev in audits}
choice = st.selectbox("Audit", list(labels), key="audit_pick")
picked_attrs = attributes_of(labels[choice])
picked_attr = (st.selectbox("Attribute", picked_attrs, key="audit_attribute")
               if len(picked_attrs) > 1 else None)
show_audit(labels[choice], attribute=picked_attr)

st.divider()
st.subheader("Compare two audits")
if len(audits) < 2:
    st.caption("Record a second audit to compare two side by side.")
else:
    names = list(labels)
    a, b = st.columns(2)
    left = a.selectbox("Left", names, index=0, key="audit_left")
    right = b.selectbox("Right", names, index=1, key="audit_right")
    with a:
        show_audit(labels[left], compact=True, attribute=picked_attr)
    with b:
        show_audit(labels[right], compact=True, attribute=picked_attr)
