"""Bias audits: group rates with 95% intervals, disparities, two audits side by side."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

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
    """The disparity rows the audit stored (interval, p-values, counts, flag)."""
    out = []
    for d in ev["rows"]:
        if d.get("row_type") != "disparity" or (attribute and d.get("attribute") != attribute):
            continue
        out.append({"metric": d["metric"], "kind": d["kind"], "value": d.get("value"),
                    "ci_low": d.get("ci_low"), "ci_high": d.get("ci_high"),
                    "p_value": d.get("p_value"), "p_adjusted": d.get("p_adjusted"),
                    "flagged": bool(d.get("flagged")), "highest": d.get("highest"),
                    "lowest": d.get("lowest"),
                    "groups (n)": ", ".join(f"{g}: {n}" for g, n in (d.get("groups") or {}).items())})
    return pd.DataFrame(out)


def rate_chart(df: pd.DataFrame, title: str) -> alt.Chart:
    base = alt.Chart(df).encode(
        y=alt.Y("group:N", title=None),
        tooltip=["metric", "group", alt.Tooltip("value:Q", format=".3f"),
                 alt.Tooltip("ci_low:Q", format=".3f"), alt.Tooltip("ci_high:Q", format=".3f"),
                 "n"])
    points = base.mark_point(filled=True, size=70).encode(
        x=alt.X("value:Q", title="rate (95% interval)"), color=alt.Color("metric:N"))
    bars = base.mark_rule().encode(x="ci_low:Q", x2="ci_high:Q", color=alt.Color("metric:N"))
    return (bars + points).properties(title=title, height=alt.Step(22))


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
    flags = summary.pop("flags", None)
    if flags:
        st.warning("Flags: " + "; ".join(str(f) for f in flags))
    elif flags is not None:
        st.success("No disparity flagged.")
    if summary and not compact:
        summary.pop("failures", None)
        common.show_json("Audit summary, as recorded with the audit: generations, "
                         "counts, timing and settings", summary)
    title = ev["name"] + (f" - {attribute}" if attribute else "")
    st.altair_chart(rate_chart(df, title), width="stretch")
    st.markdown("**Disparities**" + (f" ({attribute})" if attribute else ""))
    stored = stored_disparities(ev, attribute)
    st.dataframe(stored if len(stored) else disparity_table(df), hide_index=True,
                 width="stretch")
    if not compact:
        st.markdown("**Groups**")
        st.dataframe(df[["metric", "group", "value", "ci_low", "ci_high", "n"]],
                     hide_index=True, width="stretch")


labels = {common.evaluation_label(ev): ev for ev in audits}
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
