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
    st.info("No bias audits are recorded yet. Run one with `guardrail audit run SUITE` "
            "(planned); it records an evaluation of kind `audit` with one row per group and "
            "metric (value, 95% interval, n) that this page charts.")
    if not common.count_reports(url):
        common.empty_store_hint()
    st.stop()


def rows_frame(ev: dict[str, Any]) -> pd.DataFrame:
    df = pd.DataFrame(ev["rows"])
    for col in ("group", "metric", "value", "ci_low", "ci_high", "n"):
        if col not in df:
            df[col] = None
    return df


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


def show_audit(ev: dict[str, Any], *, compact: bool = False) -> None:
    df = rows_frame(ev)
    summary = dict(ev.get("summary") or {})
    flags = summary.pop("flags", None)
    if flags:
        st.warning("Flags: " + "; ".join(str(f) for f in flags))
    elif flags is not None:
        st.success("No disparity flagged.")
    if summary and not compact:
        st.json(summary, expanded=False)
    st.altair_chart(rate_chart(df, ev["name"]), width="stretch")
    st.markdown("**Disparities**")
    st.dataframe(disparity_table(df), hide_index=True, width="stretch")
    if not compact:
        st.markdown("**Groups**")
        st.dataframe(df[["metric", "group", "value", "ci_low", "ci_high", "n"]],
                     hide_index=True, width="stretch")


labels = {common.evaluation_label(ev): ev for ev in audits}
choice = st.selectbox("Audit", list(labels), key="audit_pick")
show_audit(labels[choice])

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
        show_audit(labels[left], compact=True)
    with b:
        show_audit(labels[right], compact=True)
