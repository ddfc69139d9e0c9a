"""Generations: a searchable, filterable, paginated table of reports and one report's detail."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import common, queries

MODALITIES = ["all", "text", "image", "audio"]
PAGE_SIZES = [25, 50, 100]

st.title("Generations")
url = common.store_url()
if not common.count_reports(url):
    common.empty_store_hint()
    st.stop()

c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
search = c1.text_input("Search", placeholder="report id, model, output path or content hash",
                       key="gen_search")
modality = c2.selectbox("Modality", MODALITIES, key="gen_modality")
statuses = ["all", *queries.KNOWN_STATUSES,
            *(s for s in common.statuses(url) if s not in queries.KNOWN_STATUSES)]
status = c3.selectbox("Status", statuses, key="gen_status")
size = c4.selectbox("Rows per page", PAGE_SIZES, key="gen_size")
filters: dict[str, Any] = {"search": search.strip() or None,
                           "modality": None if modality == "all" else modality,
                           "status": None if status == "all" else status}
total = common.count_reports(url, **filters)
pages = max(1, math.ceil(total / size))
page = int(st.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, step=1,
                           key="gen_page"))
rows = common.list_reports(url, limit=size, offset=(page - 1) * size, **filters)
st.caption(f"{total:,} matching reports; showing {len(rows)} "
           f"({(page - 1) * size + min(1, len(rows))}-{(page - 1) * size + len(rows)}).")


def _stage_summary(r: dict[str, Any]) -> str:
    return " ".join(f"{s['stage']}:{s['status']}" for s in r["stages"]
                    if s["stage"] in ("watermark", "self_check", "provenance"))


def _reason(r: dict[str, Any]) -> str:
    if r["status"] == "ok":
        return ""
    return queries.problem_reason(r["status"], r.get("error"), r["stages"])


table = pd.DataFrame([{
    "report_id": r["report_id"], "created": common.when(r["created_at"]),
    "modality": r["modality"], "status": r["status"], "reason": _reason(r),
    "model": r["metadata"]["model_id"], "protection": _stage_summary(r), "output": r["output"],
    "total_ms": round(sum(s["duration_ms"] or 0 for s in r["stages"]), 1)} for r in rows])
selected = ""
if rows:
    event = st.dataframe(table, hide_index=True, width="stretch", key="gen_table",
                         on_select="rerun", selection_mode="single-row")
    picked_rows = common.selected_rows(event)
    if picked_rows and picked_rows[0] < len(table):
        selected = str(table.iloc[picked_rows[0]]["report_id"])
    st.caption("Select a row to open that report below; its address (`?report=<id>`) can "
               "be bookmarked or shared.")
else:
    st.warning("No report matches these filters.")


# -- one report ---------------------------------------------------------------------------
def show_content(r: dict[str, Any]) -> None:
    out = r.get("output")
    if not out:
        st.caption("No output file was written for this report.")
        return
    path = Path(out)
    if not path.is_file():
        st.caption(f"The output file `{out}` is not present on this machine.")
        return
    if r["modality"] == "image":
        st.image(str(path), caption=path.name, width=320)
    elif r["modality"] == "audio":
        st.audio(str(path))
    else:
        st.text(path.read_text(encoding="utf-8", errors="replace")[:5000])


def show_report(r: dict[str, Any]) -> None:
    st.subheader(f"Report {r['report_id']}")
    md = r["metadata"]
    cols = st.columns(4)
    cols[0].metric("Status", r["status"])
    cols[1].metric("Modality", r["modality"] or "unknown")
    cols[2].metric("Model", md["model_id"])
    cols[3].metric("Total time", f"{sum(s['duration_ms'] or 0 for s in r['stages']):.1f} ms")
    if r.get("error"):
        st.error(r["error"])
    elif r["status"] != "ok":
        st.warning(f"**{r['status']}**: {queries.problem_reason(r['status'], None, r['stages'])}")
    left, right = st.columns(2)
    with left:
        st.markdown("**Content**")
        show_content(r)
        st.markdown("**Generation**")
        common.show_json("Generation metadata: time, content hash, media type, output file, "
                         "model, seed and parameters",
                         {"created_at": r["created_at"], "content_hash": r["content_hash"],
                          "media_type": r["media_type"], "output": r["output"], **md})
    evidence = (r.get("extra") or {}).get("evidence") or {}
    with right:
        st.markdown("**Content Credentials (manifest summary)**")
        prov = evidence.get("provenance") or {}
        summary = prov.get("manifest_summary")
        if summary:
            common.show_json(f"Manifest summary - {prov.get('state', '?')}; signer: "
                             f"{prov.get('signer') or '?'}", summary, expanded=1)
        else:
            st.caption("No manifest recorded (provenance not signed for this output).")
        st.markdown("**Watermark evidence**")
        wm = evidence.get("watermark")
        if wm:
            common.show_json("Watermark embedded: scheme, version, key id and payload (the "
                             "record's id in the mark)", wm, expanded=True)
        else:
            st.caption("No watermark recorded.")
        detectors = evidence.get("detectors") or [
            {"stage": s["stage"], **s["details"]} for s in r["stages"]
            if isinstance(s.get("details"), dict) and "probability" in s["details"]]
        if detectors:
            st.markdown("**Detector scores**")
            st.dataframe(pd.DataFrame(detectors), hide_index=True)
    st.markdown("**Stages**")
    stages = pd.DataFrame([{"#": i, "stage": s["stage"], "status": s["status"],
                            "duration_ms": s["duration_ms"], "reason": s["reason"] or ""}
                           for i, s in enumerate(r["stages"])])
    if stages.empty:
        st.caption("No stage records.")
        return
    st.dataframe(stages, hide_index=True, width="stretch")
    st.altair_chart(alt.Chart(stages).mark_bar().encode(
        x=alt.X("duration_ms:Q", title="duration (ms)"),
        y=alt.Y("stage:N", sort=list(stages["stage"]), title=None),
        color=alt.Color("status:N"), tooltip=["stage", "status", "duration_ms", "reason"]),
        width="stretch")


st.divider()
ids = [r["report_id"] for r in rows]
c1, c2 = st.columns([2, 2])
picked = c1.selectbox("Report on this page", ["-"] + ids, key="gen_pick",
                      format_func=lambda i: i if i == "-" else
                      f"{i[:12]} ({next(r['status'] for r in rows if r['report_id'] == i)})")
typed = c2.text_input("...or a report id (or unique prefix)", key="gen_id")
linked = str(st.query_params.get("report") or "")
wanted = typed.strip() or selected or (picked if picked != "-" else "") or linked
if wanted:
    report = common.get_report(url, wanted)
    if report is None:
        st.error(f"No report {wanted!r} in the store (or the prefix is ambiguous).")
    else:
        if linked != report["report_id"]:
            st.query_params["report"] = report["report_id"]
        show_report(report)
else:
    st.caption("Pick a report to see its content, credentials, watermark and stages.")
