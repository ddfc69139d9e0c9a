"""Robustness and detectors: watermark TPR per attack x scheme, detector ROC curves."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import common

st.title("Robustness and detectors")
url = common.store_url()


def tpr_heatmap(df: pd.DataFrame) -> alt.Chart:
    base = alt.Chart(df).encode(x=alt.X("scheme:N", title="scheme"),
                                y=alt.Y("attack:N", title="attack"))
    cells = base.mark_rect().encode(
        color=alt.Color("tpr:Q", title="TPR", scale=alt.Scale(domain=[0, 1], scheme="viridis")),
        tooltip=["scheme", "attack", alt.Tooltip("tpr:Q", format=".3f")])
    text = base.mark_text(baseline="middle").encode(
        text=alt.Text("tpr:Q", format=".2f"),
        color=alt.condition(alt.datum.tpr > 0.5, alt.value("black"), alt.value("white")))
    return (cells + text).properties(height=alt.Step(24))


def heatmap_frame(rows: list[dict[str, Any]], summary: dict[str, Any]) -> pd.DataFrame:
    """One cell per scheme x attack (with its strength); the pass rate by length is charted
    on its own."""
    df = pd.DataFrame(rows)
    if df.empty or not {"attack", "tpr"} <= set(df.columns):
        return pd.DataFrame()
    df = df[df["attack"] != "first_tokens"].copy()
    if "scheme" not in df.columns:
        df["scheme"] = str(summary.get("scheme") or "watermark")
    if "strength" in df.columns:
        df["attack"] = [a if pd.isna(s) else f"{a} {s:g}"
                        for a, s in zip(df["attack"], df["strength"], strict=True)]
    return df[["scheme", "attack", "tpr"]].dropna(subset=["tpr"])


def length_chart(rows: list[dict[str, Any]]) -> alt.Chart | None:
    """Text watermarks: the share of marked texts confirmed by length, with its 95%
    interval (rows ``first_tokens`` of the text lab)."""
    pts = pd.DataFrame([r for r in rows if r.get("attack") == "first_tokens"
                        and r.get("tpr") is not None])
    if pts.empty:
        return None
    x = alt.X("strength:Q", title="tokens in the text")
    y = alt.Y("tpr:Q", title="marked texts confirmed", scale=alt.Scale(domain=[0, 1]))
    band = alt.Chart(pts).mark_area(opacity=0.25).encode(x=x, y="ci_low:Q", y2="ci_high:Q")
    line = alt.Chart(pts).mark_line(point=True).encode(
        x=x, y=y, tooltip=[alt.Tooltip("strength:Q", title="tokens"),
                           alt.Tooltip("tpr:Q", format=".3f"), "ci_low", "ci_high",
                           alt.Tooltip("performed:Q", title="texts")])
    return (band + line).properties(title="Text watermark confirmed, by length (95% interval)",
                                    height=300)


def roc_frame(rows: list[dict[str, Any]], name: str = "detector") -> pd.DataFrame:
    """The ROC curve(s) of a detector evaluation: rows holding whole curves (``fpr`` and
    ``tpr`` lists, one per detector), or - as ``guardrail detectors eval`` stores them - one
    row per point of one curve (``threshold``, ``fpr``, ``tpr`` numbers), named ``name``."""
    points = []
    for i, r in enumerate(rows):
        fpr, tpr = r.get("fpr"), r.get("tpr")
        if isinstance(fpr, list) and isinstance(tpr, list):
            curve = str(r.get("detector") or r.get("name") or f"curve {i + 1}")
            if r.get("modality"):
                curve += f" ({r['modality']})"
            points += [{"curve": curve, "fpr": float(f), "tpr": float(t)}
                       for f, t in zip(fpr, tpr, strict=False)]
        elif isinstance(fpr, int | float) and isinstance(tpr, int | float):
            points.append({"curve": str(r.get("detector") or name), "fpr": float(fpr),
                           "tpr": float(tpr)})
    return pd.DataFrame(points)


def quick_note(ev: dict[str, Any]) -> str | None:
    """What a quick (smoke) robustness run can and cannot say."""
    if not (ev.get("config") or {}).get("quick"):
        return None
    summary = ev.get("summary") or {}
    sizes = {k: summary[k] for k in ("n_clips", "n_unmarked", "n_texts", "n_human")
             if isinstance(summary.get(k), int)}
    schemes = summary.get("schemes")
    if isinstance(schemes, dict):
        sizes.update({f"{name} images": info.get("n_images") for name, info in schemes.items()
                      if isinstance(info, dict) and info.get("n_images") is not None})
    said = ", ".join(f"{k} {v}" for k, v in sizes.items())
    return ("Quick run (a smoke run of the lab, few items" + (f": {said}" if said else "")
            + "): the rates show that the lab works, not how robust the watermark is; run "
              "`guardrail robustness --modality ...` without --quick for a measurement.")


st.header("Watermark robustness")
runs = common.list_evaluations(url, "robustness")
if not runs:
    st.info("No robustness runs are recorded yet. Run `guardrail robustness --modality image` "
            "(or `audio`, `text`; add `--quick` for a smoke run) to measure how often each "
            "watermark survives each attack.")
else:
    labels = {common.evaluation_label(ev): ev for ev in runs}
    ev = labels[st.selectbox("Run", list(labels), key="rob_pick")]
    df = pd.DataFrame(ev["rows"])
    if (note := quick_note(ev)) is not None:
        st.warning(note)
    cells = heatmap_frame(list(ev["rows"]), dict(ev.get("summary") or {}))
    if not cells.empty:
        st.altair_chart(tpr_heatmap(cells), width="stretch")
    by_length = length_chart(list(ev["rows"]))
    if by_length is not None:
        st.altair_chart(by_length, width="stretch")
        st.caption("A shorter text is a weaker test: a marked text whose mark is not confirmed "
                   "is released flagged under `[policy] unverifiable_text`.")
    st.caption("Every measured cell: scheme, attack and strength, true-positive rate.")
    st.dataframe(df, hide_index=True, width="stretch")
    if ev.get("summary"):
        common.show_json("Robustness run summary, as recorded with the run: scheme, "
                         "target false-positive rate, test content", ev["summary"])

st.header("Synthetic-media detectors")
evals = common.list_evaluations(url, "detector_eval")
if not evals:
    st.info("No detector evaluations are recorded yet. Run `guardrail detectors eval` to "
            "measure each configured detector (ROC curve and operating points).")
else:
    labels = {common.evaluation_label(ev): ev for ev in evals}
    ev = labels[st.selectbox("Evaluation", list(labels), key="det_pick")]
    roc = roc_frame(list(ev["rows"]), name=str(ev.get("name") or "detector"))
    if roc.empty:
        st.caption("This evaluation stored no ROC points.")
    else:
        diagonal = alt.Chart(pd.DataFrame({"fpr": [0, 1], "tpr": [0, 1]})).mark_line(
            strokeDash=[4, 4], color="gray").encode(x="fpr:Q", y="tpr:Q")
        curves = alt.Chart(roc).mark_line(point=False).encode(
            x=alt.X("fpr:Q", title="false-positive rate", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("tpr:Q", title="true-positive rate", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("curve:N", title="detector"), tooltip=["curve", "fpr", "tpr"])
        st.altair_chart((diagonal + curves).properties(title="ROC", height=360),
                        width="stretch")
    st.markdown("**Operating points**")
    flat = [{k: v for k, v in r.items() if not isinstance(v, (list, dict))} for r in ev["rows"]]
    ops = [op for r in ev["rows"] for op in (r.get("operating_points") or [])
           if isinstance(op, dict)]
    summary = ev.get("summary") or {}
    if not ops and summary.get("threshold") is not None:
        ops = [{k: summary.get(k) for k in ("threshold", "claimed_operating_fpr",
                                            "fpr_at_threshold", "tpr_at_threshold", "auroc",
                                            "eer", "n_real", "n_synthetic") if k in summary}]
    st.dataframe(pd.DataFrame(ops or flat), hide_index=True, width="stretch")
    if ev.get("summary"):
        common.show_json("Detector evaluation summary, as recorded with the "
                         "evaluation", ev["summary"])

if not runs and not evals and not common.count_reports(url):
    common.empty_store_hint()
