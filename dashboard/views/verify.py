"""Verify: upload any file (or name one inside the configured verify folder) and see every
kind of evidence about it, and one verdict. Nothing else on the server is read."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

from dashboard import common
from dashboard.access import SIDECAR_SUFFIX, read_confined
from guardrail.errors import InputError

st.title("Verify a file")
st.write("Content Credentials (C2PA), guardrail's watermark, the record recovered through "
         "the watermark and the configured detectors, combined into one verdict "
         "(the same as `guardrail verify FILE`).")


class _NoTextModel:
    """Stands in for the text model: the text watermark is then reported as not checked."""

    tokenizer = None
    model = None


@st.cache_resource(show_spinner="Loading the text model's tokenizer ...")
def _text_generator() -> Any:
    from guardrail.factory import generator_from_config

    return generator_from_config(common.get_config(), "text", progress=False)


def _verify(path: Path, check_text: bool) -> dict[str, Any]:
    from guardrail.verify import verify_file

    text_gen = _text_generator() if check_text else _NoTextModel()
    return verify_file(path, common.get_config(), store=common.store(),
                       text_generator=text_gen).to_dict()


@st.cache_data(ttl=common.TTL, show_spinner="Verifying ...", max_entries=32)
def verify_bytes(data: bytes, name: str, check_text: bool,
                 sidecar: bytes | None = None) -> dict[str, Any]:
    """Verify ``data`` as a file called ``name`` (with its ``.c2pa`` sidecar, if any), in a
    private temporary folder."""
    with tempfile.TemporaryDirectory(prefix="guardrail-verify-") as tmp:
        path = Path(tmp) / (Path(name).name or "upload")
        path.write_bytes(data)
        if sidecar is not None and path.suffix != SIDECAR_SUFFIX:
            path.with_suffix(SIDECAR_SUFFIX).write_bytes(sidecar)
        out = _verify(path, check_text)
    out["file"] = name
    return out


STYLE = {"Tampered": st.error, "AI-generated": st.success, "Likely AI-generated": st.warning,
         "Signed, not declared AI-generated": st.info, "Could not be verified": st.warning,
         "Signed text, reformatted": st.info, "Watermark without matching record": st.warning}


def show_result(res: dict[str, Any]) -> None:
    v = res["verdict"]
    STYLE.get(v["label"], st.info)(f"### {v['label']}\n{v['summary']}")
    st.caption(f"{res['file']} - {res['media_type'] or 'unknown type'}")
    left, right = st.columns(2)
    with left:
        st.markdown("**Evidence**")
        st.markdown("\n".join(f"- {e}" for e in v["evidence"]) or "(none)")
        st.markdown("**Not checked**")
        st.markdown("\n".join(f"- {e}" for e in v["not_checked"]) or "Everything was checked.")
    with right:
        st.markdown("**Recovered record**")
        rec = res.get("recovered")
        if rec:
            st.markdown(f"Report `{rec['report_id']}` ({rec['how']}).")
            st.page_link("views/generations.py", label="Open this report",
                         icon=":material/open_in_new:",
                         query_params={"report": rec["report_id"]})
            common.show_json("The recovered record: its id and how it was found", rec)
        else:
            record = res.get("record") or {}
            st.caption(f"No record recovered - record match: {record.get('state', 'not checked')}"
                       f" ({record.get('reason') or 'no verified watermark'}).")
        st.markdown("**Content Credentials**")
        prov = {k: v for k, v in res["provenance"].items() if k != "manifest"}
        common.show_json("Content Credentials check: state, signer, validation codes", prov)
        if res.get("watermark"):
            st.markdown("**Watermark**")
            common.show_json("Watermark check: scheme, p-value, payload", res["watermark"])
        if res.get("detectors"):
            st.markdown("**Detectors**")
            st.dataframe(res["detectors"], hide_index=True)


check_text = st.checkbox("Check text watermarks (loads the text model's tokenizer; slow)",
                         value=False, key="verify_text")
upload = st.file_uploader("File to verify (image, audio or text)", key="verify_upload")
config = common.get_config()
folder = config.section("dashboard")["verify_dir"]
local = ""
if folder:
    local = st.text_input(f"...or the name of a file in the verify folder `{folder}`",
                          key="verify_path",
                          help="A name relative to that folder (or an absolute path inside "
                               "it). Names with '..' and symbolic links are refused.")
else:
    st.caption("Files on the dashboard's machine are not read: upload the file. (To verify "
               "files from one server folder by name, start the dashboard with "
               "`--verify-dir DIR` or set `[dashboard] verify_dir`.)")
if upload is not None:
    show_result(verify_bytes(upload.getvalue(), upload.name, check_text))
elif local.strip():
    try:
        found = read_confined(folder, local, max_bytes=config.limits.max_file_bytes)
    except InputError as exc:
        st.error(f"Not verified: {exc}")
    else:
        show_result(verify_bytes(found.data, found.name, check_text, found.sidecar))
else:
    st.caption("Upload a file to verify it.")
    if not common.count_reports(common.store_url()):
        common.empty_store_hint()
