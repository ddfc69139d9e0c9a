"""Shared helpers of the dashboard pages: access, the store, cached read-only queries,
hints.

The dashboard only reads the record store. Heavy objects (the configuration, the store's
engine) are cached with ``st.cache_resource``; query results (plain dicts, so they can be
pickled) with ``st.cache_data(ttl=5)``.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

import streamlit as st

from guardrail.config import Config
from guardrail.errors import GuardrailError
from guardrail.store import ReportNotFound, ReportStore

from . import queries
from .access import (
    COOKIE_NAME,
    cookie_matches,
    cookie_value,
    is_loopback,
    load_token,
    token_matches,
)
from .server import STORE_ENV, load_config

TTL = 5  # seconds a query result is reused
#: session-state key holding the proof of the token for this browser session
AUTH_KEY = "_guardrail_access"

DEMO_HINT = ("The record store is empty. Produce some records with `guardrail demo` "
             "(one text, one image and one audio output through the guard), or with "
             "`guardrail generate --modality image --prompt \"...\" -o out.png`.")


@st.cache_resource(show_spinner=False)
def _config(settings: str) -> Config:
    return load_config(dict(json.loads(settings)))


def get_config() -> Config:
    """The configuration (cached per set of ``GUARDRAIL_*`` variables)."""
    settings = sorted((k, v) for k, v in os.environ.items() if k.startswith("GUARDRAIL_"))
    return _config(json.dumps(settings))


# -- access ---------------------------------------------------------------------------------
def _token() -> str | None:
    """The configured access token, or None without ``[dashboard] token_file``."""
    path = get_config().section("dashboard")["token_file"]
    return load_token(path, create=False)[0] if path else None


def presented_cookie() -> str | None:
    """The login cookie this browser sent (set by the server's login page)."""
    try:
        value = st.context.cookies.get(COOKIE_NAME)
    except (AttributeError, RuntimeError):
        return None
    return value if isinstance(value, str) else None


def access_granted() -> bool:
    """Whether this session may see the dashboard (renders nothing).

    Without a configured token: only when the server listens on a loopback address. With
    one: when the browser carries the login cookie, or has given the token in this session
    (the login form, or ``?token=``, which is then removed from the address bar).
    """
    try:
        token = _token()
    except GuardrailError as exc:
        st.session_state["_guardrail_access_problem"] = str(exc)
        return False
    if token is None:
        return is_loopback(st.get_option("server.address"))
    proof = cookie_value(token)
    if st.session_state.get(AUTH_KEY) == proof:
        return True
    if cookie_matches(token, presented_cookie()):
        st.session_state[AUTH_KEY] = proof
        return True
    given = st.query_params.get("token")
    if given is not None:
        del st.query_params["token"]
        if _check(token, given):
            return True
        st.session_state["_guardrail_access_problem"] = "That is not the access token."
    return False


def _check(token: str, given: str | None) -> bool:
    if token_matches(token, given):
        st.session_state[AUTH_KEY] = cookie_value(token)
        st.session_state.pop("_guardrail_access_problem", None)
        return True
    return False


def login_page() -> None:
    """What a session without access sees: why, and the token form when one can help.
    Stops the run."""
    st.title("guardrail dashboard")
    problem = st.session_state.pop("_guardrail_access_problem", None)
    try:
        token = _token()
    except GuardrailError:
        token = None
    if token is None:
        if problem:
            st.error(f"The access token cannot be read: {problem}")
        else:
            where = st.get_option("server.address") or "every interface"
            st.error(f"This dashboard is served on {where!r} "
                     "without an access token, so it shows nothing. Run `guardrail dashboard` "
                     "(it listens on 127.0.0.1 unless told otherwise), or give it "
                     "`--token-file FILE`, or set `[dashboard] token_file`.")
        st.stop()
    if problem:
        st.error(problem)
    with st.form("guardrail_login"):
        given = st.text_input("Access token", type="password", key="login_token",
                              help="The token in the dashboard's token file "
                                   "(`--token-file` / `[dashboard] token_file`).")
        sent = st.form_submit_button("Open the dashboard")
    if sent:
        if _check(token, given):
            st.rerun()
        st.error("That is not the access token.")
    st.stop()


def store_url() -> str:
    return os.environ.get(STORE_ENV) or get_config().store_url


@st.cache_resource(show_spinner=False)
def get_store(url: str) -> ReportStore:
    return ReportStore(url)


def store() -> ReportStore:
    return get_store(store_url())


# -- cached queries (return plain, picklable data) ----------------------------------------
@st.cache_data(ttl=TTL, show_spinner=False)
def count_reports(url: str, **filters: Any) -> int:
    return get_store(url).count(**filters)


@st.cache_data(ttl=TTL, show_spinner=False)
def list_reports(url: str, *, limit: int, offset: int, **filters: Any) -> list[dict[str, Any]]:
    return [r.to_dict() for r in get_store(url).list(limit=limit, offset=offset, **filters)]


@st.cache_data(ttl=TTL, show_spinner=False)
def get_report(url: str, report_id: str) -> dict[str, Any] | None:
    try:
        return get_store(url).get(report_id).to_dict()
    except ReportNotFound:
        return None


@st.cache_data(ttl=TTL, show_spinner=False)
def overview_data(url: str) -> dict[str, Any]:
    engine = get_store(url).engine
    return {"shares": queries.shares(engine), "per_day": queries.per_modality_per_day(engine),
            "problems": queries.recent_problems(engine, limit=20)}


@st.cache_data(ttl=TTL, show_spinner=False)
def list_evaluations(url: str, kind: str, limit: int = 50) -> list[dict[str, Any]]:
    return [e.to_dict() for e in get_store(url).list_evaluations(kind=kind, limit=limit)]


def when(iso: str | None) -> str:
    """``2025-01-02 03:04:05`` from an ISO timestamp."""
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def evaluation_label(ev: dict[str, Any]) -> str:
    return f"{ev['name']} - {when(ev['created_at'])} ({ev['evaluation_id'][:8]})"


def empty_store_hint() -> None:
    st.info(DEMO_HINT)


def show_json(label: str, data: Any, *, expanded: bool | int = False) -> None:
    """A JSON viewer with a caption saying what it shows."""
    st.caption(label)
    st.json(data, expanded=expanded)


def selected_rows(event: Any) -> list[int]:
    """The rows selected in an ``st.dataframe(on_select="rerun")`` (positions)."""
    try:
        return [int(i) for i in event.selection.rows]
    except (AttributeError, TypeError, ValueError):
        return []


@st.cache_data(ttl=TTL, show_spinner=False)
def statuses(url: str) -> list[str]:
    """Every report status in the store, the known ones first (a status this version does
    not know, such as ``pending``, is listed too)."""
    found = queries.status_counts(get_store(url).engine)
    known = [s for s in queries.KNOWN_STATUSES if s in found]
    return known + sorted(s for s in found if s not in queries.KNOWN_STATUSES)
