"""Overview: outputs per modality over time, shares of protected outputs, recent problems."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import common, queries

st.title("Overview")
url = common.store_url()
data = common.overview_data(url)
sh = data["shares"]
if not sh["total"]:
    common.empty_store_hint()
    st.stop()

statuses = sh["statuses"]
shown = [*queries.KNOWN_STATUSES,
         *sorted(s for s in statuses if s not in queries.KNOWN_STATUSES)]  # e.g. "pending"
cols = st.columns(1 + len(shown))
cols[0].metric("Reports", f"{sh['total']:,}")
for col, status in zip(cols[1:], shown, strict=True):
    col.metric(str(status).capitalize(), f"{statuses.get(status, 0):,}")

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
    st.caption("The newest reports that are not ok (error, blocked, flagged), each with the "
               "reason from its record. Select a row to open the report.")
    table = pd.DataFrame(problems)[["created_at", "status", "reason", "modality", "model_id",
                                    "report_id"]]
    event = st.dataframe(table, hide_index=True, width="stretch", key="overview_problems",
                         on_select="rerun", selection_mode="single-row")
    picked = common.selected_rows(event)
    if picked:
        st.switch_page("views/generations.py",
                       query_params={"report": table.iloc[picked[0]]["report_id"]})
else:
    st.success("No errors, blocked or flagged outputs recorded.")
