"""guardrail's dashboard: a read-only view of the record store.

Run it with ``guardrail dashboard`` or ``streamlit run dashboard/app.py``. The store is
``$GUARDRAIL_STORE_URL`` or the configured one. The dashboard never generates anything.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

try:
    import dashboard  # noqa: F401 - installed with guardrail
except ImportError:  # pragma: no cover - run from a source checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard.common import ReportStore, store_url

PAGES = [
    ("pages/overview.py", "Overview", ":material/dashboard:"),
    ("pages/generations.py", "Generations", ":material/list:"),
    ("pages/verify.py", "Verify", ":material/verified:"),
    ("pages/audits.py", "Bias audits", ":material/balance:"),
    ("pages/robustness.py", "Robustness and detectors", ":material/shield:"),
]

st.set_page_config(page_title="guardrail dashboard", page_icon=":material/shield:",
                   layout="wide")
navigation = st.navigation([
    st.Page(path, title=title, icon=icon, default=(i == 0))
    for i, (path, title, icon) in enumerate(PAGES)])
with st.sidebar:
    st.caption(f"Record store: `{ReportStore.describe(store_url())}`")
navigation.run()
