"""guardrail's dashboard: a read-only view of the record store.

Run it with ``guardrail dashboard`` (127.0.0.1 by default; README, "Dashboard"). The store
is ``$GUARDRAIL_STORE_URL`` or the configured one. The dashboard never generates anything.

Every page is a :func:`st.Page` of one :func:`st.navigation`, so a direct link to any page
shows the same navigation. Before any page runs, :func:`dashboard.common.access_granted`
checks the access token when one is configured (and refuses to serve beyond this machine
without one); the login form is all an unauthenticated visitor sees.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

try:
    import dashboard  # noqa: F401 - installed with guardrail
except ImportError:  # pragma: no cover - run from a source checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard import common

PAGES = [
    ("views/overview.py", "Overview", ":material/dashboard:"),
    ("views/generations.py", "Generations", ":material/list:"),
    ("views/verify.py", "Verify", ":material/verified:"),
    ("views/audits.py", "Bias audits", ":material/balance:"),
    ("views/robustness.py", "Robustness and detectors", ":material/shield:"),
]

st.set_page_config(page_title="guardrail dashboard", page_icon=":material/shield:",
                   layout="wide")
granted = common.access_granted()
navigation = st.navigation(
    [st.Page(path, title=title, icon=icon, default=(i == 0))
     for i, (path, title, icon) in enumerate(PAGES)],
    position="sidebar" if granted else "hidden")
if not granted:
    common.login_page()  # stops the run
with st.sidebar:
    st.caption(f"Record store: `{common.ReportStore.describe(common.store_url())}`")
navigation.run()
