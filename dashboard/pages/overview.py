"""Overview: outputs per modality over time, shares of protected outputs, recent problems."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import common

st.title("Overview")
url = common.store_url()
data = common.overview_data(url)
sh = data["shares"]
if not sh["total"]:
    common.empty_store_hint()
    st.stop()

statuses = sh["statuses"]
cols = st.columns(5)
cols[0].metric("Reports", f"{sh['total']:,}")
for col, status in zip(cols[1:], ("ok", "flagged", "blocked", "error"), strict=True):
    col.metric(status.capitalize(), f"{statuses.get(status, 0):,}")

st.subheader("Outputs per modality over time")
per_day = pd.DataFrame(data["per_day"])
chart = alt.Chart(per_day).mark_bar().encode(
    x=alt.X("day:T", title="day (UTC)"), y=alt.Y("n:Q", title="outputs"),
    color=alt.Color("modality:N", title="modality"),
    tooltip=["day:T", "modality:N", "n:Q"])
st.altair_chart(chart, width="stretch")

st.subheader("Shares of all outputs")
labels = {"watermarked": "Watermarked", "signed": "Signed (C2PA)",
          "self-verified": "Self-verified", "flagged": "Flagged share",
          "blocked": "Blocked share"}
cols = st.columns(len(labels))
for col, (key, label) in zip(cols, labels.items(), strict=True):
    col.metric(label, f"{sh['shares'][key]:.1%}", help=f"{sh['counts'][key]:,} of {sh['total']:,}")
share_df = pd.DataFrame([{"share": labels[k], "fraction": v} for k, v in sh["shares"].items()])
st.altair_chart(
    alt.Chart(share_df).mark_bar().encode(
        x=alt.X("fraction:Q", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("share:N", sort=list(labels.values()), title=None),
        tooltip=["share:N", alt.Tooltip("fraction:Q", format=".1%")]),
    width="stretch")
st.caption("Watermarked, signed and self-verified count reports whose watermark, provenance "
           "and self_check stages finished with status ok.")

st.subheader("Recent errors")
problems = data["problems"]
if problems:
    st.dataframe(pd.DataFrame(problems), hide_index=True, width="stretch")
else:
    st.success("No errors, blocked or flagged outputs recorded.")
